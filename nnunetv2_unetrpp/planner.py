"""UNETR++'s experiment planner and `nnUNetv2_unetrpp_plan_experiment` / `nnUNetv2_unetrpp_plan_and_preprocess`.

`nnUNetPlannerUNETRPP` keeps every decision of nnU-Net's planner (spacing, transposition,
normalisation, resampling, the topology rule), as nnU-Net's ResEnc planners do, so 2d and
3d_fullres reuse the preprocessed data of nnUNetPlans. It replaces what depends on the network:

- UNETR++'s stem and strides come from nnU-Net's pooling of the patch (`plans_geometry`), and every
  patch is a multiple of the network's total stride (nnU-Net's patches are multiples of all
  pooling steps, UNETR++ uses the first five);
- patch and batch are sized for UNETR++'s own training memory (`memory_estimate`, static) within the
  memory nnU-Net's own planner gives its PlainConvUNet at the same target: nnU-Net's reference
  budget in its feature-map units, converted to bytes by the same static count of the CNN it plans.
  Both estimates are calibrated on the same measurements, so the ratio carries to GPUs and AMP.
- the `architecture` block names UNETRPP with all its arguments, so nnU-Net's stock trainer trains it.

nnU-Net's `-pl` finds planners only inside nnunetv2, so the commands call nnU-Net's planning API
with this class.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunetv2_unetrpp import memory_estimate
from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.trainers.plans_geometry import architecture_block, strides_from_pooling

#: plans name at nnU-Net's default target (8 GB); other targets get a suffix (`plans_name_for`)
PLANS_NAME = "nnUNetUNETRPPPlans"
DEFAULT_GPU_MEMORY_GB = 8.0


def plans_name_for(gpu_memory_target_gb: float) -> str:
    """The default plans name of a memory target: nnUNetUNETRPPPlans at 8 GB, nnUNetUNETRPPPlans_24G at 24."""
    if gpu_memory_target_gb == DEFAULT_GPU_MEMORY_GB:
        return PLANS_NAME
    return f"{PLANS_NAME}_{gpu_memory_target_gb:g}G"


class UnplannedConfiguration(ValueError):
    """A configuration was asked for that nnU-Net does not plan for the dataset."""


class nnUNetPlannerUNETRPP(ExperimentPlanner):
    """nnU-Net's planner, with UNETR++ sized for `gpu_memory_target_in_gb` (see the module doc)."""

    def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = DEFAULT_GPU_MEMORY_GB,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str | None = None,
                 overwrite_target_spacing=None, suppress_transpose: bool = False,
                 configurations: Sequence[str] | None = None):
        """`configurations`: write only these (and the ones they inherit from or follow); None: all."""
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name,
                         plans_name or plans_name_for(gpu_memory_target_in_gb), overwrite_target_spacing,
                         suppress_transpose)
        self.configurations = configurations

    def save_plans(self, plans: dict) -> None:
        if self.configurations is not None:
            planned = plans["configurations"]
            missing = [c for c in self.configurations if c not in planned]
            if missing:
                raise UnplannedConfiguration(
                    f"{self.dataset_name} has no configuration {', '.join(missing)} (nnU-Net plans 3d_lowres and the "
                    f"cascade only for large images); planned: {sorted(planned)}")
            keep, todo = set(), list(self.configurations)
            while todo:
                name = todo.pop()
                keep.add(name)
                todo += [planned[name][k] for k in ("inherits_from", "previous_stage") if k in planned[name]]
            plans["configurations"] = {name: c for name, c in planned.items() if name in keep}
            for configuration in plans["configurations"].values():
                if configuration.get("next_stage") not in keep:
                    configuration.pop("next_stage", None)
        super().save_plans(plans)

    def generate_data_identifier(self, configuration_name: str) -> str:
        # nnU-Net's spacing for 2d and 3d_fullres: nnUNetPlans' preprocessed data serves (as for ResEnc)
        if configuration_name in ("2d", "3d_fullres") and self.overwrite_target_spacing is None:
            return f"nnUNetPlans_{configuration_name}"
        return f"{self.plans_identifier}_{configuration_name}"

    def _count(self, patch: Sequence[int], block: dict, channels: int, classes: int, _cache: dict):
        key = ("memory", block["network_class_name"], str(block["arch_kwargs"].get("strides")), tuple(patch))
        if key not in _cache:
            with torch.device("meta"):
                network = get_network_from_plans(block["network_class_name"], block["arch_kwargs"],
                                                 block["_kw_requires_import"], channels, classes, allow_init=False)
            _cache[key] = memory_estimate.count_training_memory(network, (channels, *patch))
        return _cache[key]

    def budget_bytes(self, cnn_plan: dict, channels: int, classes: int, _cache: dict) -> float:
        """The bytes nnU-Net's planner gives its CNN at this target: its reference (feature-map
        elements at its reference batch) x the estimated bytes per element of the CNN it planned."""
        patch, block = cnn_plan["patch_size"], cnn_plan["architecture"]
        is_2d = len(patch) == 2
        elements = self.static_estimate_VRAM_usage(patch, channels, classes, block["network_class_name"],
                                                   block["arch_kwargs"], block["_kw_requires_import"])
        reference = (self.UNet_reference_val_2d if is_2d else self.UNet_reference_val_3d) * \
            (self.UNet_vram_target_GB / self.UNet_reference_val_corresp_GB)
        reference_batch = self.UNet_reference_val_corresp_bs_2d if is_2d else self.UNet_reference_val_corresp_bs_3d
        cnn_bytes = self._count(patch, block, channels, classes, _cache).training_bytes(
            reference_batch, memory_estimate.PLAIN_CNN_ACTIVATION_FACTOR)
        return reference * cnn_bytes / elements

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier: str,
                                    approximate_n_voxels_dataset: float, _cache: dict) -> dict:
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        channels = len(self.dataset_json.get("channel_names", self.dataset_json.get("modality", {})))
        classes = len(self.dataset_json["labels"])
        budget = self.budget_bytes(plan, channels, classes, _cache)
        median = np.asarray(median_shape[:len(spacing)], dtype=float)

        def fitted(patch):
            """nnU-Net's topology of a patch: (patch padded to its pooling, pooling, its divisor)."""
            _, pools, _, patch, divisor = get_pool_and_conv_props(spacing, patch, self.UNet_featuremap_min_edge_length,
                                                                  999999)
            return [int(p) for p in patch], pools, divisor

        # nnU-Net's start: the spacing's aspect ratio at the volume of 256^3 (2048^2 in 2D), within the median shape
        aspect = 1 / np.asarray(spacing, dtype=float)
        volume = 256 ** 3 if len(spacing) == 3 else 2048 ** 2
        start = np.minimum(np.round(aspect * (volume / np.prod(aspect)) ** (1 / len(spacing))), median)
        patch, pools, divisor = fitted(start)
        while True:
            block = architecture_block(patch, *strides_from_pooling(pools))
            count = self._count(patch, block, channels, classes, _cache)
            if count.training_bytes(self.UNet_min_batch_size, memory_estimate.UNETRPP_ACTIVATION_FACTOR) <= budget:
                break
            # nnU-Net's shrinking: the axis largest relative to the median shape, by one step of its divisor
            axis = int(np.argmax(np.asarray(patch) / median))
            smaller = list(patch)
            smaller[axis] -= divisor[axis]
            if smaller[axis] <= 0:
                break  # nothing smaller fits the topology: the smallest patch, at the minimum batch
            # the smaller patch may have a smaller divisor (224 after 256): step by that one, as nnU-Net does
            smaller[axis] = patch[axis] - fitted(smaller)[2][axis]
            patch, pools, divisor = fitted(smaller)

        per_sample = memory_estimate.UNETRPP_ACTIVATION_FACTOR * count.activation_bytes_per_sample
        fixed = memory_estimate.STATE_COPIES * count.parameter_bytes
        batch = int((budget - fixed) // per_sample)
        # nnU-Net's cap: one step sees at most 5% of the dataset; never below its minimum batch
        cap = round(approximate_n_voxels_dataset * self.max_dataset_covered / np.prod(patch, dtype=np.float64))
        batch = max(min(batch, cap), self.UNet_min_batch_size)
        plan.update(patch_size=patch, batch_size=batch, architecture=block)
        return plan



def _arguments(prog: str, preprocess: bool, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Plan UNETR++ for nnU-Net v2: nnU-Net's planning with UNETR++'s network, patch and "
        "batch sized for the GPU memory target." + ("" if preprocess else
                                                    " Run nnUNetv2_extract_fingerprint first."))
    parser.add_argument("-d", nargs="+", type=int, required=True, help="dataset IDs")
    parser.add_argument("-gpu_memory_target", type=float, default=DEFAULT_GPU_MEMORY_GB,
                        help="GB of GPU memory a training step may use (default 8, as nnU-Net)")
    parser.add_argument("-overwrite_plans_name",
                        help=f"plans name (default {PLANS_NAME}, with the target as suffix if it is not 8 GB, "
                        f"e.g. {plans_name_for(24)})")
    if preprocess:
        parser.add_argument("-c", nargs="+", default=["2d", "3d_fullres", "3d_lowres"],
                            help="configurations to preprocess (default: 2d 3d_fullres 3d_lowres; every configuration "
                            "nnU-Net plans is planned)")
        parser.add_argument("-np", type=int, default=None,
                            help="processes for the fingerprint and the preprocessing (nnU-Net's defaults)")
        parser.add_argument("--verify_dataset_integrity", action="store_true", help="check the raw dataset first")
    else:
        parser.add_argument("-c", nargs="+", default=None,
                            help="plan only these configurations (and those they inherit from or follow); "
                            "default: all that nnU-Net plans")
    args = parser.parse_args(argv)
    if args.gpu_memory_target <= 0:
        raise UserError(f"-gpu_memory_target must be positive, got {args.gpu_memory_target}")
    return args


def _plan(args: argparse.Namespace, configurations: Sequence[str] | None) -> str:
    from batchgenerators.utilities.file_and_folder_operations import isfile, join
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_raw or not nnUNet_preprocessed:
        raise UserError("nnUNet_raw and nnUNet_preprocessed must be set, as for nnUNetv2_plan_experiment")
    plans_name = None
    for dataset in args.d:
        try:
            name = maybe_convert_to_dataset_name(dataset)
        except RuntimeError as e:
            raise UserError(f"dataset {dataset} is not in nnUNet_raw/nnUNet_preprocessed: {e}") from None
        if not isfile(join(nnUNet_preprocessed, name, "dataset_fingerprint.json")):
            raise UserError(f"dataset {name} has no fingerprint: run nnUNetv2_extract_fingerprint -d {dataset} first")
        planner = nnUNetPlannerUNETRPP(dataset, args.gpu_memory_target, plans_name=args.overwrite_plans_name,
                                       configurations=configurations)
        try:
            planner.plan_experiment()
        except UnplannedConfiguration as e:
            raise UserError(str(e)) from None
        plans_name = planner.plans_identifier
        print(f"{name}: UNETR++ plans {plans_name} (GPU memory target {args.gpu_memory_target:g} GB)")
    return plans_name


@command
def main(argv: Sequence[str] | None = None) -> None:
    """nnUNetv2_unetrpp_plan_experiment: run after nnUNetv2_extract_fingerprint, as nnUNetv2_plan_experiment."""
    args = _arguments("nnUNetv2_unetrpp_plan_experiment", False, argv)
    plans_name = _plan(args, args.c)
    print(f"next: nnUNetv2_preprocess -d ... -plans_name {plans_name}; nnUNetv2_train ... -p {plans_name}")


@command
def plan_and_preprocess(argv: Sequence[str] | None = None) -> None:
    """nnUNetv2_unetrpp_plan_and_preprocess: fingerprint, UNETR++ plans and preprocessing in one step."""
    from nnunetv2.configuration import default_num_processes
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess

    args = _arguments("nnUNetv2_unetrpp_plan_and_preprocess", True, argv)
    # an existing fingerprint is kept, as nnUNetv2_plan_and_preprocess keeps it without --clean
    extract_fingerprints(args.d, num_processes=args.np or default_num_processes,
                         check_dataset_integrity=args.verify_dataset_integrity, clean=False)
    plans_name = _plan(args, None)
    processes = [args.np or (4 if c == "3d_lowres" else default_num_processes) for c in args.c]
    preprocess(args.d, plans_name, configurations=args.c, num_processes=processes)
    print(f"next: nnUNetv2_train DATASET CONFIGURATION FOLD -p {plans_name}")


if __name__ == "__main__":
    raise SystemExit(main())
