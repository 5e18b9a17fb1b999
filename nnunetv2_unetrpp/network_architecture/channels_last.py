"""Channels-last execution of the full-resolution branch, a CPU fast path.

On CPU, oneDNN takes channels-last tensors without reordering them on every call, as it does
channel-first ones. The whole block, channels-last, against the stock channel-first one at 16 channels and
64x128x128: 1.3x as fast forward and 1.7x to 1.8x forward + backward on 2 quiet cores
(docs/BENCHMARKS.md, section 6: python -m nnunetv2_unetrpp.benchmarking.cpu_fast_paths). PyTorch's
instance norm, however, always returns a channel-first tensor, which would undo the layout after every
conv; the instance norms here are drop-in subclasses whose output is channels-last. On other devices
(`execution.py`) they are PyTorch's instance norms.
"""
from __future__ import annotations

from typing import Type

import torch
from torch import nn

from nnunetv2_unetrpp.network_architecture.execution import use_cpu_fast_paths


def channels_last_format(ndim: int) -> torch.memory_format:
    """The channels-last memory format of a (B, C, *spatial) tensor with `ndim` dimensions."""
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` in channels-last layout (a no-op if it already is)."""
    return x.contiguous(memory_format=channels_last_format(x.ndim))


def is_channels_last(x: torch.Tensor) -> bool:
    """True if `x` is laid out channels-last and has more than one channel (with one channel
    both layouts are the same memory)."""
    return x.ndim in (4, 5) and x.shape[1] > 1 and x.is_contiguous(memory_format=channels_last_format(x.ndim))


_CHUNK = 8192  # tokens centred at a time: 512 KB of 16 float32 channels, which stay in cache


class _InstanceNormFunction(torch.autograd.Function):
    """Instance norm of a channels-last tensor, with accurate statistics, returned channels-last.

    Per sample, instance norm is batch norm with batch size one, but PyTorch's channels-last batch-norm
    kernel accumulates in float32: on a full-resolution tensor (16 x 64x128x128) its output is about 5e-4
    off a float64 reference, against 4e-7 to 7e-7 for PyTorch's channel-first kernel and for this one
    (docs/BENCHMARKS.md, section 6: python -m nnunetv2_unetrpp.benchmarking.cpu_fast_paths). Here mean
    and variance come from cascade sums over cache-sized chunks of centred tokens, accumulated in
    float64; the gradient is PyTorch's batch-norm backward given these statistics.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float):
        B, C = x.shape[:2]
        tokens = x.movedim(1, -1).reshape(B, -1, C)  # a (B, N, C) view of the channels-last memory
        stat_dtype = torch.promote_types(x.dtype, torch.float32)
        # One pass over cache-sized chunks, centred on a pilot mean from every 64th token, so that
        # the float32 chunk sums have no cancellation; chunk sums are added in float64.
        pilot = tokens[:, ::64].mean(1, keepdim=True, dtype=stat_dtype)  # (B, 1, C)
        sums, squares = [], []
        for chunk in tokens.split(_CHUNK, 1):
            centred = chunk - pilot
            sums.append(centred.sum(1))
            squares.append(centred.square_().sum(1))
        n = tokens.shape[1]
        offset = torch.stack(sums).sum(0, dtype=torch.float64) / n  # mean - pilot, (B, C)
        var = torch.stack(squares).sum(0, dtype=torch.float64) / n - offset.square()
        mean = pilot[:, 0] + offset.to(stat_dtype)
        invstd = torch.rsqrt(var.to(stat_dtype) + eps)  # (B, C)
        # y = x * scale + shift, as PyTorch's own batch-norm kernels compute it
        scale = invstd if weight is None else invstd * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        shape = (B, C) + (1,) * (x.ndim - 2)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        affine = weight is not None
        mask = [ctx.needs_input_grad[0], affine and ctx.needs_input_grad[1], affine and ctx.needs_input_grad[2]]
        grad = to_channels_last(grad)
        parts = [torch.ops.aten.native_batch_norm_backward(grad[b:b + 1], x[b:b + 1], weight, None, None, mean[b],
                                                           invstd[b], True, ctx.eps, mask)
                 for b in range(x.shape[0])]
        grad_x = grad_w = grad_b = None
        if mask[0]:
            grad_x = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts])
        if mask[1]:
            grad_w = sum(p[1] for p in parts)
        if mask[2]:
            grad_b = sum(p[2] for p in parts)
        return grad_x, grad_w, grad_b, None


class _ChannelsLastInstanceNorm:
    """Instance norm with a channels-last output, whatever the input's layout, on the CPU path;
    PyTorch's own instance norm on the others.

    Converting here rather than trusting the conv's output matters for one-channel inputs,
    whose layout is ambiguous, so that PyTorch computes the first conv channel-first.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.ndim not in (4, 5) or not use_cpu_fast_paths(x):
            return super().forward(x)
        return _InstanceNormFunction.apply(to_channels_last(x), self.weight, self.bias, self.eps)


class ChannelsLastInstanceNorm3d(_ChannelsLastInstanceNorm, nn.InstanceNorm3d):
    """nn.InstanceNorm3d (same arguments, maths and state_dict) with a channels-last output."""


class ChannelsLastInstanceNorm2d(_ChannelsLastInstanceNorm, nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same arguments, maths and state_dict) with a channels-last output."""


def channels_last_norm(norm_op: Type[nn.Module]) -> Type[nn.Module]:
    """The channels-last twin of PyTorch's instance norms; other norm ops (batch and group norm
    keep the layout themselves) are returned unchanged."""
    return {nn.InstanceNorm3d: ChannelsLastInstanceNorm3d, nn.InstanceNorm2d: ChannelsLastInstanceNorm2d}.get(
        norm_op, norm_op)
