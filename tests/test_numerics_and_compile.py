"""Reduced precision and torch.compile on both execution policies: the attention stays finite and close
to fp32, the network traces without graph breaks, and compiled it computes what eager PyTorch computes
(aot_eager: outputs and gradients; inductor, slow tier: the prediction)."""
from __future__ import annotations

import pytest
import torch

from nnunetv2_unetrpp.network_architecture import EPA
from nnunetv2_unetrpp.network_architecture.execution import POLICIES, execution_policy

PATCH = (16, 32, 32)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fused", [True, False], ids=["fast", "reference"])
def test_attention_under_autocast_is_finite_and_close_to_fp32(dtype, fused, policy):
    """Large activations over many tokens: sum_n q_n^2 is ~1e8 here, far beyond fp16's 65504, so the L2 norms
    must accumulate in fp32 on every path."""
    torch.manual_seed(0)
    epa = EPA(num_tokens=8192, channels=32, proj_size=16, num_heads=4, attn_drop=0.0).eval()
    epa.fused = fused
    x = 40 * torch.randn(1, 8192, 32)
    with torch.no_grad(), execution_policy(policy):
        expected = epa(x)
        with torch.autocast("cpu", dtype=dtype):
            out = epa(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    error = (out.float() - expected).norm() / expected.norm()
    assert error < (3e-2 if dtype == torch.bfloat16 else 5e-3), f"relative error {error:.2e}"


@pytest.mark.parametrize("deep_supervision", [True, False])
@pytest.mark.parametrize("policy, train", [("cpu", True), ("cpu", False), ("device", True)],
                         ids=["cpu-train", "cpu-eval", "device-train"])
def test_network_traces_without_graph_breaks(tiny_unetrpp, deep_supervision, policy, train):
    torch._dynamo.reset()
    model = tiny_unetrpp(PATCH, stem_stride=(2, 4, 4), deep_supervision=deep_supervision).train(train)
    with execution_policy(policy):
        explanation = torch._dynamo.explain(model)(torch.randn(2, 1, *PATCH))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def _compiled_matches_eager(model: torch.nn.Module, backend: str, rtol: float) -> None:
    """Outputs and gradients of a training step, eager and compiled with `backend`, agree to `rtol` of each
    tensor's norm."""
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    x = torch.randn(2, 1, *PATCH)
    results = []
    for net in (model, compiled):
        model.zero_grad()
        out = net(x)
        sum(o.square().mean() for o in out).backward()
        results.append([o.detach() for o in out] + [p.grad.clone() for p in model.parameters()])
    for eager, compiled_result in zip(*results):
        assert (compiled_result - eager).norm() <= rtol * eager.norm(), (backend, eager.shape)


def test_compiled_network_computes_the_same_outputs_and_gradients(tiny_unetrpp):
    torch.manual_seed(0)
    _compiled_matches_eager(tiny_unetrpp(PATCH, stem_stride=(2, 4, 4), attn_drop=0.0, proj_drop=0.0).train(),
                            "aot_eager", 1e-5)


@pytest.mark.slow
def test_inductor_compiled_network_predicts_what_eager_predicts(tiny_unetrpp, tmp_path, monkeypatch):
    """inductor, the backend nnU-Net compiles with (nnUNet_compile), generates and builds C++ kernels for the
    CPU: the compiled network's prediction (eval, deep supervision off, as nnU-Net's predictor runs it) equals
    eager's to float32 rounding. Forward only: compiling the backward of even this tiny network took over
    9 minutes on the 2-core test machine."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cold cache: really compile
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tiny_unetrpp(PATCH, stem_stride=(2, 4, 4), deep_supervision=False).eval()
    x = torch.randn(1, 1, *PATCH)
    with torch.no_grad():
        eager, compiled = model(x), torch.compile(model, backend="inductor")(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
