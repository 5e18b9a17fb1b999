"""Per-structure metrics of one binary mask pair: Dice, HD95 (mm and voxels) and NSD, via MONAI.

Definitions (MONAI 1.4-1.6, read from ``monai/metrics/utils.py`` and ``hausdorff_distance.py``):

* Surface voxels are ``mask XOR binary_erosion(mask)`` (scipy, default cross-shaped structuring
  element, voxels outside the image count as background, so a mask touching the border has a
  surface there).
* For every surface voxel of one mask MONAI takes the Euclidean distance, in the given spacing,
  to the nearest surface voxel of the other mask, in both directions.
* HD95 = max(q95(pred -> ref), q95(ref -> pred)): the larger of the two DIRECTED 95th percentiles,
  each with linear interpolation (``torch.quantile``), not the percentile of the pooled distances.
* NSD (``compute_surface_dice``, ``use_subvoxels=False``) = (number of surface voxels of both masks
  whose distance to the other surface is <= tolerance) / (number of surface voxels of both masks).
* Dice = 2|A∩B| / (|A|+|B|) by voxel counting.

Empty masks are decided here, before MONAI is called, so every value is finite and means are defined:

* both empty: Dice 1, HD95 0, NSD 1 (the prediction is perfect);
* exactly one empty: Dice 0, NSD 0, HD95 = the image diagonal (sqrt(sum((size_i * spacing_i)^2)),
  in mm for ``hd95_mm`` and with spacing 1 for ``hd95_vox``), the largest distance the image allows.
"""
import warnings
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice

METRICS = ("dice", "hd95_mm", "hd95_vox", "nsd")
HIGHER_IS_BETTER = {"dice": True, "hd95_mm": False, "hd95_vox": False, "nsd": True}


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image's diagonal: the HD95 given when exactly one mask is empty."""
    return float(np.sqrt(np.sum((np.asarray(shape, float) * np.asarray(spacing, float)) ** 2)))


def _crop_to_union(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their union's bounding box plus one voxel (clipped to the image).

    Surfaces, and so all distances, are unchanged (outside the image counts as background either way); it
    only spares MONAI from converting the whole image to float tensors, three times per structure.
    """
    nonzero = np.argwhere(ref | pred)
    lo, hi = np.maximum(nonzero.min(0) - 1, 0), nonzero.max(0) + 2
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    return ref[window], pred[window]


def _monai_input(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None, None]


def _hd95(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    with warnings.catch_warnings():  # MONAI warns about a deprecated argument it passes itself
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(_monai_input(pred), _monai_input(ref), include_background=True,
                                        percentile=95, spacing=[float(s) for s in spacing])
    return float(hd[0, 0])


def _nsd(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        nsd = compute_surface_dice(_monai_input(pred), _monai_input(ref), class_thresholds=[float(tolerance_mm)],
                                   include_background=True, spacing=[float(s) for s in spacing])
    return float(nsd[0, 0])


def mask_metrics(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float],
                 nsd_tolerance_mm: float) -> dict[str, float]:
    """All metrics of one reference/prediction mask pair of the same shape; ``spacing`` in mm per axis."""
    if ref.shape != pred.shape or len(spacing) != ref.ndim:
        raise ValueError(f"shape {ref.shape} / {pred.shape} and spacing {tuple(spacing)} disagree")
    n_ref, n_pred = int(ref.sum()), int(pred.sum())
    if n_ref == 0 and n_pred == 0:
        return {"dice": 1.0, "hd95_mm": 0.0, "hd95_vox": 0.0, "nsd": 1.0}
    if n_ref == 0 or n_pred == 0:
        return {"dice": 0.0, "hd95_mm": image_diagonal(ref.shape, spacing),
                "hd95_vox": image_diagonal(ref.shape, [1.0] * ref.ndim), "nsd": 0.0}
    dice = 2.0 * int(np.logical_and(ref, pred).sum()) / (n_ref + n_pred)
    ref, pred = _crop_to_union(ref, pred)
    return {
        "dice": dice,
        "hd95_mm": _hd95(ref, pred, spacing),
        "hd95_vox": _hd95(ref, pred, [1.0] * ref.ndim),
        "nsd": _nsd(ref, pred, spacing, nsd_tolerance_mm),
    }
