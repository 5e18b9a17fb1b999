"""`nnUNetv2_unetrpp_benchmark`: networks of any trainers and plans of one dataset, measured alike.

For every trainer/plans pair (default: stock nnU-Net and UNETR++ from nnUNetPlans), the network
the trainer builds for the plans: parameters, FLOPs per patch, nnU-Net's training step at the
plan's batch and patch size (`training_step.py`), nnU-Net's sliding-window inference of a case of
the dataset's median size, and peak memory; ratios are against the first pair.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from nnunetv2_unetrpp.benchmarking.measure import MeasureSettings, measure
from nnunetv2_unetrpp.benchmarking.network_cost import network_from_plans, plans_as_trained
from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.env import ext_trainer_value, find_trainer_class
from nnunetv2_unetrpp.own_output import check_replaceable, stamp

COMMAND = "nnUNetv2_unetrpp_benchmark"
DEFAULT_TRAINERS = ("nnUNetTrainer", "nnUNetTrainerUNETRPP")


def pairs(trainers: Sequence[str], plans: Sequence[str]) -> list[tuple[str, str]]:
    """Trainer/plans pairs: the lists side by side, a single entry of either list serving all."""
    if len(trainers) != len(plans) and 1 not in (len(trainers), len(plans)):
        raise UserError(f"-tr has {len(trainers)} trainers and -p {len(plans)} plans: give one plans identifier for "
                        "all trainers, or one per trainer")
    n = max(len(trainers), len(plans))
    return [(trainers[i if len(trainers) > 1 else 0], plans[i if len(plans) > 1 else 0]) for i in range(n)]


def load_plans(dataset: str, plans_name: str) -> tuple[dict, dict]:
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_preprocessed.is_set():
        raise UserError("nnUNet_preprocessed is not set: export it as for nnUNetv2_train")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    folder = os.path.join(str(nnUNet_preprocessed), name)
    plans_file = os.path.join(folder, plans_name + ".json")
    if not os.path.isfile(plans_file):
        raise UserError(f"{plans_file} does not exist: run nnUNetv2_plan_and_preprocess -d {dataset} first"
                        + ("" if plans_name == "nnUNetPlans" else f" with the planner that writes {plans_name}"))
    with open(plans_file) as f, open(os.path.join(folder, "dataset.json")) as g:
        return json.load(f), json.load(g)


def run(dataset: str, configuration: str, networks: Sequence[tuple[str, str]], settings: MeasureSettings,
        inference: bool = True, mirroring: bool = True) -> dict:
    """Measure the network of every (trainer, plans) pair; the first is the baseline of the ratios."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    results = {"dataset": dataset, "configuration": configuration, "device": settings.device, "amp": settings.amp,
               "compile": settings.compile, "torch_threads": settings.threads, "networks": {}}
    prepared_pairs = []
    for trainer, plans_name in networks:  # every user error before the first (slow) measurement
        trainer_class = find_trainer_class(trainer)
        plans, dataset_json = load_plans(dataset, plans_name)
        if configuration not in plans["configurations"]:
            raise UserError(f"configuration {configuration!r} is not in {plans_name}: {sorted(plans['configurations'])}")
        plans.pop("continue_training", None)
        prepared = plans_as_trained(plans, configuration, trainer_class)
        prepared_pairs.append((trainer, plans_name, prepared, dataset_json))
    for trainer, plans_name, prepared, dataset_json in prepared_pairs:
        manager = PlansManager(prepared)
        config = manager.get_configuration(configuration)
        channels = determine_num_input_channels(manager, config, dataset_json)
        kwargs = dict(plans=prepared, dataset_json=dataset_json, configuration=configuration, trainer=trainer)
        train = measure(trainer, network_from_plans, kwargs, (config.batch_size, channels, *config.patch_size),
                        dataclasses.replace(settings, mode="train"))
        entry = {"trainer": trainer, "plans": plans_name, "network": train.network, "patch_size": list(config.patch_size),
                 "batch_size": config.batch_size, "parameters": train.parameters,
                 "gflops_per_patch": train.gflops_forward / config.batch_size, "train_step_s": train.train_step_s,
                 "train_peak_memory_mb": train.peak_memory_mb}
        if inference:
            image_shape = (channels, *(int(round(s)) for s in config.configuration["median_image_size_in_voxels"]))
            predictor = dict(plans=prepared, dataset_json=dataset_json, configuration=configuration,
                             image_shape=image_shape, mirroring=mirroring)
            sw = measure(trainer, network_from_plans, {**kwargs, "deep_supervision": False},  # as nnU-Net predicts
                         (1, channels, *config.patch_size),
                         dataclasses.replace(settings, mode="sliding_window", predictor=predictor,
                                             repeats=max(1, settings.repeats // 2), flops=False))
            entry.update(median_case_shape=list(image_shape[1:]), sliding_window_s=sw.sliding_window_s,
                         inference_peak_memory_mb=sw.peak_memory_mb)
        results["networks"][f"{trainer}__{plans_name}"] = entry
    names = list(results["networks"])
    base = results["networks"][names[0]]
    results["baseline"] = names[0]
    results["ratios_over_baseline"] = {
        name: {key: entry[key] / base[key] for key in RATIO_KEYS if key in entry}
        for name, entry in results["networks"].items()
    }
    return results


ROWS = [("parameters (M)", "parameters", 1e-6, "{:.2f}"), ("GFLOPs per patch", "gflops_per_patch", 1, "{:.1f}"),
        ("training step (s)", "train_step_s", 1, "{:.3f}"),
        ("training peak memory (MB)", "train_peak_memory_mb", 1, "{:.0f}"),
        ("sliding window, median case (s)", "sliding_window_s", 1, "{:.2f}"),
        ("inference peak memory (MB)", "inference_peak_memory_mb", 1, "{:.0f}")]
RATIO_KEYS = tuple(key for _, key, _, _ in ROWS)


def format_table(results: dict) -> str:
    """Networks as columns, then each network's ratio to the baseline (the first)."""
    nets = results["networks"]
    names = list(nets)
    lines = [f"{results['dataset']} {results['configuration']} on {results['device']} (amp={results['amp']}, "
             f"compile={results['compile']}); ratios against {results['baseline']}", "",
             "| | " + " | ".join(names) + " | " + " | ".join(f"ratio {n}" for n in names[1:]) + " |",
             "|---" * (2 * len(names)) + "|",
             "| patch, batch | " + " | ".join(f"{'x'.join(map(str, nets[n]['patch_size']))}, {nets[n]['batch_size']}"
                                          for n in names) + " |" + " |" * (len(names) - 1)]
    for label, key, scale, fmt in ROWS:
        if all(key in nets[n] for n in names):
            values = " | ".join(fmt.format(nets[n][key] * scale) for n in names)
            ratios = " | ".join(f"{results['ratios_over_baseline'][n][key]:.3f}" for n in names[1:])
            lines.append(f"| {label} | {values} | {ratios} |")
    return "\n".join(lines)


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", required=True, help="dataset name or id (preprocessed, as for nnUNetv2_train)")
    parser.add_argument("-c", required=True, help="configuration, e.g. 3d_fullres")
    parser.add_argument("-tr", nargs="+", default=list(DEFAULT_TRAINERS),
                        help=f"trainer class names; the first is the baseline (default: {' '.join(DEFAULT_TRAINERS)})")
    parser.add_argument("-p", nargs="+", default=["nnUNetPlans"],
                        help="plans identifiers, one for all trainers or one per trainer (default nnUNetPlans), "
                             "e.g. -tr nnUNetTrainer nnUNetTrainerUNETRPP -p nnUNetResEncUNetMPlans nnUNetPlans")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("-o", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace an -o file that this command wrote earlier")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads on CPU")
    parser.add_argument("--no_amp", "--no-amp", action="store_true", help="no fp16 autocast on CUDA (nnU-Net uses it)")
    parser.add_argument("--no_compile", "--no-compile", action="store_true",
                        help="no torch.compile on CUDA (nnU-Net uses it)")
    parser.add_argument("--no_mirroring", "--no-mirroring", action="store_true",
                        help="sliding window without test-time mirroring")
    parser.add_argument("--no_inference", "--no-inference", action="store_true",
                        help="skip the sliding-window measurement")
    args = parser.parse_args(argv)
    if args.o:
        check_replaceable(args.o, args.overwrite, COMMAND)
    os.environ["nnUNet_extTrainer"] = ext_trainer_value()  # this package's trainers, whatever the shell set
    cuda = args.device == "cuda"
    compile_env = os.environ.get("nnUNet_compile", "true").lower() in ("true", "1", "t")
    settings = MeasureSettings("train", args.device, args.repeats, args.threads, amp=cuda and not args.no_amp,
                               compile=cuda and compile_env and not args.no_compile)
    results = run(args.d, args.c, pairs(args.tr, args.p), settings, inference=not args.no_inference,
                  mirroring=not args.no_mirroring)  # a failed measuring child: MeasurementFailed, one line
    print(format_table(results))
    if args.o:
        args.o.write_text(json.dumps({**stamp(COMMAND), **results}, indent=2))
        print(f"\nwrote {args.o}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
