"""Cost of a trained nnU-Net model: parameters, FLOPs and forward time per patch, training time per epoch.

The network is rebuilt by nnU-Net's own predictor initialisation and the checkpoint's weights are
loaded strictly, which proves that the measured network is the trained one; counting and timing
are `benchmarking/network_cost.py`'s (definitions there). Inference time is measured on CUDA when
available, else on the CPU. Epoch time is the mean duration of the epochs every trained fold's
checkpoint logged (`training_log.py`: what nnU-Net prints as "Epoch time"), training time their
sum over the folds.
"""
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nnunetv2_unetrpp.benchmarking.network_cost import (
    count_parameters,
    forward_flops,
    median_seconds,
    network_from_model_folder,
)
from nnunetv2_unetrpp.compare.training_log import load_record


def compute_model_cost(model_folder: Path, folds: Sequence[str], repeats: int = 5, trust_pickles: bool = False) -> dict:
    """Parameters, FLOPs per patch, forward time per patch and training time per epoch of a model folder
    (`trust_pickles`: see `safe_loading.load_checkpoint`)."""
    model_folder = Path(model_folder)
    if not folds:
        raise ValueError(f"{model_folder} has no trained fold")
    parts = model_folder.resolve().name.split("__")
    if len(parts) != 3:
        raise ValueError(f"folder name {model_folder.name} is not TRAINER__PLANS__CONFIGURATION")
    fold = folds[0].removeprefix("fold_")
    final = model_folder / f"fold_{fold}" / "checkpoint_final.pth"
    network, patch_size, channels = network_from_model_folder(
        model_folder, fold, final.name if final.is_file() else "checkpoint_best.pth", trust_pickles)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = network.to(device).eval()
    patch = torch.randn(1, channels, *patch_size, device=device)
    with torch.inference_mode():
        flops = forward_flops(network, patch)
        seconds = median_seconds(lambda: network(patch), repeats, device)
    epochs = np.concatenate([load_record(model_folder / f, trust_pickles).epoch_seconds for f in folds])
    return {
        "trainer": parts[0], "plans": parts[1], "configuration": parts[2],
        "fold_used_for_network": folds[0],
        "patch_size": patch_size,
        "parameters": count_parameters(network),
        "flops_per_patch": flops,
        "inference_seconds_per_patch": seconds,
        "inference_device": str(device),
        "epoch_seconds_mean": float(np.mean(epochs)),
        "epochs_logged": len(epochs),
        "training_seconds": float(np.sum(epochs)),
    }
