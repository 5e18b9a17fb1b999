"""Cost of a trained nnU-Net model: parameters, FLOPs and forward time per patch, training time per epoch.

The network is rebuilt the way ``nnUNetPredictor.initialize_from_trained_model_folder`` does it: the trainer
class (named by the results folder ``TRAINER__PLANS__CONFIGURATION``) is found with
``recursive_find_trainer_class_by_name`` (external trainers need ``nnUNet_extTrainer``), then
``build_network_architecture(plans_manager, configuration_manager, num_input_channels, num_output_channels,
enable_deep_supervision=False)`` is called and the checkpoint's weights are loaded strictly, which proves
that the measured network is the trained one.

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of a batch-1 patch of the plans'
  patch size; a multiply-add counts as 2 FLOPs, and only the ops torch counts (convolutions, matrix
  products, attention) contribute, not norms or activations.
* Inference time: median wall time of ``repeats`` forward passes of that patch after one warm-up pass,
  eval mode, ``torch.inference_mode``, on CUDA when available (synchronised) else on the CPU.
* Epoch time: mean of the ``Epoch time: X s`` lines of every ``training_log_*.txt`` of the trained folds;
  training time: their sum.
"""
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch.utils.flop_counter import FlopCounterMode

EPOCH_TIME = re.compile(r"Epoch time: ([0-9]+(?:\.[0-9]*)?) s")


def parse_epoch_times(log_files: Sequence[Path]) -> list[float]:
    """Every epoch duration (seconds) logged by nnU-Net in the given training logs."""
    times = []
    for log in log_files:
        times += [float(m.group(1)) for m in EPOCH_TIME.finditer(Path(log).read_text(errors="replace"))]
    return times


def _checkpoint(fold: Path) -> Path:
    final = fold / "checkpoint_final.pth"
    return final if final.is_file() else fold / "checkpoint_best.pth"


def build_network(model_folder: Path, fold: str) -> tuple[torch.nn.Module, list[int], int, dict]:
    """Network with the fold's trained weights, its patch size, input channels and the folder's identity."""
    parts = model_folder.resolve().name.split("__")
    if len(parts) != 3:
        raise ValueError(f"folder name {model_folder.name} is not TRAINER__PLANS__CONFIGURATION")
    trainer_name, plans_name, configuration = parts
    dataset_json = load_json(str(model_folder / "dataset.json"))
    plans_manager = PlansManager(str(model_folder / "plans.json"))
    configuration_manager = plans_manager.get_configuration(configuration)
    channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    network = trainer_class.build_network_architecture(
        plans_manager, configuration_manager, channels,
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)
    checkpoint = torch.load(_checkpoint(model_folder / fold), map_location="cpu", weights_only=False)
    network.load_state_dict(checkpoint["network_weights"])
    identity = {"trainer": trainer_name, "plans": plans_name, "configuration": configuration}
    return network, list(configuration_manager.patch_size), channels, identity


def _forward_seconds(network: torch.nn.Module, patch: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        if patch.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        network(patch)
        if patch.is_cuda:
            torch.cuda.synchronize()
        if i > 0:  # the first pass is a warm-up
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def compute_model_cost(model_folder: Path, folds: Sequence[str], repeats: int = 5) -> dict:
    """Parameters, FLOPs per patch, forward time per patch and training time per epoch of a model folder."""
    model_folder = Path(model_folder)
    if not folds:
        raise ValueError(f"{model_folder} has no trained fold")
    network, patch_size, channels, identity = build_network(model_folder, folds[0])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = network.to(device).eval()
    patch = torch.randn(1, channels, *patch_size, device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            network(patch)
        seconds = _forward_seconds(network, patch, repeats)
    epochs = parse_epoch_times([log for f in folds for log in sorted((model_folder / f).glob("training_log_*.txt"))])
    return {
        **identity,
        "fold_used_for_network": folds[0],
        "patch_size": patch_size,
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "flops_per_patch": int(counter.get_total_flops()),
        "inference_seconds_per_patch": seconds,
        "inference_device": str(device),
        "epoch_seconds_mean": float(np.mean(epochs)) if epochs else None,
        "epochs_logged": len(epochs),
        "training_seconds": float(np.sum(epochs)) if epochs else None,
    }
