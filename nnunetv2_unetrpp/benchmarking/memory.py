"""Calibrate and check the static memory estimate (`nnunetv2_unetrpp.memory_estimate`) against the
measured peak of real training steps: UNETR++ and nnU-Net's planned PlainConvUNet, side by side in one run.

    python -m nnunetv2_unetrpp.benchmarking.memory [-o FILE.json] [--threads N]
    python -m nnunetv2_unetrpp.benchmarking.memory --table FILE.json   # the table again, with today's constants

Measured: the peak of live tensor memory (every storage an operation creates, forward, backward and
optimizer, freed when its last reference goes) over nnU-Net's training step (`training_step.py`),
after a first step has created the optimizer state: the quantity `torch.cuda.max_memory_allocated`
reports on a GPU, counted here on CPU in fp32 and independent of the allocator and of other
processes (the process's resident size is not: glibc keeps freed pages). The fitted factors are
printed for `memory_estimate.py`, then the table of estimate against measurement.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from nnunetv2_unetrpp import memory_estimate
from nnunetv2_unetrpp.benchmarking.training_step import TrainingStep

#: (name, network, patch, batch): UNETR++ at the rule's geometry of nnU-Net's pooling, and nnU-Net's CNN
#: as its planner builds it for the same patch; small enough for a CPU, varied in patch, batch and dimension.
PLANS = (
    ("unetrpp", 3, (32, 64, 64), 2), ("unetrpp", 3, (16, 96, 96), 2), ("unetrpp", 3, (48, 48, 48), 1),
    ("unetrpp", 2, (256, 256), 8),
    ("cnn", 3, (32, 64, 64), 2), ("cnn", 3, (48, 96, 96), 2), ("cnn", 2, (256, 256), 8),
)
CHANNELS, CLASSES = 1, 3


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of live tensor storage while active, starting from `initial` bytes (the weights, the batch)."""

    def __init__(self, initial: int) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = initial

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in self.live and storage.nbytes():
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def plain_cnn_architecture(pools: list, kernels: list) -> dict:
    """The PlainConvUNet block nnU-Net's default planner writes for a topology (ExperimentPlanner's settings)."""
    ndim, stages = len(pools[0]), len(pools)
    conv = "torch.nn.modules.conv.Conv3d" if ndim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d"
    max_features = 320 if ndim == 3 else 512
    return {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet", "arch_kwargs": {
        "n_stages": stages, "features_per_stage": [min(max_features, 32 * 2 ** i) for i in range(stages)],
        "conv_op": conv, "kernel_sizes": kernels, "strides": pools, "n_conv_per_stage": [2] * stages,
        "n_conv_per_stage_decoder": [2] * (stages - 1), "conv_bias": True, "norm_op": norm,
        "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _networks(kind: str, patch: Sequence[int]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(network, the same on the meta device) as the planners build them for `patch`."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from nnunetv2_unetrpp.trainers.plans_geometry import architecture_block, strides_from_pooling

    _, pools, kernels, fitted, _ = get_pool_and_conv_props([1.0] * len(patch), patch, 4, 999999)
    assert list(fitted) == list(patch), (patch, fitted)
    block = architecture_block(patch, *strides_from_pooling(pools)) if kind == "unetrpp" else \
        plain_cnn_architecture(pools, kernels)
    build = lambda: get_network_from_plans(block["network_class_name"], block["arch_kwargs"],
                                           block["_kw_requires_import"], CHANNELS, CLASSES)
    torch.manual_seed(0)
    network = build()
    with torch.device("meta"):
        return network, build()


def measure_peak(network: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """Peak live tensor bytes of nnU-Net's training step (the second one, with the optimizer state)."""
    x = torch.randn(tuple(input_shape))
    step = TrainingStep(network, "cpu")
    step(x)
    weights = sum(t.untyped_storage().nbytes() for t in [*network.parameters(), *network.buffers()])
    state = sum(v.untyped_storage().nbytes() for s in step.optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor))
    mode = PeakTensorMemory(weights + state + x.untyped_storage().nbytes())
    with mode:
        step(x)
    return mode.peak


def run(threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for kind, dim, patch, batch in PLANS:
        network, meta = _networks(kind, patch)
        count = memory_estimate.count_training_memory(meta, (CHANNELS, *patch))
        measured = measure_peak(network, (batch, CHANNELS, *patch))
        rows.append({"network": kind, "patch_size": list(patch), "batch_size": batch, "measured_bytes": measured,
                     "parameter_bytes": count.parameter_bytes,
                     "activation_bytes_per_sample": count.activation_bytes_per_sample})
        print(f"{kind} {list(patch)} x{batch}: measured {measured / 2**20:.0f} MiB", flush=True)
    return rows


def fit(rows: list[dict], kind: str) -> float:
    """Least-squares activation factor of `kind`: measured - state = factor x counted activations."""
    pairs = [(r["batch_size"] * r["activation_bytes_per_sample"],
              r["measured_bytes"] - memory_estimate.STATE_COPIES * r["parameter_bytes"]) for r in rows
             if r["network"] == kind]
    return sum(a * m for a, m in pairs) / sum(a * a for a, _ in pairs)


def table(rows: list[dict]) -> str:
    """Markdown: estimate (with the constants of memory_estimate.py) against measurement."""
    factors = {"unetrpp": memory_estimate.UNETRPP_ACTIVATION_FACTOR, "cnn": memory_estimate.PLAIN_CNN_ACTIVATION_FACTOR}
    lines = ["| network | patch | batch | estimated (MiB) | measured (MiB) | estimate / measured |", "|---|---|---|---|---|---|"]
    for r in rows:
        count = memory_estimate.MemoryCount(r["parameter_bytes"], r["activation_bytes_per_sample"])
        estimate = count.training_bytes(r["batch_size"], factors[r["network"]])
        name = "UNETR++" if r["network"] == "unetrpp" else "PlainConvUNet"
        lines.append(f"| {name} | {'x'.join(map(str, r['patch_size']))} | {r['batch_size']} | {estimate / 2**20:.0f} | "
                     f"{r['measured_bytes'] / 2**20:.0f} | {estimate / r['measured_bytes']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_unetrpp.benchmarking.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", type=Path, help="write the measurements as JSON to this file")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--table", type=Path, help="print the table of measurements written by -o, measuring nothing")
    args = parser.parse_args(argv)
    rows = json.loads(args.table.read_text()) if args.table else run(args.threads)
    print(f"fitted: UNETRPP_ACTIVATION_FACTOR = {fit(rows, 'unetrpp'):.3f}, "
          f"PLAIN_CNN_ACTIVATION_FACTOR = {fit(rows, 'cnn'):.3f} (memory_estimate.py)")
    print(table(rows))
    if args.o:
        args.o.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
