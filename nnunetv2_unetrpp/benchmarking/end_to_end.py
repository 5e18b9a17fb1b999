"""Two checkouts of this package end to end, alternating in one run: the training step at the Synapse
plan (UNETR++ and, as the baseline ratio, nnU-Net's planned PlainConvUNet) and the wall time of the demo.

    git worktree add /tmp/before 0a355ef
    python -m nnunetv2_unetrpp.benchmarking.end_to_end --before /tmp/before [--after .] [--rounds 3]
        [--repeats 3] [--threads 2] [--quick] [--demo-args="--quick"] [--no-demo] [-o end_to_end.json]

Every measurement is a fresh child process with that checkout first on PYTHONPATH, so the network, the
trainers and the demo (and the nnU-Net commands the demo starts) are that checkout's. Per round the
checkouts alternate, training steps first, then the demos, so that a slow phase of a shared machine
hits both alike; the tables report the median over rounds and the 1-minute load average at the start
and end. `--threads` is the training step's torch threads; the demo sets its own, as `./run.sh demo`. `--quick` times the tiny networks of `synapse.QUICK` instead of the Synapse plan: a check of
this command, not a measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from nnunetv2_unetrpp.benchmarking.measure import add_timing_arguments
from nnunetv2_unetrpp.command_line import UserError, command

#: Run in the child: the median training step of UNETR++ and of nnU-Net's planned network, as JSON.
_TRAINING_STEP = """
import json, statistics, sys, time, torch
import nnunetv2_unetrpp
from nnunetv2_unetrpp.benchmarking import synapse
from nnunetv2_unetrpp.benchmarking.training_step import TrainingStep
quick, repeats, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)
geometry = synapse.QUICK if quick else synapse.SYNAPSE
result = {"package": nnunetv2_unetrpp.__file__}
for name in ("UNETR++", synapse.NNUNET_PLAN):
    torch.manual_seed(0)
    step = TrainingStep(synapse.build_network(geometry, name), "cpu")
    x = torch.randn(geometry.batch, 1, *geometry.patch)
    step(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - start)
    result[name] = statistics.median(times)
print(json.dumps(result))
"""
UNETRPP, BASELINE = "UNETR++", "nnU-Net PlainConvUNet (Synapse-like plan)"
TRAINING_TIMEOUT_S, DEMO_TIMEOUT_S = 3600, 3 * 3600


def _environment(checkout: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}
    env.pop("nnUNet_extTrainer", None)  # the demo sets its checkout's own
    return env


def _run(args: list[str], checkout: Path, timeout: float, what: str, cwd: Path) -> str:
    """stdout of a child in `checkout`'s environment; UserError if it fails or outlives `timeout`."""
    try:
        proc = subprocess.run(args, env=_environment(checkout), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} in {checkout} took longer than {timeout:.0f} s; it was stopped") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"{what} in {checkout} failed with status {proc.returncode}: {last}")
    return proc.stdout


def training_step(checkout: Path, quick: bool, repeats: int, threads: int) -> dict[str, float]:
    """Median training-step seconds of UNETR++ and nnU-Net's planned network with `checkout`'s code."""
    out = _run([sys.executable, "-c", _TRAINING_STEP, json.dumps([quick, repeats, threads])], checkout,
               TRAINING_TIMEOUT_S, "the training step", Path(tempfile.gettempdir()))
    result = json.loads(out.strip().splitlines()[-1])
    package = Path(result.pop("package")).resolve()
    if checkout.resolve() not in package.parents:
        raise UserError(f"the child imported nnunetv2_unetrpp from {package}, not from {checkout}: "
                        "run this command from an environment where that checkout's path takes precedence")
    return {UNETRPP: result["UNETR++"], BASELINE: result[BASELINE]}


def demo_wall_time(checkout: Path, demo_args: list[str]) -> float:
    """Wall seconds of `python -m nnunetv2_unetrpp.demo` with `checkout`'s code, in a throwaway folder
    (the demo sets its own threads, as `./run.sh demo` runs it)."""
    with tempfile.TemporaryDirectory(prefix="end_to_end_demo_") as tmp:
        start = time.perf_counter()
        _run([sys.executable, "-m", "nnunetv2_unetrpp.demo", "-o", str(Path(tmp) / "demo"), *demo_args], checkout,
             DEMO_TIMEOUT_S, "the demo", Path(tmp))
        return time.perf_counter() - start


def run(checkouts: dict[str, Path], rounds: int, repeats: int, threads: int, quick: bool,
        demo_args: list[str] | None) -> dict:
    """Per checkout: per-round and median training steps (and their ratio) and demo wall times."""
    results = {label: {"checkout": str(path), "rounds": []} for label, path in checkouts.items()}
    load_start = os.getloadavg()[0]
    for _ in range(rounds):
        for label, path in checkouts.items():
            results[label]["rounds"].append(training_step(path, quick, repeats, threads))
        if demo_args is not None:
            for label, path in checkouts.items():
                results[label]["rounds"][-1]["demo_s"] = demo_wall_time(path, demo_args)
    for r in results.values():
        for key in r["rounds"][0]:
            r[key] = statistics.median(s[key] for s in r["rounds"])
        r["train_ratio"] = r[UNETRPP] / r[BASELINE]
    return {"load_average_start": load_start, "load_average_end": os.getloadavg()[0], "checkouts": results}


def table(results: dict) -> str:
    """Markdown table of `run`'s results; the last column is relative to the first checkout."""
    rows = results["checkouts"]
    first = next(iter(rows.values()))
    lines = ["| code | UNETR++ step (s) | PlainConvUNet step (s) | UNETR++ / PlainConvUNet | demo wall (s) | "
             "UNETR++ step / first | demo / first |", "|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        demo = f"{r['demo_s']:.0f}" if "demo_s" in r else "-"
        demo_ratio = f"{r['demo_s'] / first['demo_s']:.3f}" if "demo_s" in r else "-"
        lines.append(f"| {label} ({r['checkout']}) | {r[UNETRPP]:.3f} | {r[BASELINE]:.3f} | {r['train_ratio']:.3f} | "
                     f"{demo} | {r[UNETRPP] / first[UNETRPP]:.3f} | {demo_ratio} |")
    lines.append(f"\n1-minute load average {results['load_average_start']:.1f} at the start, "
                 f"{results['load_average_end']:.1f} at the end.")
    return "\n".join(lines)


@command
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_unetrpp.benchmarking.end_to_end", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before (a directory)")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[2],
                        help="checkout of the code after (default: this one)")
    add_timing_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="tiny networks instead of the Synapse plan")
    parser.add_argument("--demo-args", default="", help="arguments of the demo, e.g. --demo-args=--quick")
    parser.add_argument("--no-demo", action="store_true", help="time the training steps only")
    parser.add_argument("-o", "--output", type=Path, help="also write the results as JSON (not overwritten)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    for label in ("before", "after"):
        path = getattr(args, label)
        if not (path / "nnunetv2_unetrpp" / "__init__.py").is_file():
            raise UserError(f"--{label} {path} is not a checkout of this package (no nnunetv2_unetrpp/__init__.py); "
                            "make one with: git worktree add /tmp/before 0a355ef")
    if args.output and args.output.exists():
        raise UserError(f"{args.output} exists; choose another file")
    demo_args = None if args.no_demo else shlex.split(args.demo_args)
    results = run({"before": args.before, "after": args.after}, args.rounds, args.repeats, args.threads, args.quick,
                  demo_args)
    print(table(results))
    if args.output:
        args.output.write_text(json.dumps({"command": " ".join([parser.prog, *argv]), "threads": args.threads,
                                           "repeats": args.repeats, "rounds": args.rounds, "quick": args.quick,
                                           **results}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
