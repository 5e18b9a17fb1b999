"""nnU-Net's own record of a training, read from the fold's checkpoint: the one source of the learning
curves and of the training time in the cost table.

The record is the checkpoint's ``logging`` entry (``nnUNetLogger.my_fantastic_logging``): per epoch the
training and validation loss, the pseudo-Dice of the validation iterations (``mean_fg_dice``), and the
``time.time()`` stamps of its start and end, whose difference is what nnU-Net prints as "Epoch time".
Checkpoints are loaded with ``safe_loading.load_checkpoint`` (no code runs on load).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunetv2_unetrpp.safe_loading import load_checkpoint

#: Checkpoints that hold the logging, most complete first.
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


@dataclass(frozen=True)
class TrainingRecord:
    """Per-epoch values of one training (all arrays as long as the epochs finished)."""

    train_loss: np.ndarray
    val_loss: np.ndarray
    pseudo_dice: np.ndarray
    minutes: np.ndarray  # end of each epoch, minutes after the first epoch started
    epoch_seconds: np.ndarray  # duration of each epoch (nnU-Net's "Epoch time")

    @property
    def training_seconds(self) -> float:
        """Time spent in epochs: the sum of their durations (a pause between a stop and
        `nnUNetv2_train --c` does not count)."""
        return float(self.epoch_seconds.sum())


def record_from_logging(logging: dict) -> TrainingRecord:
    """TrainingRecord from an ``nnUNetLogger`` checkpoint entry, truncated to the epochs every list covers
    (an epoch still running has a start but no end)."""
    keys = ("train_losses", "val_losses", "mean_fg_dice", "epoch_start_timestamps", "epoch_end_timestamps")
    n = min(len(logging[k]) for k in keys)
    if n == 0:
        raise ValueError("the training log holds no finished epoch")
    start, end = (np.asarray(logging[k][:n], dtype=float) for k in keys[3:])
    return TrainingRecord(*(np.asarray(logging[k][:n], dtype=float) for k in keys[:3]),
                          minutes=(end - start[0]) / 60, epoch_seconds=end - start)


def load_record(fold_folder: Path, trust_pickles: bool = False) -> TrainingRecord:
    """TrainingRecord of a trained fold folder, from its most complete checkpoint (`trust_pickles`: see
    `safe_loading.load_checkpoint`)."""
    for name in CHECKPOINTS:
        path = Path(fold_folder) / name
        if path.is_file():
            checkpoint = load_checkpoint(path, trust_pickles)
            if "logging" not in checkpoint:
                raise ValueError(f"{path} holds no 'logging' entry (not written by nnUNetTrainer.save_checkpoint)")
            return record_from_logging(checkpoint["logging"])
    raise ValueError(f"{fold_folder} holds none of {', '.join(CHECKPOINTS)}")
