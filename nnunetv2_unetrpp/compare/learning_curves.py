"""Learning curves of trained nnU-Net models in one figure, from nnU-Net's own record of the training.

The record is the ``logging`` entry of the fold's checkpoint (``nnUNetLogger.my_fantastic_logging``): per epoch
the training and validation loss, the pseudo-Dice of the validation iterations (``mean_fg_dice``), and the start
and end timestamps. Panels: loss and pseudo-Dice, each against epoch and against wall-clock time since the first
epoch started; one colour per method. The pseudo-Dice is drawn per epoch, not as nnU-Net's moving average
(``ema_fg_dice``, 0.9 per epoch), which trails a short training by many epochs.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402

#: Figure size in inches and resolution: the PNG is 1000 x 700 pixels.
FIGSIZE, DPI = (10.0, 7.0), 100
#: Checkpoints that hold the logging, most complete first.
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


@dataclass(frozen=True)
class TrainingRecord:
    """Per-epoch values of one training (all arrays as long as the epochs logged)."""

    train_loss: np.ndarray
    val_loss: np.ndarray
    pseudo_dice: np.ndarray
    minutes: np.ndarray  # end of each epoch, minutes after the first epoch started

    @property
    def training_seconds(self) -> float:
        """Wall time from the start of the first epoch to the end of the last."""
        return float(self.minutes[-1] * 60) if len(self.minutes) else 0.0


def record_from_logging(logging: dict) -> TrainingRecord:
    """TrainingRecord from an ``nnUNetLogger`` checkpoint entry (timestamps are ``time.time()`` seconds), truncated
    to the epochs every list covers."""
    keys = ("train_losses", "val_losses", "mean_fg_dice", "epoch_start_timestamps", "epoch_end_timestamps")
    n = min(len(logging[k]) for k in keys)
    if n == 0:
        raise ValueError("the training log holds no finished epoch")
    minutes = (np.asarray(logging["epoch_end_timestamps"][:n], float) - logging["epoch_start_timestamps"][0]) / 60
    return TrainingRecord(*(np.asarray(logging[k][:n], dtype=float) for k in keys[:3]), minutes)


def load_record(fold_folder: Path) -> TrainingRecord:
    """TrainingRecord of a trained fold folder, from its most complete checkpoint."""
    for name in CHECKPOINTS:
        path = Path(fold_folder) / name
        if path.is_file():
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            if "logging" not in checkpoint:
                raise ValueError(f"{path} holds no 'logging' entry (not written by nnUNetTrainer.save_checkpoint)")
            return record_from_logging(checkpoint["logging"])
    raise ValueError(f"{fold_folder} holds none of {', '.join(CHECKPOINTS)}")


def plot_learning_curves(records: dict[str, TrainingRecord], output_file: Path) -> Path:
    """Loss (training solid, validation dashed) and validation pseudo-Dice of every method, against epoch (top)
    and wall-clock minutes (bottom)."""
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(2, 2, figsize=FIGSIZE, dpi=DPI)
    for i, (name, r) in enumerate(records.items()):
        colour = colours[i % len(colours)]
        for row, x in enumerate((np.arange(1, len(r.train_loss) + 1), r.minutes)):
            loss, dice = axes[row]
            loss.plot(x, r.train_loss, color=colour, marker=".", label=f"{name} training")
            loss.plot(x, r.val_loss, color=colour, marker=".", linestyle="--", label=f"{name} validation")
            dice.plot(x, r.pseudo_dice, color=colour, marker=".", label=name)
    for row, xlabel in enumerate(("epoch", "wall-clock time (min)")):
        axes[row, 0].set(xlabel=xlabel, ylabel="loss (Dice + CE)")
        axes[row, 1].set(xlabel=xlabel, ylabel="validation pseudo-Dice", ylim=(0, 1))
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small", frameon=False)
    axes[0, 1].legend(fontsize="small", frameon=False, loc="lower right")
    fig.suptitle("Learning curves (nnU-Net training logs)")
    fig.tight_layout()
    fig.savefig(output_file)
    plt.close(fig)
    return output_file


def learning_curves_figure(models: dict[str, tuple[Path, Sequence[str]]], output_folder: Path,
                           warnings: list[str]) -> Optional[Path]:
    """``learning_curves.png`` of the first trained fold of every method's model folder (``name -> (folder,
    folds)``); a fold without a readable record becomes a warning. None when no record was found."""
    records = {}
    for name, (folder, folds) in models.items():
        try:
            records[name] = load_record(Path(folder) / folds[0])
        except Exception as e:  # the curves are an extra: any failure becomes a warning in the report
            warnings.append(f"learning curves of {name} ({folder}) not drawn: {type(e).__name__}: {e}")
    return plot_learning_curves(records, Path(output_folder) / "learning_curves.png") if records else None
