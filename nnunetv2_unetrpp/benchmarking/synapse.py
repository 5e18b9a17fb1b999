"""UNETR++ at the paper's Synapse configuration against the PlainConvUNet nnU-Net plans there.

    python -m nnunetv2_unetrpp.benchmarking.synapse [--device cpu|cuda] [--threads 2] [--repeats 3] [--rounds 3] [-o F]

This module is also the one registry of the networks the Synapse benchmarks compare (this
command, the GPU check, the operation count): `NETWORKS` built by `build_network` at a `Geometry`.
The baseline is the network nnU-Net's default planner (`ExperimentPlanner`) writes into the plans
of Synapse-like data, 64x128x128 voxels at 3x0.9x0.9 mm (`SYNAPSE_PLAN`: 6 stages, 1x3x3 kernels in
the first, strides [1,1,1], [1,2,2], [2,2,2] x 4, patch 64x128x128, batch 2;
`tests/test_benchmark_cli.py` plans such a dataset with nnU-Net and compares).

Per network: parameters, forward FLOPs and time of one patch (batch 1, as nnU-Net predicts), the
training step at the plan's batch (`training_step.py`: nnU-Net's recipe) and its peak memory.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from nnunetv2_unetrpp.benchmarking.measure import MeasureSettings, add_timing_arguments, measure
from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.network_architecture import UNETRPP, build_official_variant

UNETRPP_NETWORK = "UNETR++"
NNUNET_PLAN = "nnU-Net PlainConvUNet (Synapse-like plan)"
#: The networks compared, the baseline (nnU-Net's planned network) last.
NETWORKS = (UNETRPP_NETWORK, NNUNET_PLAN)

#: `arch_kwargs` of the 3d_fullres plan nnU-Net 2.8's ExperimentPlanner makes for Synapse-like data
#: (operations as nnU-Net names them in the plans), 14 classes.
SYNAPSE_PLAN = {
    "n_stages": 6, "features_per_stage": (32, 64, 128, 256, 320, 320),
    "kernel_sizes": ((1, 3, 3),) + ((3, 3, 3),) * 5, "strides": ((1, 1, 1), (1, 2, 2)) + ((2, 2, 2),) * 4,
    "n_conv_per_stage": (2,) * 6, "n_conv_per_stage_decoder": (2,) * 5, "conv_bias": True,
    "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
    "nonlin_kwargs": {"inplace": True},
}
#: A plan of the same form for the tiny networks of `QUICK`.
QUICK_PLAN = {**SYNAPSE_PLAN, "n_stages": 4, "features_per_stage": (8, 16, 32, 32),
              "kernel_sizes": ((1, 3, 3),) + ((3, 3, 3),) * 3, "strides": ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
              "n_conv_per_stage": (2,) * 4, "n_conv_per_stage_decoder": (2,) * 3}
#: The tiny UNETR++ of `QUICK`.
QUICK_UNETRPP = dict(img_size=(16, 32, 32), stem_stride=(2, 4, 4), feature_size=8, dims=(8, 16, 16, 32),
                     depths=(1, 1, 1, 1), decoder_depth=1, num_heads=2, proj_sizes=(8, 8, 8, 4), decoder_proj_size=8,
                     spatial_layout="official")


@dataclass(frozen=True)
class Geometry:
    """What is measured: patch, training batch, classes, sliding-window volume, nnU-Net's planned
    PlainConvUNet (`plan`, arch_kwargs) and UNETR++ (`unetrpp`: keyword arguments of `UNETRPP`, or
    None for the paper's official Synapse network)."""

    name: str
    patch: tuple[int, ...]
    batch: int
    num_classes: int
    volume: tuple[int, ...]
    plan: dict = field(hash=False)
    unetrpp: dict | None = field(default=None, hash=False)


SYNAPSE = Geometry("Synapse", (64, 128, 128), 2, 14, (128, 256, 256), SYNAPSE_PLAN)
QUICK = Geometry("quick (tiny networks)", (16, 32, 32), 2, 14, (24, 32, 48), QUICK_PLAN, QUICK_UNETRPP)


def build_network(geometry: Geometry, name: str, deep_supervision: bool = True) -> nn.Module:
    """The network `name` (one of NETWORKS) at `geometry`. Module-level, so that `measure` can
    send it to a spawned child."""
    if name == NNUNET_PLAN:
        return PlainConvUNet(1, conv_op=nn.Conv3d, norm_op=nn.InstanceNorm3d, nonlin=nn.LeakyReLU,
                             num_classes=geometry.num_classes, deep_supervision=deep_supervision, **geometry.plan)
    if name != UNETRPP_NETWORK:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}")
    if geometry.unetrpp is None:
        return build_official_variant("synapse", num_classes=geometry.num_classes, deep_supervision=deep_supervision)
    kwargs = dict(geometry.unetrpp)
    return UNETRPP(1, geometry.num_classes, kwargs.pop("img_size"), deep_supervision=deep_supervision, **kwargs)


def run(device: str = "cpu", threads: int = 2, repeats: int = 3, rounds: int = 1, amp: bool = False,
        compile_: bool = False, geometry: Geometry = SYNAPSE) -> dict[str, dict]:
    """Measure every network `rounds` times, alternating between them, and report per network the
    median over rounds (each round's time is itself the median of `repeats` steps). Alternating
    makes a slow phase of a shared machine hit all networks alike instead of one."""
    shapes = {"forward": (1, 1, *geometry.patch), "train": (geometry.batch, 1, *geometry.patch)}
    per_round: dict[str, list[dict]] = {name: [] for name in NETWORKS}
    for _ in range(rounds):
        for name in NETWORKS:
            kwargs = {"geometry": geometry, "name": name}
            forward, train = (measure(name, build_network, kwargs, shapes[mode],
                                      MeasureSettings(mode, device, repeats, threads, amp, compile_,
                                                      flops=mode == "forward"))
                              for mode in ("forward", "train"))
            per_round[name].append({"network": forward.network, "parameters": forward.parameters,
                                    "gflops_forward": forward.gflops_forward, "forward_s": forward.forward_s,
                                    "train_step_s": train.train_step_s, "train_peak_memory_mb": train.peak_memory_mb})
    results = {}
    for name, samples in per_round.items():
        results[name] = {**samples[0], "rounds": samples}
        for key in ("forward_s", "train_step_s", "train_peak_memory_mb"):
            results[name][key] = statistics.median(s[key] for s in samples)
    return results


def table(results: dict[str, dict], batch: int = SYNAPSE.batch) -> str:
    """Markdown table of `run`'s results with ratios against nnU-Net's planned network."""
    base = results[NNUNET_PLAN]
    lines = [f"| network | params (M) | GFLOPs fwd | forward, batch 1 (s) | training step, batch {batch} (s) | "
             "train peak mem (MB) | forward ratio | train ratio | memory ratio |", "|---" * 9 + "|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f} | {r['gflops_forward']:.1f} | {r['forward_s']:.3f} | "
            f"{r['train_step_s']:.3f} | {r['train_peak_memory_mb']:.0f} | {r['forward_s'] / base['forward_s']:.3f} | "
            f"{r['train_step_s'] / base['train_step_s']:.3f} | "
            f"{r['train_peak_memory_mb'] / base['train_peak_memory_mb']:.3f} |")
    return "\n".join(lines)


@command
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_unetrpp.benchmarking.synapse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    add_timing_arguments(parser)
    parser.add_argument("--amp", action="store_true", help="fp16 autocast with a grad scaler (CUDA, as nnU-Net)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("-o", "--output", type=Path, help="also write the results as JSON (not overwritten)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.amp and args.device != "cuda":
        raise UserError("--amp needs --device cuda: nnU-Net autocasts on CUDA only")
    if args.output and args.output.exists():
        raise UserError(f"{args.output} exists; choose another file")
    results = run(args.device, args.threads, args.repeats, args.rounds, args.amp, args.compile)
    print(table(results))
    if args.output:
        command_line = " ".join([parser.prog, *argv])
        settings = {"command": command_line, "device": args.device, "torch": torch.__version__,
                    "torch_threads": args.threads, "repeats": args.repeats, "rounds": args.rounds, "amp": args.amp,
                    "compile": args.compile, "geometry": {"patch": SYNAPSE.patch, "training_batch": SYNAPSE.batch,
                                                          "forward_batch": 1, "num_classes": SYNAPSE.num_classes}}
        args.output.write_text(json.dumps({**settings, "baseline": NNUNET_PLAN, "networks": results}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
