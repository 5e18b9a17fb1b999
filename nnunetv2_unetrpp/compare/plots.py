"""Per-label box plots of the per-case values of one metric, one colour per method (PNG, Agg backend)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from nnunetv2_unetrpp.compare.report import TITLES  # noqa: E402


def box_plot(summary: dict, metric: str, output_file: Path) -> Path:
    """Box plot of ``metric`` per label: groups = labels, boxes within a group = methods."""
    labels, methods = list(summary["labels"]), list(summary["methods"])
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) * max(1, len(methods) / 2)), 3.5))
    for i, name in enumerate(methods):
        per_case = summary["methods"][name]["per_case"]
        data = [[per_case[c][k][metric] for c in summary["cases"]] for k in labels]
        positions = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(labels))]
        ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=True,
                   boxprops={"facecolor": colours[i % len(colours)], "alpha": 0.8},
                   medianprops={"color": "black"})
        ax.plot([], [], color=colours[i % len(colours)], linewidth=8, label=name)
    ax.set_xticks(range(len(labels)), [summary["labels"][k]["name"] for k in labels],
                  rotation=30 if len(labels) > 4 else 0)
    ax.set_ylabel(TITLES[metric])
    ax.legend(fontsize="small", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(output_file, dpi=100)
    plt.close(fig)
    return output_file


def write_box_plots(summary: dict, output_folder: Path) -> list[Path]:
    """``dice_boxplot.png`` and ``hd95_mm_boxplot.png``."""
    return [box_plot(summary, metric, output_folder / f"{metric}_boxplot.png") for metric in ("dice", "hd95_mm")]
