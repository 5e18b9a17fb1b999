"""Which execution path the network takes: the CPU fast paths for CPU tensors, stock PyTorch
operations everywhere else.

The CPU fast paths (channels-last full-resolution branch with its own instance norm, per-sample
`torch.mm` 1x1 maps, chunked attention dropout, batch-1 convolutions folded into a batch of two) are
timed against the stock operations in one process (docs/BENCHMARKS.md, section 6: python -m
nnunetv2_unetrpp.benchmarking.cpu_fast_paths): on 2 quiet CPU cores they are 1.2x to 3.3x as fast where
the network uses them (one case even); on busy cores their many small operations wait for the OpenMP
threads and lose. On a GPU each of their small operations is one more kernel launch, and torch.compile
has to unroll their Python loops; cuDNN, cuBLAS and SDPA do best with the channel-first layout, one
convolution per 1x1 map and SDPA's own dropout, as stock nnU-Net uses them. The decision is
`x.device.type == "cpu"` rather than `not x.is_cuda`, so that the meta device (which dispatches what any
non-CPU device would) takes the non-CPU path.

Tests and benchmarks can force either path on any device with `execution_policy`; both paths
compute the same function with the same state_dict.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: The two paths: "cpu" (the CPU fast paths) and "device" (stock operations, as on CUDA).
POLICIES = ("cpu", "device")

_forced: str | None = None


def use_cpu_fast_paths(x: torch.Tensor) -> bool:
    """True if the CPU fast paths should process `x`: it lives on the CPU, unless a policy is
    forced by `execution_policy`."""
    if _forced is not None:
        return _forced == "cpu"
    return x.device.type == "cpu"


@contextmanager
def execution_policy(policy: str | None) -> Iterator[None]:
    """Force `policy` ("cpu" or "device") for every tensor inside the block; None restores the
    choice by device. torch.compile guards on the forced policy, so a change recompiles."""
    global _forced
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES} or None, got {policy!r}")
    previous, _forced = _forced, policy
    try:
        yield
    finally:
        _forced = previous
