"""Kernel-level aten operations of one training step, counted on the meta device.

    python -m nnunetv2_unetrpp.benchmarking.op_count [--batch 2] [--top N]

The meta device dispatches what any non-CPU device would, without computing, so the count is
the number of operations a GPU step launches (the network runs the same operations on every device) (each a kernel plus Python dispatch overhead, and
each a node torch.compile has to trace), free of any GPU. View-only operations (reshape,
transpose, ...) launch no kernel and are not counted. Caveat: meta decomposes SDPA into its math
operations (about 20 per call, forward and backward), where CUDA runs one kernel each way.
"""
from __future__ import annotations

import argparse
from collections import Counter
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nnunetv2_unetrpp.benchmarking.synapse import NETWORKS, SYNAPSE, UNETRPP_NETWORK, build_network
from nnunetv2_unetrpp.benchmarking.training_step import synthetic_loss

#: aten operations that only create views (or alias metadata): no kernel, no memory traffic.
VIEW_OPS = frozenset({
    "alias", "as_strided", "chunk", "detach", "diagonal", "expand", "expand_as", "flatten", "lift_fresh",
    "movedim", "narrow", "permute", "reshape", "select", "slice", "split", "split_with_sizes", "squeeze", "t",
    "transpose", "unbind", "unflatten", "unfold", "unsqueeze", "view", "view_as", "_reshape_alias", "_unsafe_view",
})


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside the `with` block, by name, views excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEW_OPS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def count_training_step(factory: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> Counter[str]:
    """Operations of forward + backward of `factory()` (built on the meta device, training mode)
    on an input of `input_shape`, with the synthetic loss of the benchmarks."""
    with torch.device("meta"):
        network = factory().train()
    x = torch.empty(input_shape, device="meta")
    with OpCounter() as counter:
        synthetic_loss(network(x)).backward()
    return counter.counts


def count_all(batch: int = 2) -> dict[str, dict[str, int]]:
    """Training-step operation counts of the Synapse-geometry networks, deep supervision on and off."""
    shape = (batch, 1, *SYNAPSE.patch)
    return {name: {f"deep_supervision_{'on' if ds else 'off'}": sum(count_training_step(
        lambda: build_network(SYNAPSE, name, ds), shape).values()) for ds in (True, False)} for name in NETWORKS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--top", type=int, default=0, help="also list the most frequent operations of UNETR++")
    args = parser.parse_args(argv)
    counts = count_all(args.batch)
    print(f"aten operations per training step (forward + backward), input {args.batch}x1x{'x'.join(map(str, SYNAPSE.patch))}, "
          "meta device\n")
    print("| network | deep supervision on | deep supervision off |\n|---|---|---|")
    for name, c in counts.items():
        print(f"| {name} | {c['deep_supervision_on']} | {c['deep_supervision_off']} |")
    if args.top:
        ops = count_training_step(lambda: build_network(SYNAPSE, UNETRPP_NETWORK), (args.batch, 1, *SYNAPSE.patch))
        print("\n" + "\n".join(f"{n:6d} {op}" for op, n in ops.most_common(args.top)))


if __name__ == "__main__":
    main()
