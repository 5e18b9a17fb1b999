"""`python -m nnunetv2_unetrpp.benchmarking.gpu_check`: what a GPU reviewer needs, in one run.

    python -m nnunetv2_unetrpp.benchmarking.gpu_check [--device cuda] [-o gpu_check.json] [--quick]

At the Synapse geometry (input 1x64x128x128, 14 classes, batch 2) and for the two networks of
`synapse.py`'s registry, measured interleaved in one process (a slow phase of the machine then
hits all alike): UNETR++ and the PlainConvUNet nnU-Net plans for Synapse-like data:

1. kernel-level aten operations per training step, counted on the meta device (`op_count.py`);
2. nnU-Net's training step (`training_step.py`) in fp32, with AMP (fp16 autocast and a grad
   scaler) and with AMP + torch.compile on CUDA; fp32 eager and compiled on CPU, where nnU-Net
   does not autocast: median time and peak memory;
3. sliding-window prediction of one 128x256x256 volume by nnU-Net's predictor (`sliding_window.py`);
4. the GPU goals: UNETR++'s step at most 0.5x PlainConvUNet's, its peak memory below PlainConvUNet's.

Writes the results as JSON (rewritten after every phase, so an interrupted run keeps what it measured) and a Markdown table
next to it. Peak memory is that of the CUDA allocator, attributed to each network as if it ran
alone (its parameters and optimizer state plus what its step allocates); PyTorch keeps no CPU
allocator statistics, so on CPU it is left out. `--quick` runs tiny networks on a tiny volume:
a smoke test of this script, not a measurement.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from nnunetv2_unetrpp.benchmarking.network_cost import count_parameters
from nnunetv2_unetrpp.benchmarking.op_count import count_training_step
from nnunetv2_unetrpp.benchmarking.sliding_window import predict_volume
from nnunetv2_unetrpp.benchmarking.synapse import (
    NETWORKS,
    NNUNET_PLAN,
    QUICK,
    SYNAPSE,
    UNETRPP_NETWORK,
    Geometry,
    build_network,
)
from nnunetv2_unetrpp.benchmarking.training_step import TrainingStep
from nnunetv2_unetrpp.command_line import UserError, command

#: (autocast, compile) of each mode; amp is fp16 autocast with a grad scaler, which nnU-Net uses on CUDA only.
MODES = {"fp32": (False, False), "compile": (False, True), "amp": (True, False), "amp+compile": (True, True)}
DEFAULT_MODES = {"cuda": ("fp32", "amp", "amp+compile"), "cpu": ("fp32", "compile")}
GOALS = {"train_step_vs_nnunet_max": 0.5, "peak_memory_vs_nnunet_max": 1.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _state_bytes(network: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    tensors = [*network.parameters(), *network.buffers()]
    tensors += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def measure_training(geometry: Geometry, device: torch.device, mode: str, repeats: int, rounds: int,
                     compile_backend: str) -> dict[str, dict]:
    """Median training-step time (over rounds of `repeats` steps, networks alternating) and peak
    memory of every network in `mode`."""
    amp, compiled = MODES[mode]
    x = torch.randn(geometry.batch, 1, *geometry.patch, device=device)
    trainees = {}
    for name in NETWORKS:
        torch.manual_seed(0)
        trainees[name] = TrainingStep(build_network(geometry, name), device, amp,
                                      compile_backend if compiled else None)
    results = {name: {"rounds_s": []} for name in trainees}
    start = time.perf_counter()
    for name, t in trainees.items():  # warm-up: compilation, cuDNN autotuning, optimizer state
        t0 = time.perf_counter()
        for _ in range(2):
            t(x)
        _sync(device)
        results[name]["warmup_s"] = time.perf_counter() - t0
    for round_ in range(rounds):
        for name, t in trainees.items():
            for other in trainees.values():  # no gradients held: the step allocates its own
                other.optimizer.zero_grad(set_to_none=True)
            _sync(device)
            if device.type == "cuda":
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                t(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
            results[name]["rounds_s"].append(statistics.median(times))
            if device.type == "cuda" and round_ == 0:
                step_bytes = torch.cuda.max_memory_allocated(device) - before
                results[name]["peak_memory_mb"] = (_state_bytes(t.network, t.optimizer) + step_bytes) / 2**20
    for name, r in results.items():
        r["train_step_s"] = statistics.median(r["rounds_s"])
        r.setdefault("peak_memory_mb", None)
    results["_wall_s"] = time.perf_counter() - start
    del trainees
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def measure_sliding_window(geometry: Geometry, device: torch.device) -> dict[str, dict]:
    """One sliding-window prediction of a random volume per network (after a warm-up tile)."""
    image = torch.randn(1, *geometry.volume)
    results = {}
    for name in NETWORKS:
        torch.manual_seed(0)
        network = build_network(geometry, name, deep_supervision=False).to(device).eval()
        tile = torch.randn(1, 1, *geometry.patch, device=device)
        autocast = torch.autocast("cuda") if device.type == "cuda" else nullcontext()
        with torch.inference_mode(), autocast:
            network(tile)
        _sync(device)
        if device.type == "cuda":
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        logits = predict_volume(network, image, geometry.patch, geometry.num_classes, device)
        _sync(device)
        results[name] = {"sliding_window_s": time.perf_counter() - t0, "finite": bool(torch.isfinite(logits).all())}
        if device.type == "cuda":
            params = sum(p.numel() * p.element_size() for p in network.parameters())
            results[name]["peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) - before + params) / 2**20
        del network, logits
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def describe_networks(geometry: Geometry) -> dict[str, dict]:
    """Class and parameter count of every network, built on the meta device (no memory)."""
    described = {}
    for name in NETWORKS:
        with torch.device("meta"):
            network = build_network(geometry, name)
        described[name] = {"class": type(network).__name__, "parameters": count_parameters(network)}
    return described


def goals(training: dict[str, dict]) -> dict[str, dict]:
    """Per mode, UNETR++'s step and peak memory relative to PlainConvUNet's."""
    out = {}
    for mode, r in training.items():
        ours, base = r[UNETRPP_NETWORK], r[NNUNET_PLAN]
        g = {"train_step_vs_nnunet": ours["train_step_s"] / base["train_step_s"]}
        g["train_step_vs_nnunet_met"] = g["train_step_vs_nnunet"] <= GOALS["train_step_vs_nnunet_max"]
        if ours["peak_memory_mb"] is not None:
            g["peak_memory_vs_nnunet"] = ours["peak_memory_mb"] / base["peak_memory_mb"]
            g["peak_memory_vs_nnunet_met"] = g["peak_memory_vs_nnunet"] < GOALS["peak_memory_vs_nnunet_max"]
        out[mode] = g
    return out


def _environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "torch_threads": torch.get_num_threads()}
    for package in ("dynamic_network_architectures", "nnunetv2"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = None
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark,
                   matmul_tf32=torch.backends.cuda.matmul.allow_tf32, cudnn_tf32=torch.backends.cudnn.allow_tf32)
    return env


def format_or_dash(value: float | None, spec: str) -> str:
    """`value` formatted by `spec`, or "-" where there is none."""
    return "-" if value is None else format(value, spec)


def markdown(results: dict) -> str:
    """The results as Markdown tables."""
    env, geometry = results["environment"], results["geometry"]
    lines = [f"GPU check on {env.get('gpu', env['device'])} (torch {env['torch']}); {geometry['name']}: patch {'x'.join(map(str, geometry['patch']))}, "
             f"batch {geometry['batch']}, volume {'x'.join(map(str, geometry['volume']))}; "
             f"`{results['command']}`", "", "| network | class | parameters (M) |", "|---|---|---|"]
    lines += [f"| {name} | {n['class']} | {n['parameters'] / 1e6:.2f} |" for name, n in results["networks"].items()]
    lines.append("")
    if "op_counts" in results:
        lines += ["| network | aten ops per training step (meta device) |", "|---|---|"]
        lines += [f"| {name} | {n} |" for name, n in results["op_counts"].items()] + [""]
    if results.get("training"):
        lines += ["| mode | network | training step (s) | peak memory (MB) | step / nnU-Net | memory / nnU-Net |",
                  "|---|---|---|---|---|---|"]
        for mode, r in results["training"].items():
            base = r[NNUNET_PLAN]
            for name in NETWORKS:
                m = r[name]
                mem_ratio = None if m["peak_memory_mb"] is None else m["peak_memory_mb"] / base["peak_memory_mb"]
                lines.append(f"| {mode} | {name} | {m['train_step_s']:.4f} | {format_or_dash(m['peak_memory_mb'], '.0f')} | "
                             f"{m['train_step_s'] / base['train_step_s']:.3f} | {format_or_dash(mem_ratio, '.3f')} |")
        lines.append("")
    if results.get("goals"):
        lines += ["| mode | UNETR++ step / nnU-Net (goal <= 0.5) | peak memory / nnU-Net (goal < 1) |", "|---|---|---|"]
        for mode, g in results["goals"].items():
            mark = {True: " (met)", False: " (missed)"}
            lines.append(f"| {mode} | {g['train_step_vs_nnunet']:.3f}{mark[g['train_step_vs_nnunet_met']]} | "
                         f"{format_or_dash(g.get('peak_memory_vs_nnunet'), '.3f')}"
                         f"{mark.get(g.get('peak_memory_vs_nnunet_met'), '')} |")
        lines.append("")
    if results.get("sliding_window"):
        lines += ["| network | sliding window, nnU-Net's predictor (s) | peak memory (MB) |", "|---|---|---|"]
        for name, m in results["sliding_window"].items():
            lines.append(f"| {name} | {m['sliding_window_s']:.2f} | {format_or_dash(m.get('peak_memory_mb'), '.0f')} |")
        lines.append("")
    if results.get("errors"):
        lines += ["Errors:", *[f"- {phase}: {message}" for phase, message in results["errors"].items()], ""]
    lines.append(f"Total wall time {results['wall_s']:.0f} s.")
    return "\n".join(lines)


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_unetrpp.benchmarking.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("-o", "--output", type=Path, default=Path("gpu_check.json"),
                        help="JSON results; the Markdown table goes next to it (.md)")
    parser.add_argument("--quick", action="store_true", help="tiny networks and volume: a smoke test of the script")
    parser.add_argument("--modes", nargs="+", choices=list(MODES),
                        help="training modes (default on CUDA: fp32 amp amp+compile; on CPU: fp32 compile)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per round (default 5; quick: 2)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; quick: 1)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default inductor, as nnU-Net; with --quick on CPU aot_eager, "
                             "which traces forward and backward graphs without the C++ compilation)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads on CPU (default: torch's; quick: 1, which on a busy machine avoids "
                             "OpenMP threads waiting on each other: tiny forwards took 30 ms with 1 thread, 1.2 s "
                             "with 2 on 2 shared cores)")
    parser.add_argument("--no-sliding-window", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    modes = args.modes or DEFAULT_MODES["cuda" if device.type == "cuda" else "cpu"]
    if device.type != "cuda" and any(MODES[m][0] for m in modes):
        raise UserError(f"modes with amp need CUDA: nnU-Net autocasts on CUDA only, not on {device.type}")
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    geometry = QUICK if args.quick else SYNAPSE
    repeats = args.repeats or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    backend = args.compile_backend or ("aot_eager" if args.quick and device.type == "cpu" else "inductor")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnUNetv2_train sets it

    start = time.perf_counter()
    results: dict = {"command": " ".join([parser.prog, *argv]), "environment": _environment(device),
                     "compile_backend": backend, "repeats": repeats, "rounds": rounds,
                     "geometry": {"name": geometry.name, "patch": geometry.patch, "batch": geometry.batch,
                                  "volume": geometry.volume},
                     "baseline": NNUNET_PLAN, "networks": describe_networks(geometry), "training": {}, "errors": {}}

    def save() -> None:
        results["wall_s"] = time.perf_counter() - start
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
        args.output.with_suffix(".md").write_text(markdown(results) + "\n")

    phases: list[tuple[str, Callable[[], None]]] = [
        ("op_counts", lambda: results.__setitem__("op_counts", {
            name: sum(count_training_step(lambda name=name: build_network(geometry, name),
                                          (geometry.batch, 1, *geometry.patch)).values())
            for name in NETWORKS})),
    ]
    for mode in modes:
        phases.append((f"training {mode}", lambda mode=mode: results["training"].__setitem__(
            mode, measure_training(geometry, device, mode, repeats, rounds, backend))))
    if not args.no_sliding_window:
        phases.append(("sliding_window", lambda: results.__setitem__(
            "sliding_window", measure_sliding_window(geometry, device))))
    for phase, run in phases:
        t0 = time.perf_counter()
        print(f"[gpu_check] {phase} ...", flush=True)
        try:
            run()
        except Exception as e:  # keep the other phases' numbers; the error is reported in the results
            results["errors"][phase] = f"{type(e).__name__}: {e}"
            print(f"[gpu_check] {phase} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        results.setdefault("phase_wall_s", {})[phase] = time.perf_counter() - t0
        if results["training"]:
            results["goals"] = goals(results["training"])
        save()
    print(markdown(results))
    print(f"\nwrote {args.output} and {args.output.with_suffix('.md')}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
