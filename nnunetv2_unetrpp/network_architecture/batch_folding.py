"""Convolutions of a batch of one folded into a batch of two, a CPU fast path.

PyTorch picks the kernel of a float32 CPU convolution by a heuristic tuned for 2D images (`use_mkldnn` in
ATen's ConvUtils.h): a batch of one whose first four sizes (batch, channels and the first two spatial
axes) multiply to at most 20,480 runs ATen's native im2col kernel instead of oneDNN. The convolutions of
UNETR++'s transformer stages from the second on fall there at batch 1 (64 channels at 16^3 tokens, 128 at
8^3, 256 at 4^3), which is how nnU-Net predicts. Folded, they ran 2.7x to 2.9x (64 channels) and 1.6x to
1.7x (128) as fast on 2 quiet cores, and even (0.94x to 1.03x) at 256 channels (docs/BENCHMARKS.md,
section 6: python -m nnunetv2_unetrpp.benchmarking.cpu_fast_paths).

The convolutions here cut such an input into two halves along its first spatial axis, each with
the halo its kernel reads, and convolve them as a batch of two, which oneDNN runs. The result is
the same convolution (up to float32 summation order) from the same weights and state_dict. Any
other input, and every input off the CPU path (`execution.py`), takes PyTorch's own convolution.
"""
from __future__ import annotations

import math
from typing import Type

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_unetrpp.network_architecture.execution import use_cpu_fast_paths

#: ATen's bound on batch x channels x first two spatial sizes up to which a batch of one runs natively
_NATIVE_KERNEL_MAX_ELEMENTS = 20480


def fold_is_worthwhile(conv: nn.Module, x: torch.Tensor) -> bool:
    """True where PyTorch would run its native kernel, the input has more than one channel (the stages
    have 32 and more; a one-channel input is left to PyTorch) and the output length along the first
    axis is even."""
    if not (use_cpu_fast_paths(x) and x.dtype == torch.float32 and x.shape[0] == 1 and x.shape[1] > 1
            and conv.groups == 1
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and math.prod(x.shape[:4]) <= _NATIVE_KERNEL_MAX_ELEMENTS):
        return False
    return _output_length(conv, x.shape[2]) % 2 == 0


def _output_length(conv: nn.Module, length: int) -> int:
    k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
    return (length + 2 * p - d * (k - 1) - 1) // s + 1


def folded_convolution(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`conv` (a zero-padded nn.Conv2d/3d) applied to `x` (1, C, L, ...) as a batch of two halves
    of its first spatial axis L; the output length along L must be even."""
    k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
    half = _output_length(conv, x.shape[2]) // 2
    span = (half - 1) * s + d * (k - 1) + 1  # input rows (padding included) that one half reads
    padded = F.pad(x, (0, 0) * (x.ndim - 3) + (p, p)) if p else x
    halves = torch.cat((padded[:, :, :span], padded[:, :, half * s:half * s + span]))
    conv_fn = F.conv3d if x.ndim == 5 else F.conv2d
    out = conv_fn(halves, weight, bias, conv.stride, (0, *conv.padding[1:]), conv.dilation)  # (2, C_out, half, ...)
    return out.transpose(0, 1).reshape(1, out.shape[1], 2 * half, *out.shape[3:])


class _BatchFoldingConv:
    """Mixin over nn.Conv2d/3d: folds where `fold_is_worthwhile`, PyTorch's convolution otherwise."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if fold_is_worthwhile(self, input):
            return folded_convolution(self, input, weight, bias)
        return super()._conv_forward(input, weight, bias)


class BatchFoldingConv3d(_BatchFoldingConv, nn.Conv3d):
    """nn.Conv3d (same arguments, maths and state_dict) that runs a batch of one on oneDNN on CPU."""


class BatchFoldingConv2d(_BatchFoldingConv, nn.Conv2d):
    """nn.Conv2d (same arguments, maths and state_dict) that runs a batch of one on oneDNN on CPU."""


def batch_folding_conv(conv_op: Type[nn.Module]) -> Type[nn.Module]:
    """The batch-folding twin of nn.Conv3d / nn.Conv2d; other conv ops are returned unchanged."""
    return {nn.Conv3d: BatchFoldingConv3d, nn.Conv2d: BatchFoldingConv2d}.get(conv_op, conv_op)
