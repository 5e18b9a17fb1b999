"""The CPU fast paths give the numbers of the plain PyTorch computations they replace:
channels-last instance norms and 1x1 maps of the full-resolution branch, the chunked
attention-with-dropout of the spatial branch, and the batch-folded convolutions of the
transformer stages."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from packaging.version import Version
from torch import nn

from nnunetv2_unetrpp.network_architecture.attention import _cpu_attention_with_dropout
from nnunetv2_unetrpp.network_architecture.batch_folding import (
    BatchFoldingConv2d,
    BatchFoldingConv3d,
    batch_folding_conv,
    folded_convolution,
)
from nnunetv2_unetrpp.network_architecture.channels_last import (
    ChannelsLastInstanceNorm2d,
    ChannelsLastInstanceNorm3d,
    channels_last_format,
    channels_last_norm,
)
from nnunetv2_unetrpp.network_architecture.functional import channel_linear

SPATIAL = {2: (6, 10), 3: (4, 6, 10)}


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.contiguous(memory_format=channels_last_format(x.ndim)) if layout == "channels_last" else x.contiguous()


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_channels_last_instance_norm_equals_instance_norm(ndim, affine, batch, layout):
    reference = (nn.InstanceNorm2d if ndim == 2 else nn.InstanceNorm3d)(5, affine=affine).double()
    ours = (ChannelsLastInstanceNorm2d if ndim == 2 else ChannelsLastInstanceNorm3d)(5, affine=affine).double()
    if affine:
        with torch.no_grad():
            reference.weight.normal_()
            reference.bias.normal_()
    ours.load_state_dict(reference.state_dict())
    x = _layout(3 * torch.randn(batch, 5, *SPATIAL[ndim], dtype=torch.float64) + 1, layout)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = reference(x_ref), ours(x_ours)
    assert y.is_contiguous(memory_format=channels_last_format(x.ndim))
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    if affine:
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad)


def test_channels_last_instance_norm_is_as_accurate_as_pytorchs_channel_first_kernel():
    # PyTorch's channels-last batch norm, instance norm per sample, is off by 4e-5 (2 threads) to
    # 1.6e-4 (1 thread) here, as it sums in float32 sequentially; ChannelsLastInstanceNorm3d must
    # stay at the accuracy of PyTorch's channel-first kernel.
    torch.manual_seed(0)
    x = (3 * torch.randn(1, 16, 32, 64, 64) + 10).contiguous(memory_format=torch.channels_last_3d)
    # the float64 reference runs channel-first: torch 2.14's instance_norm backward is wrong for a
    # batch of one with a channels-last incoming gradient
    x64 = x.double().contiguous().requires_grad_()
    reference = F.instance_norm(x64)
    x32 = x.clone().requires_grad_()
    y = ChannelsLastInstanceNorm3d(16)(x32)
    assert (y.double() - reference).abs().max() < 5e-6
    grad = torch.randn_like(x)
    reference.backward(grad.double().contiguous())
    y.backward(grad)
    assert (x32.grad.double() - x64.grad).abs().max() / x64.grad.abs().max() < 1e-5


def test_instance_norm_with_running_stats_keeps_pytorch_behaviour():
    ours = ChannelsLastInstanceNorm3d(4, track_running_stats=True)
    reference = nn.InstanceNorm3d(4, track_running_stats=True)
    x = torch.randn(2, 4, 3, 4, 5) * 2 + 3
    torch.testing.assert_close(ours(x), reference(x))
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


def test_channels_last_norm_replaces_only_instance_norms():
    assert channels_last_norm(nn.InstanceNorm3d) is ChannelsLastInstanceNorm3d
    assert channels_last_norm(nn.InstanceNorm2d) is ChannelsLastInstanceNorm2d
    assert channels_last_norm(nn.BatchNorm3d) is nn.BatchNorm3d
    assert set(ChannelsLastInstanceNorm3d(4, affine=True).state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_channel_linear_equals_1x1_conv(ndim, batch, layout):
    conv = (nn.Conv2d if ndim == 2 else nn.Conv3d)(6, 4, kernel_size=1).double()
    x = _layout(torch.randn(batch, 6, *SPATIAL[ndim], dtype=torch.float64), layout)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = conv(x_ref), channel_linear(x_ours, conv.weight, conv.bias)
    assert y.is_contiguous(), "logits must be channel-first for nnU-Net's losses"
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    if layout == "channels_last":  # the gradient keeps the layout of the input: no conversions backward
        assert x_ours.grad.is_contiguous(memory_format=channels_last_format(x.ndim))


def test_chunked_attention_dropout_equals_one_pass():
    # One batch x head, so that drawing the dropout masks chunk by chunk consumes the random
    # stream in the same order as one draw for the whole map; 20000 tokens span three chunks.
    p = 0.2
    q, k, v = (torch.randn(1, 1, n, 8, dtype=torch.float64, requires_grad=True) for n in (20000, 64, 64))
    torch.manual_seed(0)
    out = _cpu_attention_with_dropout(q, k, v, p)
    torch.manual_seed(0)
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    reference = (attn * (torch.rand_like(attn) >= p)) @ v / (1 - p)
    torch.testing.assert_close(out, reference)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad)
    for ours, ref in zip(grads, torch.autograd.grad(reference, (q, k, v), grad)):
        torch.testing.assert_close(ours, ref)


def test_full_resolution_branch_runs_channels_last_and_logits_are_channel_first(tiny_unetrpp):
    model = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4))
    seen = {}
    model.conv_branch.register_forward_hook(lambda m, i, o: seen.__setitem__("conv_branch", o))
    model.decoder.stages[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("last_up_block", o))
    outputs = model(torch.randn(2, 1, 16, 32, 32))
    for name, feature in seen.items():
        assert feature.is_contiguous(memory_format=torch.channels_last_3d), name
    assert all(o.is_contiguous() for o in outputs)


# (kernel, stride, padding, dilation, input size; 2D takes the last two): stride-1 "same"
# convolutions as in the transformer blocks, and strided, dilated, unpadded and anisotropic ones,
# all with an even output length along the first axis
FOLDABLE = [
    (3, 1, 1, 1, (8, 6, 5)),
    ((3, 1, 3), 1, (1, 0, 1), 1, (10, 4, 6)),
    (2, 2, 0, 1, (8, 4, 6)),
    (3, 2, 1, 1, (7, 7, 6)),
    (3, 1, 2, 2, (6, 6, 5)),
    ((1, 3, 3), 1, (0, 1, 1), 1, (4, 6, 6)),
]


def _convolutions(ndim: int, kernel, stride, padding, dilation, dtype=torch.float32, in_channels: int = 5):
    """A stock convolution and its batch-folding twin with the same weights."""
    args = [kernel, stride, padding, dilation]
    if ndim == 2:
        args = [a[1:] if isinstance(a, tuple) else a for a in args]
    kwargs = dict(kernel_size=args[0], stride=args[1], padding=args[2], dilation=args[3])
    stock = (nn.Conv2d if ndim == 2 else nn.Conv3d)(in_channels, 7, **kwargs).to(dtype)
    ours = (BatchFoldingConv2d if ndim == 2 else BatchFoldingConv3d)(in_channels, 7, **kwargs).to(dtype)
    ours.load_state_dict(stock.state_dict())
    return stock, ours


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kernel, stride, padding, dilation, size", FOLDABLE)
def test_folded_convolution_equals_the_convolution(ndim, kernel, stride, padding, dilation, size):
    # float64 runs the same native kernel either way, so the fold itself is checked exactly
    stock, ours = _convolutions(ndim, kernel, stride, padding, dilation, torch.float64)
    x = torch.randn(1, 5, *size[3 - ndim:], dtype=torch.float64)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref = stock(x_ref)
    assert y_ref.shape[2] % 2 == 0, "the fold halves an even output length"
    y = folded_convolution(ours, x_ours, ours.weight, ours.bias)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, stock.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.bias.grad, stock.bias.grad, rtol=1e-12, atol=1e-12)


def _kernels(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if "conv" in e.key}


@pytest.mark.parametrize("ndim", [2, 3])
def test_batch_of_one_gives_the_numbers_of_the_stock_convolution(ndim):
    stock, ours = _convolutions(ndim, 3, 1, 1, 1)
    x = torch.randn(1, 5, *(8, 8, 8)[3 - ndim:])
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours(x_ours).sum().backward()
    stock(x_ref).sum().backward()
    torch.testing.assert_close(ours(x), stock(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, stock.weight.grad, rtol=1e-5, atol=1e-5)


# PyTorch picks its CPU convolution kernel by an internal heuristic that may change with any release;
# the fold's purpose (oneDNN where stock PyTorch takes its slower native kernel) was measured on 2.14
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
@pytest.mark.skipif(Version(torch.__version__).release[:2] != (2, 14),
                    reason="PyTorch's kernel choice for a batch of one was measured on torch 2.14 only")
@pytest.mark.parametrize("ndim", [2, 3])
def test_batch_of_one_runs_on_onednn_where_pytorch_takes_its_native_kernel(ndim):
    stock, ours = _convolutions(ndim, 3, 1, 1, 1)
    x = torch.randn(1, 5, *(8, 8, 8)[3 - ndim:], requires_grad=True)
    assert "aten::mkldnn_convolution" not in _kernels(lambda: stock(x))
    assert "aten::mkldnn_convolution" in _kernels(lambda: ours(x).sum().backward())


@pytest.mark.parametrize("case", ["batch of two", "large input", "odd output length", "one input channel", "float64",
                                  "device policy"])
def test_batch_folding_leaves_other_inputs_to_pytorch(case, monkeypatch):
    from nnunetv2_unetrpp.network_architecture import batch_folding
    from nnunetv2_unetrpp.network_architecture.execution import execution_policy

    folded = []
    monkeypatch.setattr(batch_folding, "folded_convolution", lambda *a: folded.append(1) or folded_convolution(*a))
    channels = 1 if case == "one input channel" else 5
    stock, ours = _convolutions(3, 3, 1, 1, 1, torch.float64 if case == "float64" else torch.float32, channels)
    shape = {"batch of two": (2, 5, 8, 8, 8), "large input": (1, 5, 64, 72, 8),
             "odd output length": (1, 5, 7, 8, 8)}.get(case, (1, channels, 8, 8, 8))
    x = torch.randn(shape, dtype=stock.weight.dtype)
    with execution_policy("device" if case == "device policy" else None):
        y = ours(x)
    assert not folded
    torch.testing.assert_close(y, stock(x), rtol=0, atol=0)
    ours(torch.randn(1, channels, 8, 8, 8, dtype=stock.weight.dtype))
    # the same module folds a small batch of one, unless its dtype or input channels rule it out
    assert folded == ([] if case in ("float64", "one input channel") else [1])


def test_batch_folding_conv_replaces_only_stock_convolutions():
    assert batch_folding_conv(nn.Conv3d) is BatchFoldingConv3d
    assert batch_folding_conv(nn.Conv2d) is BatchFoldingConv2d
    assert batch_folding_conv(nn.ConvTranspose3d) is nn.ConvTranspose3d
    assert set(BatchFoldingConv3d(4, 4, 3).state_dict()) == {"weight", "bias"}


def test_network_with_folded_stage_convolutions_is_as_accurate_as_stock_pytorch(tiny_unetrpp, monkeypatch):
    """Folded (oneDNN) and stock (native) float32 convolutions round differently, and the rounding grows through
    the backward pass, so neither is the reference: both are measured against the float64 network (which never
    folds). The folded network may be at most 10x as far from it as stock PyTorch's float32, in every output and
    gradient; a wrong fold is off by the size of the values."""
    from nnunetv2_unetrpp.network_architecture import batch_folding

    folds = []
    monkeypatch.setattr(batch_folding, "folded_convolution", lambda *a: folds.append(1) or folded_convolution(*a))
    torch.manual_seed(0)
    model = tiny_unetrpp((32, 32, 32), stem_stride=(2, 4, 4), attn_drop=0.0, proj_drop=0.0).train()
    x = torch.randn(1, 1, 32, 32, 32)

    def outputs_and_gradients(dtype: torch.dtype) -> list[torch.Tensor]:
        model.to(dtype).zero_grad()
        out = model(x.to(dtype))
        sum(o.square().mean() for o in out).backward()
        return [o.detach().double() for o in out] + [p.grad.double() for p in model.parameters() if p.grad is not None]

    folded = outputs_and_gradients(torch.float32)
    assert folds, "the stage convolutions did not fold"
    monkeypatch.setattr(batch_folding, "_NATIVE_KERNEL_MAX_ELEMENTS", 0)  # folding off
    stock = outputs_and_gradients(torch.float32)
    folds.clear()
    reference = outputs_and_gradients(torch.float64)
    assert not folds
    errors = [((f - r).norm() / r.norm(), (s - r).norm() / r.norm()) for f, s, r in zip(folded, stock, reference)]
    assert max(f / max(s, 1e-7) for f, s in errors) <= 10, max(errors)
