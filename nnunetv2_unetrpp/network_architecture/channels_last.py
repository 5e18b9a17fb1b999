"""Channels-last execution of the full-resolution branch.

On CPU, oneDNN runs the 3x3x3 convolutions of few channels over large volumes (16 channels at
the full patch) about 2x faster forward and 1.8x faster forward+backward on channels-last
tensors than on channel-first ones, which it reorders on every call (Synapse geometry, 2
threads; see docs/BENCHMARKS.md). PyTorch's instance norm, however, always returns a
channel-first tensor, which would undo the layout after every conv; the instance norms here
are drop-in subclasses whose output is channels-last.
"""
from __future__ import annotations

from typing import Type

import torch
import torch.nn.functional as F
from torch import nn


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


class _ChannelsLastInstanceNorm:
    """Instance norm with a channels-last output, whatever the input's layout.

    Per sample, instance norm is batch norm with batch size one, and PyTorch's batch norm keeps
    the channels-last layout; the samples of a channels-last batch are contiguous slices of it.
    Converting here rather than trusting the conv's output matters for one-channel inputs,
    whose layout is ambiguous, so that PyTorch computes the first conv channel-first.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.ndim not in (4, 5):
            return super().forward(x)
        samples = [F.batch_norm(s, None, None, self.weight, self.bias, True, 0.0, self.eps)
                   for s in to_channels_last(x).split(1)]
        return samples[0] if len(samples) == 1 else torch.cat(samples)


class ChannelsLastInstanceNorm3d(_ChannelsLastInstanceNorm, nn.InstanceNorm3d):
    """nn.InstanceNorm3d (same arguments, maths and state_dict) with a channels-last output."""


class ChannelsLastInstanceNorm2d(_ChannelsLastInstanceNorm, nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same arguments, maths and state_dict) with a channels-last output."""


def channels_last_norm(norm_op: Type[nn.Module]) -> Type[nn.Module]:
    """The channels-last twin of PyTorch's instance norms; other norm ops (batch and group norm
    keep the layout themselves) are returned unchanged."""
    return {nn.InstanceNorm3d: ChannelsLastInstanceNorm3d, nn.InstanceNorm2d: ChannelsLastInstanceNorm2d}.get(
        norm_op, norm_op)
