"""Learning curves of trained nnU-Net models in one figure, from nnU-Net's own record of the training
(`training_log.py`).

Panels: loss and pseudo-Dice, each against epoch and against wall-clock time since the first
epoch started; one colour per method. The pseudo-Dice is drawn per epoch, not as nnU-Net's moving average
(``ema_fg_dice``, 0.9 per epoch), which trails a short training by many epochs.
"""
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from nnunetv2_unetrpp.compare.training_log import TrainingRecord, load_record  # noqa: E402

#: Figure size in inches and resolution: the PNG is 1000 x 700 pixels.
FIGSIZE, DPI = (10.0, 7.0), 100


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
                           warnings: list[str], trust_pickles: bool = False) -> Optional[Path]:
    """``learning_curves.png`` of the first trained fold of every method's model folder (``name -> (folder,
    folds)``); a fold without a readable record becomes a warning. None when no record was found."""
    records = {}
    for name, (folder, folds) in models.items():
        try:
            records[name] = load_record(Path(folder) / folds[0], trust_pickles)
        except Exception as e:  # the curves are an extra: any failure becomes a warning in the report
            warnings.append(f"learning curves of {name} ({folder}) not drawn: {type(e).__name__}: {e}")
    return plot_learning_curves(records, Path(output_folder) / "learning_curves.png") if records else None
