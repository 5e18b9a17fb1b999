"""Fabricated inputs for the compare tests: NIfTI cases with a given spacing and a trained nnU-Net model folder."""
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from conftest import plans_dict, write_image_file

TRAINER_FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def write_seg(path: Path, array: np.ndarray, spacing_zyx: Sequence[float]) -> Path:
    """Write a z,y,x label array as NIfTI with the given spacing (given in array axis order)."""
    return write_image_file(array.astype(np.uint8), path, spacing_zyx)


def box(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int], value: int = 1) -> np.ndarray:
    """A label array with one axis-aligned box [lo, hi) of ``value``."""
    a = np.zeros(shape, dtype=np.uint8)
    a[tuple(slice(l, h) for l, h in zip(lo, hi))] = value
    return a


def tiny_plans(patch_size: Sequence[int] = (8, 16, 16)) -> dict:
    """Plans of a 3-stage PlainConvUNet at 3 x 0.8 x 0.8 mm."""
    return plans_dict(patch_size, [[1, 1, 1], [2, 2, 2], [2, 2, 2]], spacing=[3.0, 0.8, 0.8])


def tiny_dataset_json(labels: dict) -> dict:
    """A dataset.json with one input channel and the given labels."""
    return {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 4, "file_ending": ".nii.gz"}


def make_model_folder(root: Path, labels: dict, epoch_times: Sequence[float], folds: Sequence[int] = (0,)):
    """A trained-looking nnU-Net results folder; returns (folder, the randomly initialised network)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = root / TRAINER_FOLDER
    folder.mkdir(parents=True)
    plans, dataset_json = tiny_plans(), tiny_dataset_json(labels)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    network = nnUNetTrainer.build_network_architecture(
        pm, cm, 1, pm.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)
    for f in folds:
        fold = folder / f"fold_{f}"
        fold.mkdir()
        torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": "3d_fullres", "fold": f}, "logging": fake_logging(epoch_times)},
                   fold / "checkpoint_final.pth")
        (fold / "training_log_2025_1_1_10_00_00.txt").write_text("2025-01-01 10:00:00.000000: Epoch 0\n")
    return folder, network


def fake_logging(epoch_times: Sequence[float], start: float = 1_700_000_000.0) -> dict:
    """An nnUNetLogger record of epochs of these durations (seconds), each starting as the last ended."""
    n = len(epoch_times)
    ends = start + np.cumsum(epoch_times)
    return {"train_losses": list(np.linspace(0, -0.8, n)), "val_losses": list(np.linspace(0, -0.7, n)),
            "mean_fg_dice": list(np.linspace(0.1, 0.9, n)), "ema_fg_dice": list(np.linspace(0.1, 0.85, n)),
            "dice_per_class_or_region": [[0.5]] * n, "lrs": [0.01] * n,
            "epoch_start_timestamps": [start, *ends[:-1]], "epoch_end_timestamps": list(ends)}


def folder_snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content, to prove that nothing was written there."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
