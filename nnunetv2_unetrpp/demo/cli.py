"""`nnUNetv2_unetrpp_demo`: synthetic data -> nnU-Net planning -> UNETR++ and nnU-Net training with one
budget -> prediction of held-out cases -> comparison report, with no data and no set-up.

User errors print `error: ...` and exit 2; a failing stage prints the tail of its log and exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.demo.runner import Runner, StageError, console_script, format_seconds
from nnunetv2_unetrpp.demo.synthetic import SyntheticConfig, write_dataset
from nnunetv2_unetrpp.demo.trainers import NNUNET_TRAINER, UNETRPP_TRAINER, Budget, write_trainer_module
from nnunetv2_unetrpp.demo.workspace import (CACHES, DATASET_ID, DEFAULT_OUTPUT, MARKER, Workspace,
                                             child_environment, new_run_folder, prepare)


class UsageError(UserError):
    """Settings the demo cannot run with; the message names the flag."""


#: Defaults: 1200 iterations per model, trained side by side. With 800, both methods passed a mean test Dice of
#: 0.94 on seeds 0 and 1, but UNETR++ had not yet found the right kidney on seed 2 (mean 0.63); with 1200 it had.
#: 16 x 32 x 32 voxels keep an iteration at about 0.4 CPU seconds; 8 test cases let the paired test reach p < 0.05.
DEFAULTS = dict(epochs=30, iterations=40, val_iterations=2, num_train_cases=16, num_test_cases=8, image_size=32)
#: --quick: the smallest run that still exercises every stage (the end-to-end test).
QUICK = dict(epochs=1, iterations=2, val_iterations=1, num_train_cases=5, num_test_cases=2, image_size=32)


@dataclass(frozen=True)
class Method:
    """A compared method: its name in the report, trainer class, and nnU-Net plans (with the planner making them)."""

    name: str
    trainer: str
    plans: str = "nnUNetPlans"
    planner: str = "ExperimentPlanner"


#: UNETR++'s planner (nnUNetv2_unetrpp_plan_experiment) and its plans at 8 GB (planner.PLANS_NAME, written out:
#: importing the planner imports nnU-Net, which the demo leaves to its child processes)
UNETRPP_PLANNER, PLANS_NAME = "nnUNetPlannerUNETRPP", "nnUNetUNETRPPPlans"
#: Compared methods; the first is the baseline of the paired tests.
METHODS = (Method("UNETRPP", UNETRPP_TRAINER, PLANS_NAME, UNETRPP_PLANNER), Method("nnUNet", NNUNET_TRAINER))
#: --baselines: stock nnU-Net with the residual-encoder preset its authors now recommend.
RESENC = Method("nnUNetResEncM", NNUNET_TRAINER, "nnUNetResEncUNetMPlans", "nnUNetPlannerResEncM")

DESCRIPTION = """\
End-to-end demo of nnunetv2_unetrpp that needs no data and no set-up:
  1. generates a synthetic abdominal-CT-like dataset (liver, spleen, two kidneys and a thin vessel; thick
     3 mm slices; HU intensities with noise and bias field) in nnU-Net raw format, with held-out test cases;
  2. runs nnUNetv2_plan_and_preprocess (3d_fullres), then nnUNetv2_unetrpp_plan_experiment, whose UNETR++ plans
     reuse nnU-Net's preprocessed data;
  3. trains UNETR++ (nnUNetTrainerUNETRPP) and stock nnU-Net (nnUNetTrainer) with exactly the same budget
     (epochs x iterations, validation iterations), side by side, on fold 0 of nnU-Net's 5-fold split by default;
  4. predicts the test cases with both models (nnUNetv2_predict);
  5. compares them with nnUNetv2_unetrpp_compare: a verdict in plain words, Dice, HD95, NSD, Wilcoxon tests,
     box plots, learning curves, a montage of representative slices, and model cost.
Everything, nnU-Net's data folders included, is written inside the output folder. The defaults train both
models to a mean Dice above 0.9 on the held-out cases in about 8 minutes on an idle 2-core CPU (about 15 when
other jobs take half of the cores; docs/DEMO.md lists the measured runs). For a larger comparison use a GPU, e.g.
  nnUNetv2_unetrpp_demo --device cuda --image_size 160 --num_train_cases 40 --num_test_cases 20 \\
      --epochs 100 --iterations 250 --val_iterations 50 --tta -o demo_gpu"""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments, with --quick or the defaults filling what was not given."""
    p = argparse.ArgumentParser(prog="nnUNetv2_unetrpp_demo", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path,
                   help=f"output folder; must be new or empty (default: a new folder per run, ./{DEFAULT_OUTPUT}, "
                        f"then ./{DEFAULT_OUTPUT}_2, ...)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an earlier demo run in the output folder (recognised by its {MARKER}); "
                        "any other non-empty folder is refused")
    p.add_argument("--quick", action="store_true",
                   help="smallest settings, a smoke test of every stage: " + _describe(QUICK) + ", no model cost")
    p.add_argument("--epochs", type=int, help=f"training epochs of both models (default {DEFAULTS['epochs']})")
    p.add_argument("--iterations", type=int,
                   help=f"training iterations per epoch (default {DEFAULTS['iterations']}; nnU-Net's is 250)")
    p.add_argument("--val_iterations", "--val-iterations", type=int,
                   help=f"validation iterations per epoch (default {DEFAULTS['val_iterations']}; nnU-Net's is 50)")
    p.add_argument("--num_train_cases", "--num-train-cases", type=int,
                   help=f"synthetic training cases (default {DEFAULTS['num_train_cases']}; at least 5 unless "
                        "--fold all)")
    p.add_argument("--num_test_cases", "--num-test-cases", type=int,
                   help=f"synthetic held-out test cases (default {DEFAULTS['num_test_cases']})")
    p.add_argument("--image_size", "--image-size", type=int,
                   help=f"in-plane size in voxels, a multiple of 16 (default {DEFAULTS['image_size']}); about a "
                        "third as many 3 mm slices (a multiple of 8, at least 16)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of training and prediction")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0); nnU-Net does not seed its trainings")
    p.add_argument("--fold", default="0", choices=("0", "1", "2", "3", "4", "all"),
                   help="nnU-Net fold to train (default 0: 80%% of the cases for training, 20%% for nnU-Net's "
                        "validation; 'all' trains on all cases and validates on the training cases)")
    p.add_argument("--tta", action="store_true",
                   help="test-time mirroring when predicting the test cases (nnU-Net's default; 8x slower, so off "
                        "here by default)")
    p.add_argument("--no_cost", "--no-cost", action="store_true",
                   help="leave the model cost (parameters, FLOPs, forward time) out of the report")
    p.add_argument("--baselines", action="store_true",
                   help=f"also train stock nnU-Net with its residual-encoder preset ({RESENC.planner} / "
                        f"{RESENC.plans}) as a third method (off by default: a third training shares the same cores, "
                        "so the run takes longer)")
    p.add_argument("--schedule", choices=("together", "one-by-one"), default="together",
                   help="train the models side by side, sharing --num_processes threads (default), or one after the "
                        "other with all of them")
    p.add_argument("--num_processes", "--num-processes", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes of nnU-Net (preprocessing, augmentation, export) and of the comparison "
                        "(default min(2, CPUs))")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.no_cost = args.no_cost or args.quick
    return args


def _describe(settings: dict) -> str:
    return ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())


def check_args(args: argparse.Namespace) -> None:
    """UsageError for settings nnU-Net or the demo cannot run."""
    for key in ("epochs", "iterations", "val_iterations", "num_test_cases", "num_processes"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key} must be at least 1")
    if args.num_train_cases < (1 if args.fold == "all" else 5):
        raise UsageError("--num_train_cases must be at least 5 for nnU-Net's 5-fold split (or use --fold all)")
    if args.image_size < 32 or args.image_size % 16:
        raise UsageError(f"--image_size must be a multiple of 16 and at least 32, got {args.image_size}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but torch sees no CUDA device")


def methods(args: argparse.Namespace) -> tuple[Method, ...]:
    """The compared methods of this run."""
    return METHODS + ((RESENC,) if args.baselines else ())


def training_threads(args: argparse.Namespace) -> int:
    """torch threads of each training: the processes shared out between the trainings that run at once."""
    return max(1, args.num_processes // (len(methods(args)) if args.schedule == "together" else 1))


def run_pipeline(args: argparse.Namespace, workspace: Workspace, runner: Runner) -> None:
    """All stages, in order; StageError on the first failure."""
    dataset_json = workspace.raw_dataset / "dataset.json"
    config = SyntheticConfig.from_image_size(args.image_size)
    start = runner.announce(
        f"generate {args.num_train_cases} training + {args.num_test_cases} test cases, {config.slices} x "
        f"{config.in_plane} x {config.in_plane} voxels, spacing {config.spacing} mm -> {workspace.raw_dataset}")
    write_dataset(workspace.raw_dataset, args.num_train_cases, args.num_test_cases, config, args.seed)
    budget = Budget(args.epochs, args.iterations, args.val_iterations, threads=training_threads(args))
    write_trainer_module(workspace.trainers, budget)
    runner.finish("generate", start)

    n = str(args.num_processes)
    compared = methods(args)
    names = " and ".join(m.name for m in compared)
    # nnU-Net's default planner first: it writes the fingerprint and the preprocessed data the others reuse
    planners = sorted(dict.fromkeys(m.planner for m in compared), key=lambda p: p != METHODS[1].planner)
    for planner in planners:
        if planner == UNETRPP_PLANNER:
            runner.run("plan_unetrpp", f"UNETR++ planning ({PLANS_NAME}; reuses the preprocessed 3d_fullres data)",
                       [console_script("nnUNetv2_unetrpp_plan_experiment"), "-d", str(DATASET_ID)])
            continue
        runner.run("plan_and_preprocess" + ("" if planner == METHODS[1].planner else f"_{planner}"),
                   f"nnU-Net planning and preprocessing (3d_fullres, {planner})",
                   [console_script("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                    "-pl", planner, "-np", n, "-npfp", n])
    described = (f"{args.epochs} epochs x {args.iterations} iterations, {args.val_iterations} validation iterations, "
                 f"fold {args.fold}, {args.device}, {budget.threads} thread(s) each")
    train = {f"train_{m.name}": [console_script("nnUNetv2_train"), str(DATASET_ID), "3d_fullres", args.fold,
                                 "-tr", m.trainer, "-p", m.plans, "-device", args.device] for m in compared}
    # on a CPU, augmentation workers would only compete with the trainings for the same cores
    train_env = {"nnUNet_n_proc_DA": "0" if args.device == "cpu" else n}
    if args.schedule == "together":
        runner.run_together(f"train {names} side by side ({described})", train, train_env)
    else:
        for (key, argv), m in zip(train.items(), compared):
            runner.run(key, f"train {m.name} ({described})", argv, train_env)
    predict = {f"predict_{m.name}": [console_script("nnUNetv2_predict"), "-i", str(workspace.raw_dataset / "imagesTs"),
                                     "-o", str(workspace.predictions(m.name)), "-d", str(DATASET_ID), "-c",
                                     "3d_fullres", "-f", args.fold, "-tr", m.trainer, "-p", m.plans, "-device",
                                     args.device, "-npp", "1", "-nps", "1", "--disable_progress_bar",
                                     *([] if args.tta else ["--disable_tta"])] for m in compared}
    runner.run_together(f"predict the test cases with {names}", predict)
    runner.run("compare", "compare the test-set predictions (metrics, verdict, figures, model cost)",
               [console_script("nnUNetv2_unetrpp_compare"), "-ref", str(workspace.raw_dataset / "labelsTs"),
                "-pred", *[f"{m.name}={workspace.predictions(m.name)}" for m in compared],
                "-models", *[f"{m.name}={workspace.results(m.trainer, m.plans)}" for m in compared],
                "-images", str(workspace.raw_dataset / "imagesTs"), "-o", str(workspace.comparison),
                "-dataset_json", str(dataset_json), "-np", n, *(["--no_cost"] if args.no_cost else [])])


def report(args: argparse.Namespace, workspace: Workspace, runner: Runner) -> None:
    """Print the Dice table, the cost line, the verdict and where everything is; store the timings in the marker
    file."""
    # imported here: they load matplotlib, whose caches must go where main pointed them
    from nnunetv2_unetrpp.compare.report import cost_line, dice_table
    from nnunetv2_unetrpp.compare.verdict import verdict

    summary = json.loads((workspace.comparison / "summary.json").read_text())
    total = time.perf_counter() - runner.started
    iterations = args.epochs * args.iterations
    print(f"\nMean Dice on {len(summary['cases'])} held-out cases, after {iterations} training iterations each:\n")
    print(dice_table(summary))
    line = cost_line(summary)
    if line:
        print(f"\n{line}")
    print(f"\n{textwrap.fill('Verdict: ' + verdict(summary), 100)}\n")
    print(f"Report (all tables): {workspace.comparison / 'summary.md'}")
    print("Figures: " + "\n         ".join(str(workspace.comparison / f) for f in summary["figures"]))
    print(f"Logs: {workspace.logs}")
    print(f"Total time: {format_seconds(total)}")
    marker = workspace.root / MARKER
    settings = json.loads(marker.read_text())
    settings["stage_seconds"] = {k: round(v, 1) for k, v in runner.timings.items()}
    settings["total_seconds"] = round(total, 1)
    marker.write_text(json.dumps(settings, indent=2))


@command
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (2: user error, 1: a stage failed, 130: interrupted)."""
    args = parse_args(argv)
    check_args(args)
    if args.output is None:
        args.output = new_run_folder()
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    workspace = prepare(args.output, args.overwrite, settings)
    stages = 3 + len({m.planner for m in methods(args)}) + (len(methods(args)) if args.schedule == "one-by-one" else 1)
    print(f"nnUNetv2_unetrpp_demo: {stages} stages, output in {workspace.root}", flush=True)
    env = child_environment(workspace, args.num_processes)
    os.environ.update({k: env[k] for k in CACHES})  # this process's caches, too, stay in the output folder
    runner = Runner(workspace.logs, env, stages)
    try:
        run_pipeline(args, workspace, runner)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted after {runner.elapsed()}; partial results in {workspace.root}", file=sys.stderr)
        return 130
    report(args, workspace, runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
