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

With ``paper_rules`` (``--protocol``) two more: ``hd95_paper_vox`` and ``hd95_paper_mm``, the HD95 of the UNETR++
authors' evaluation scripts (medpy's ``hd95``, there without spacing, so in voxels): the 95th percentile (numpy,
linear interpolation) of the directed distances of BOTH directions pooled, and 0 when either mask is empty. Their
Dice equals ``dice`` above in every case (1 when both masks are empty).
"""
import warnings
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from monai.metrics.utils import get_edge_surface_distance

METRICS = ("dice", "hd95_mm", "hd95_vox", "nsd")
PAPER_METRICS = ("hd95_paper_vox", "hd95_paper_mm")
HIGHER_IS_BETTER = {"dice": True, "hd95_mm": False, "hd95_vox": False, "nsd": True, "hd95_paper_vox": False,
                    "hd95_paper_mm": False}


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


def paper_hd95(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    """HD95 as the UNETR++ authors computed it (medpy's ``hd95``; 0 when either mask is empty).

    MONAI gives the distances: the same surfaces (scipy's cross-shaped erosion) and the same Euclidean distances to
    the other surface as medpy. Only the pooling differs from MONAI's HD95 (the larger of the two directed
    percentiles), so the percentile of both directions together is taken here.
    """
    if not ref.any() or not pred.any():
        return 0.0
    ref, pred = _crop_to_union(ref, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, distances, _ = get_edge_surface_distance(_monai_input(pred)[0, 0], _monai_input(ref)[0, 0],
                                                    spacing=[float(s) for s in spacing], symmetric=True)
    return float(np.percentile(np.concatenate([np.asarray(d, dtype=np.float64) for d in distances]), 95))


def mask_metrics(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float], nsd_tolerance_mm: float,
                 paper_rules: bool = False) -> dict[str, float]:
    """All metrics of one reference/prediction mask pair of the same shape; ``spacing`` in mm per axis.
    ``paper_rules`` adds the HD95 of the UNETR++ paper's evaluation (``PAPER_METRICS``)."""
    result = _standard_metrics(ref, pred, spacing, nsd_tolerance_mm)
    if paper_rules:
        result["hd95_paper_vox"] = paper_hd95(ref, pred, [1.0] * ref.ndim)
        result["hd95_paper_mm"] = paper_hd95(ref, pred, spacing)
    return result


def _standard_metrics(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float],
                      nsd_tolerance_mm: float) -> dict[str, float]:
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
