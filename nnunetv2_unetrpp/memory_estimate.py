"""Static estimate of the memory a training step holds, as nnU-Net's planner estimates its CNN: no GPU.

The network is built on the meta device and run forward once in training mode; every tensor that
autograd saves for backward is counted once (the activations, the attention maps, the token
projections' products of size N), with the outputs. What is held besides:

    training bytes = STATE_COPIES x parameter bytes + activation factor x batch x activation bytes per sample

Parameters, gradients and SGD's momentum are three copies of the weights, which for UNETR++ grow
with the patch (E/F and the positional embeddings are sized by the token count). The activation
factor covers what the count leaves out (the loss, backward's transient gradients, allocator
slack); it is measured, per network family, against the peak tensor memory of a real training step
on CPU in fp32, side by side with nnU-Net's planned PlainConvUNet:

    python -m nnunetv2_unetrpp.benchmarking.memory -o docs/memory_calibration_cpu.json

prints the fitted factors and the table of estimate against measurement (docs/BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

#: weights, their gradients and SGD's momentum buffer (nnU-Net's optimizer)
STATE_COPIES = 3
#: measured peak / counted activations, fitted by `python -m nnunetv2_unetrpp.benchmarking.memory`
#: (CPU, fp32, nnU-Net's training step); the planner uses both, so only their ratio carries to a GPU.
UNETRPP_ACTIVATION_FACTOR = 1.090
PLAIN_CNN_ACTIVATION_FACTOR = 1.182


@dataclass(frozen=True)
class MemoryCount:
    """What a training step holds, counted on the meta device."""

    parameter_bytes: int
    activation_bytes_per_sample: int

    def training_bytes(self, batch_size: int, activation_factor: float) -> float:
        return STATE_COPIES * self.parameter_bytes + activation_factor * batch_size * self.activation_bytes_per_sample


def count_training_memory(network: nn.Module, input_shape: Sequence[int]) -> MemoryCount:
    """Count a network built on the meta device for inputs of `input_shape` (channels first, no batch)."""
    parameters = {id(p) for p in network.parameters()}
    saved: dict[int, int] = {}
    keep = []  # saved tensors stay referenced, so their ids stay theirs

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t if t._base is None else t._base
        if id(t) not in parameters and id(base) not in parameters and id(base) not in saved:
            saved[id(base)] = base.numel() * base.element_size()
            keep.append(base)
        return t

    x = torch.empty((1, *input_shape), device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = network.train()(x)
    outputs = out if isinstance(out, (list, tuple)) else [out]
    activations = sum(saved.values()) + sum(o.numel() * o.element_size() for o in outputs)
    return MemoryCount(sum(p.numel() * p.element_size() for p in network.parameters()), activations)
