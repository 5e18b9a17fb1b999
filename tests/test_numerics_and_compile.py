"""Reduced precision and torch.compile: the attention stays finite and close to fp32, and the
network traces without graph breaks and computes the same."""
from __future__ import annotations

import pytest
import torch

from nnunetv2_unetrpp.network_architecture import EPA

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fused", [True, False], ids=["fast", "reference"])
def test_attention_under_autocast_is_finite_and_close_to_fp32(dtype, fused):
    """Large activations over many tokens: sum_n q_n^2 is ~1e8 here, far beyond fp16's 65504."""
    torch.manual_seed(0)
    epa = EPA(num_tokens=8192, channels=32, proj_size=16, num_heads=4, attn_drop=0.0).eval()
    epa.fused = fused
    x = 40 * torch.randn(1, 8192, 32)
    with torch.no_grad():
        expected = epa(x)
        with torch.autocast("cpu", dtype=dtype):
            out = epa(x)
    assert torch.isfinite(out).all()
    error = (out.float() - expected).norm() / expected.norm()
    assert error < (3e-2 if dtype == torch.bfloat16 else 5e-3), f"relative error {error:.2e}"


@pytest.mark.parametrize("deep_supervision", [True, False])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_network_traces_without_graph_breaks(tiny_unetrpp, deep_supervision, train):
    torch._dynamo.reset()
    model = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4), deep_supervision=deep_supervision).train(train)
    explanation = torch._dynamo.explain(model)(torch.randn(2, 1, 16, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_network_computes_the_same_outputs_and_gradients(tiny_unetrpp):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4), attn_drop=0.0, proj_drop=0.0).train()
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(2, 1, 16, 32, 32)
    grads = []
    outputs = []
    for net in (model, compiled):
        model.zero_grad()
        out = net(x)
        sum(o.square().mean() for o in out).backward()
        outputs.append([o.detach() for o in out])
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
