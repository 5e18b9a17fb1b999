"""The CPU fast paths give the numbers of the plain PyTorch computations they replace:
channels-last instance norms and 1x1 maps of the full-resolution branch, and the chunked
attention-with-dropout of the spatial branch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_unetrpp.network_architecture.attention import _cpu_attention_with_dropout
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
