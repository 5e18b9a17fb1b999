"""A network and what it costs, in one place: build it as nnU-Net does (from a trained model folder,
or from plans for any trainer), count its parameters and FLOPs, time a call.

Used by `nnUNetv2_unetrpp_benchmark`, the cost table of `nnUNetv2_unetrpp_compare` and the
Synapse benchmarks. Only the two builders import nnunetv2, so the counting and timing helpers
also serve where nnU-Net is not installed (the GPU check).
"""
from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2_unetrpp.env import find_trainer_class


def count_parameters(model: nn.Module) -> int:
    """Parameters, each counted once even where modules share it (`parameters()` de-duplicates)."""
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of `x` without autograd, as `FlopCounterMode` counts them: 2 per
    multiply-add, convolutions, matrix products and attention only (not norms or activations)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device | str = "cpu") -> float:
    """Median wall time of `repeats` calls of `fn` after one warm-up call (oneDNN primitive creation,
    cuDNN autotuning, compilation), synchronising CUDA around each call."""
    return alternating_median_seconds({"": fn}, repeats, device)[""]


def alternating_median_seconds(fns: dict[str, Callable[[], object]], repeats: int,
                               device: torch.device | str = "cpu") -> dict[str, float]:
    """Per name, the median wall time of `repeats` calls of `fns[name]`, after one warm-up call of
    each. The calls alternate (one of each per repetition), so that a slow phase of a shared machine
    slows all alike; CUDA is synchronised around each call."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def network_from_model_folder(model_folder: Path, fold: str,
                              checkpoint_name: str = "checkpoint_final.pth",
                              trust_pickles: bool = False) -> tuple[nn.Module, list[int], int]:
    """The trained network of one fold, rebuilt by nnU-Net's own predictor initialisation (trainer
    lookup, `build_network_architecture` without deep supervision, strict loading of the weights),
    with its patch size and number of input channels.

    The predictor unpickles the checkpoint with `weights_only=False`, which would run code a stranger's
    file carries, so the file must first pass the safe loader (UnsafePickleError otherwise): the
    predictor then reads the same bytes, which name nothing outside the safe list."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    from nnunetv2_unetrpp.safe_loading import load_checkpoint

    load_checkpoint(Path(model_folder) / f"fold_{fold}" / checkpoint_name, trust_pickles)
    predictor = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), (fold,), checkpoint_name)
    network = getattr(predictor.network, "_orig_mod", predictor.network)  # unwrap torch.compile (nnUNet_compile)
    configuration = predictor.configuration_manager
    channels = determine_num_input_channels(predictor.plans_manager, configuration, predictor.dataset_json)
    return network, list(configuration.patch_size), channels


def plans_as_trained(plans: dict, configuration: str, trainer_class: type) -> dict:
    """A copy of `plans` as `trainer_class` records them: a trainer that adapts the plans before
    nnU-Net saves them (`prepare_plans`: the UNETR++ trainers write UNETR++'s architecture block into
    stock plans) does so here too."""
    plans = copy.deepcopy(plans)
    if hasattr(trainer_class, "prepare_plans"):
        trainer_class.prepare_plans(plans, configuration)
    return plans


def network_from_plans(plans: dict, dataset_json: dict, configuration: str, trainer: str,
                       deep_supervision: bool = True) -> nn.Module:
    """The network the trainer named `trainer` builds for `plans` (see `plans_as_trained`). Any
    trainer nnU-Net can find works (external ones through nnUNet_extTrainer)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    trainer_class = find_trainer_class(trainer)
    manager = PlansManager(plans_as_trained(plans, configuration, trainer_class))
    config = manager.get_configuration(configuration)
    channels = determine_num_input_channels(manager, config, dataset_json)
    heads = manager.get_label_manager(dataset_json).num_segmentation_heads
    return trainer_class.build_network_architecture(manager, config, channels, heads, deep_supervision)
