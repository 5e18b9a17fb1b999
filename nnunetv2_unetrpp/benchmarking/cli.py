"""`nnUNetv2_unetrpp_benchmark`: UNETR++ against stock nnU-Net from the same plans, one run.

Measures, for both networks, parameters, FLOPs per patch, the training step (forward, backward,
SGD step at the plan's batch and patch size) and nnU-Net's sliding-window inference of a case
of the dataset's median size, plus peak memory; prints UNETR++/nnU-Net ratios.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch
from torch import nn

from nnunetv2_unetrpp.benchmarking.measure import measure

TRAINERS = {"nnU-Net": "nnUNetTrainer", "UNETR++": "nnUNetTrainerUNETRPP"}


def network_from_plans(plans: dict, dataset_json: dict, configuration: str, trainer: str) -> nn.Module:
    """The network `trainer` builds for these plans (deep supervision on, as in training)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP

    cls = {"nnUNetTrainer": nnUNetTrainer, "nnUNetTrainerUNETRPP": nnUNetTrainerUNETRPP}[trainer]
    plans_manager = PlansManager(plans)
    config = plans_manager.get_configuration(configuration)
    channels = determine_num_input_channels(plans_manager, config, dataset_json)
    heads = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    return cls.build_network_architecture(plans_manager, config, channels, heads, True)


def load_plans(dataset: str, plans_name: str) -> tuple[dict, dict]:
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_preprocessed.is_set():
        raise ValueError("nnUNet_preprocessed is not set: export it as for nnUNetv2_train")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    folder = os.path.join(str(nnUNet_preprocessed), name)
    plans_file = os.path.join(folder, plans_name + ".json")
    if not os.path.isfile(plans_file):
        raise ValueError(f"{plans_file} does not exist: run nnUNetv2_plan_and_preprocess -d {dataset} first")
    with open(plans_file) as f, open(os.path.join(folder, "dataset.json")) as g:
        return json.load(f), json.load(g)


def run(dataset: str, configuration: str, plans_name: str = "nnUNetPlans", device: str = "cpu", repeats: int = 3,
        threads: int = 2, amp: bool = False, compile_: bool = False, mirroring: bool = True,
        inference: bool = True) -> dict:
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_unetrpp.trainers.plans_geometry import prepare_configuration

    plans, dataset_json = load_plans(dataset, plans_name)
    if configuration not in plans["configurations"]:
        raise ValueError(f"configuration {configuration!r} is not in the plans: {sorted(plans['configurations'])}")
    plans.pop("continue_training", None)
    plans_per_network = {"nnU-Net": plans, "UNETR++": copy.deepcopy(plans)}
    prepare_configuration(plans_per_network["UNETR++"], configuration)
    results = {"dataset": dataset, "configuration": configuration, "device": device, "amp": amp,
               "compile": compile_, "torch_threads": threads, "networks": {}}
    for name, trainer in TRAINERS.items():
        p = plans_per_network[name]
        manager = PlansManager(p)
        config = manager.get_configuration(configuration)
        channels = determine_num_input_channels(manager, config, dataset_json)
        batch_shape = (config.batch_size, channels, *config.patch_size)
        kwargs = dict(plans=p, dataset_json=dataset_json, configuration=configuration, trainer=trainer)
        train = measure(name, network_from_plans, kwargs, batch_shape, "train", device, repeats, threads, amp, compile_)
        entry = {"patch_size": list(config.patch_size), "batch_size": config.batch_size,
                 "parameters": train.parameters, "gflops_per_patch": train.gflops_forward / config.batch_size,
                 "train_step_s": train.train_step_s, "train_peak_memory_mb": train.peak_memory_mb}
        if inference:
            image_shape = (channels, *(int(round(s)) for s in config.configuration["median_image_size_in_voxels"]))
            predictor_config = dict(plans=p, dataset_json=dataset_json, configuration=configuration,
                                    image_shape=image_shape, mirroring=mirroring)
            sw = measure(name, network_from_plans, kwargs, (1, channels, *config.patch_size), "sliding_window", device,
                         max(1, repeats // 2), threads, amp, compile_, predictor_config)
            entry.update(median_case_shape=list(image_shape[1:]), sliding_window_s=sw.sliding_window_s,
                         inference_peak_memory_mb=sw.peak_memory_mb)
        results["networks"][name] = entry
    ours, base = results["networks"]["UNETR++"], results["networks"]["nnU-Net"]
    results["ratios_unetrpp_over_nnunet"] = {
        key: ours[key] / base[key] for key in ("parameters", "gflops_per_patch", "train_step_s", "train_peak_memory_mb",
                                               "sliding_window_s", "inference_peak_memory_mb") if key in ours
    }
    return results


def format_table(results: dict) -> str:
    rows = [("parameters (M)", "parameters", 1e-6, "{:.2f}"), ("GFLOPs per patch", "gflops_per_patch", 1, "{:.1f}"),
            ("training step (s)", "train_step_s", 1, "{:.3f}"), ("training peak memory (MB)", "train_peak_memory_mb", 1, "{:.0f}"),
            ("sliding window, median case (s)", "sliding_window_s", 1, "{:.2f}"),
            ("inference peak memory (MB)", "inference_peak_memory_mb", 1, "{:.0f}")]
    nets = results["networks"]
    lines = [f"{results['dataset']} {results['configuration']} on {results['device']} (amp={results['amp']}, "
             f"compile={results['compile']}); patch {nets['nnU-Net']['patch_size']} (nnU-Net) / "
             f"{nets['UNETR++']['patch_size']} (UNETR++), batch {nets['nnU-Net']['batch_size']}", "",
             "| | nnU-Net | UNETR++ | UNETR++ / nnU-Net |", "|---|---|---|---|"]
    for label, key, scale, fmt in rows:
        if key in nets["UNETR++"]:
            a, b = nets["nnU-Net"][key] * scale, nets["UNETR++"][key] * scale
            lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {b / a:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnUNetv2_unetrpp_benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", required=True, help="dataset name or id (preprocessed, as for nnUNetv2_train)")
    parser.add_argument("-c", required=True, help="configuration, e.g. 3d_fullres")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("-o", help="write the results as JSON to this file")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads on CPU")
    parser.add_argument("--no-amp", action="store_true", help="no fp16 autocast on CUDA (nnU-Net uses it)")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile on CUDA (nnU-Net uses it)")
    parser.add_argument("--no-mirroring", action="store_true", help="sliding window without test-time mirroring")
    parser.add_argument("--no-inference", action="store_true", help="skip the sliding-window measurement")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    compile_env = os.environ.get("nnUNet_compile", "true").lower() in ("true", "1", "t")
    try:
        results = run(args.d, args.c, args.p, args.device, args.repeats, args.threads, amp=cuda and not args.no_amp,
                      compile_=cuda and compile_env and not args.no_compile, mirroring=not args.no_mirroring,
                      inference=not args.no_inference)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.o:
        with open(args.o, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {args.o}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
