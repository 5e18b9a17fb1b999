"""Reduced precision and torch.compile: the attention stays finite and close to fp32, the network
traces without graph breaks, and compiled (aot_eager) it computes the outputs and gradients eager
PyTorch computes."""
from __future__ import annotations

import pytest
import torch

from nnunetv2_unetrpp.network_architecture import EPA

PATCH = (16, 32, 32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_under_autocast_is_finite_and_close_to_fp32(dtype):
    """Large activations over many tokens: sum_n q_n^2 is ~1e8 here, far beyond fp16's 65504, so the L2 norms
    must accumulate in fp32."""
    torch.manual_seed(0)
    epa = EPA(num_tokens=8192, channels=32, proj_size=16, num_heads=4, attn_drop=0.0).eval()
    x = 40 * torch.randn(1, 8192, 32)
    with torch.no_grad():
        expected = epa(x)
        with torch.autocast("cpu", dtype=dtype):
            out = epa(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    error = (out.float() - expected).norm() / expected.norm()
    assert error < (3e-2 if dtype == torch.bfloat16 else 5e-3), f"relative error {error:.2e}"


@pytest.mark.parametrize("deep_supervision", [True, False])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_network_traces_without_graph_breaks(tiny_unetrpp, deep_supervision, train):
    torch._dynamo.reset()
    model = tiny_unetrpp(PATCH, stem_stride=(2, 4, 4), deep_supervision=deep_supervision).train(train)
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


@pytest.mark.parametrize("conv_op", [torch.nn.Conv3d, torch.nn.Conv2d], ids=["3d", "2d"])
def test_bf16_autocast_of_the_network_is_finite_and_close_to_fp32(tiny_unetrpp, conv_op):
    patch, stem = ((32, 32, 32), (2, 4, 4)) if conv_op is torch.nn.Conv3d else ((64, 64), (4, 4))
    model = tiny_unetrpp(patch, input_channels=2, stem_stride=stem, conv_op=conv_op).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    x = torch.randn(1, 2, *patch)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    for a, b in zip(out, expected):
        assert torch.isfinite(a).all()
        assert (a.float() - b).norm() / b.norm() < 5e-2


def test_float32_training_step_is_as_accurate_as_float64(tiny_unetrpp):
    """Outputs and gradients of a float32 training step against the same network in float64: the
    instance norms at full resolution and the attention's norms over many tokens stay accurate. Two
    input channels: with one, the 1x1 convolution before an instance norm has a zero gradient."""
    torch.manual_seed(0)
    model = tiny_unetrpp((32, 32, 32), input_channels=2, stem_stride=(2, 4, 4), attn_drop=0.0, proj_drop=0.0).train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    x = 3 * torch.randn(2, 2, 32, 32, 32) + 10

    def outputs_and_gradients(dtype: torch.dtype) -> list[torch.Tensor]:
        model.to(dtype).zero_grad()
        out = model(x.to(dtype))
        sum(o.square().mean() for o in out).backward()
        return [o.detach().double() for o in out] + [p.grad.double() for p in model.parameters()]

    single, double = outputs_and_gradients(torch.float32), outputs_and_gradients(torch.float64)
    errors = [((s - d).norm() / d.norm()).item() for s, d in zip(single, double)]
    assert max(errors) < 1e-4, max(errors)
