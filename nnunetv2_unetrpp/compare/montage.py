"""Qualitative montage: for a few cases, one representative slice of the image with the reference and each
method's segmentation drawn as coloured outlines (one colour per label), side by side.

The slice axis is the one with the coarsest spacing (the slice direction of thick-slice scans); the slice
shown is the one where the reference has the most labels, ties broken by the most foreground. The image is
windowed to its 1st-99th percentile.
"""
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from nnunetv2_unetrpp.compare.labels import LabelSpec  # noqa: E402

#: Size of one panel in inches and the resolution: a montage of r cases and m methods is
#: (m + 1) * PANEL_INCHES * DPI wide and r * PANEL_INCHES * DPI + LEGEND_INCHES * DPI high, in pixels.
PANEL_INCHES, LEGEND_INCHES, DPI = 2.5, 0.5, 100
#: Cases shown (rows).
CASES_SHOWN = 4


def representative_slice(reference: np.ndarray, labels: LabelSpec, axis: int) -> int:
    """Index along `axis` of the slice with the most reference labels present, then the most foreground."""
    other = tuple(a for a in range(reference.ndim) if a != axis)
    present = sum(np.isin(reference, t.values).any(axis=other).astype(int) for t in labels.targets)
    foreground = np.isin(reference, [v for t in labels.targets for v in t.values]).sum(axis=other)
    return int(np.lexsort((foreground, present))[-1])


def montage_panels(image: np.ndarray, segmentations: Sequence[np.ndarray], labels: LabelSpec,
                   spacing: Sequence[float]) -> tuple[np.ndarray, list[np.ndarray], float]:
    """The representative 2-D slice of `image` and of each segmentation (the reference first), and the slice's
    pixel aspect ratio (row spacing / column spacing)."""
    axis = int(np.argmax(spacing))
    index = representative_slice(segmentations[0], labels, axis)
    rows, cols = (s for a, s in enumerate(spacing) if a != axis)
    return np.take(image, index, axis), [np.take(s, index, axis) for s in segmentations], rows / cols


def plot_montage(cases: dict[str, tuple[np.ndarray, list[np.ndarray], float]], column_titles: Sequence[str],
                 labels: LabelSpec, output_file: Path) -> Path:
    """One row per case (``case -> montage_panels(...)``), one column per segmentation (``column_titles``, the
    reference first): the image in grey with every label's outline in its colour."""
    colours = plt.get_cmap("tab10").colors
    n_rows, n_cols = len(cases), len(column_titles)
    fig = plt.figure(figsize=(n_cols * PANEL_INCHES, n_rows * PANEL_INCHES + LEGEND_INCHES), dpi=DPI)
    grid = fig.add_gridspec(n_rows, n_cols, left=0.01, right=0.99, top=1 - LEGEND_INCHES / fig.get_figheight(),
                            bottom=0.01, wspace=0.02, hspace=0.12)
    for r, (case, (image, slices, aspect)) in enumerate(cases.items()):
        low, high = np.percentile(image, (1, 99))
        for c, (title, seg) in enumerate(zip(column_titles, slices)):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
            for i, target in enumerate(labels.targets):
                mask = np.isin(seg, target.values)
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[colours[i % len(colours)]], linewidths=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{case}: {title}" if c == 0 else title, fontsize="small")
    handles = [Line2D([], [], color=colours[i % len(colours)], label=t.name) for i, t in enumerate(labels.targets)]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), frameon=False, fontsize="small")
    fig.savefig(output_file)
    plt.close(fig)
    return output_file


def pick_cases(summary: dict, count: int = CASES_SHOWN) -> list[str]:
    """Up to `count` cases spread from the worst to the best mean Dice over all methods (the worst first)."""
    scores = {c: np.mean([v["dice"] for m in summary["methods"].values() for v in m["per_case"][c].values()])
              for c in summary["cases"]}
    ranked = sorted(scores, key=scores.get)
    positions = np.unique(np.linspace(0, len(ranked) - 1, min(count, len(ranked))).round().astype(int))
    return [ranked[i] for i in positions]


def montage_figure(summary: dict, images: dict[str, Path], references: dict[str, Path],
                   predictions: dict[str, dict[str, Path]], labels: LabelSpec, reader: type,
                   output_folder: Path) -> Path:
    """``montage.png`` of the cases chosen by `pick_cases`: reference then each method (``name -> case -> file``),
    read with nnU-Net's reader/writer class `reader` (first image channel only)."""
    io = reader()
    panels = {}
    for case in pick_cases(summary):
        image, properties = io.read_images([str(images[case])])
        segmentations = [io.read_seg(str(references[case]))[0][0]]
        segmentations += [io.read_seg(str(files[case]))[0][0] for files in predictions.values()]
        panels[case] = montage_panels(image[0], segmentations, labels, properties["spacing"])
    return plot_montage(panels, ["reference", *predictions], labels, Path(output_folder) / "montage.png")
