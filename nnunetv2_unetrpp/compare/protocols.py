"""The UNETR++ paper's evaluation protocols (``--protocol``): which structures it scores, and its published numbers.

The label sets are facts from the authors' evaluation scripts (github.com/Amshaker/unetr_plus_plus):

* Synapse: 8 of the 13 BTCV organs (``unetr_pp/inference_synapse.py``, ``process_label``);
* ACDC: RV 1, Myo 2, LV 3 (``unetr_pp/inference_acdc.py``);
* BraTS: the regions WT = {1, 2, 3}, TC = {2, 3}, ET = {3} of the Decathlon labels 1 edema, 2 non-enhancing
  tumour, 3 enhancing tumour (``unetr_pp/inference_tumor.py``, which also scores ED and NET; the paper reports
  WT, TC and ET);
* Lung: the tumour, label 1 (no evaluation script: ``evaluation_scripts/run_evaluation_lung.sh`` runs nnU-Net
  v1's validation, which reports Dice only).

Their scripts score Dice as ``2|A∩B| / (|A|+|B|)`` and 1 when both masks are empty, and HD95 as medpy's
``hd95(pred, gt)`` without voxel spacing when both masks are non-empty, else 0 (``metrics.mask_metrics`` with
``paper_rules``). Every average is the mean over structures of the per-structure means over cases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nnunetv2_unetrpp.compare.labels import LabelSpec, Target

AUTHORS_REPO = "github.com/Amshaker/unetr_plus_plus"


@dataclass(frozen=True)
class PaperResult:
    """One row of a table of the paper: Dice in % per target key (None: not reported), mean Dice and mean HD95."""

    method: str
    dice: dict[str, Optional[float]]
    mean_dice: float
    mean_hd95: Optional[float]


@dataclass(frozen=True)
class Protocol:
    """A benchmark's evaluated structures, the label values its segmentations may hold, and the paper's rows."""

    name: str
    labels: LabelSpec
    label_source: str
    results: tuple[PaperResult, ...]
    results_source: str


def _labels(targets: tuple[Target, ...], max_value: int) -> LabelSpec:
    return LabelSpec(targets, None, frozenset(range(max_value + 1)))


def _organs(*pairs: tuple[int, str]) -> tuple[Target, ...]:
    return tuple(Target(str(value), name, (value,)) for value, name in pairs)


_SYNAPSE_KEYS = ("1", "2", "3", "4", "6", "7", "8", "11")


def _synapse_row(method: str, organs: tuple[float, ...], hd95: Optional[float], dice: float) -> PaperResult:
    return PaperResult(method, dict(zip(_SYNAPSE_KEYS, organs)), dice, hd95)


PROTOCOLS = {
    "synapse": Protocol(
        "synapse",
        _labels(_organs((1, "spleen"), (2, "right kidney"), (3, "left kidney"), (4, "gallbladder"), (6, "liver"),
                        (7, "stomach"), (8, "aorta"), (11, "pancreas")), 13),
        f"{AUTHORS_REPO}: unetr_pp/inference_synapse.py (process_label)",
        (  # Spl, RKid, LKid, Gal, Liv, Sto, Aor, Pan; average HD95 (voxels); average DSC
            _synapse_row("U-Net", (86.67, 68.60, 77.77, 69.72, 93.43, 75.58, 89.07, 53.98), None, 76.85),
            _synapse_row("TransUNet", (85.08, 77.02, 81.87, 63.16, 94.08, 75.62, 87.23, 55.86), 31.69, 77.49),
            _synapse_row("Swin-UNet", (90.66, 79.61, 83.28, 66.53, 94.29, 76.60, 85.47, 56.58), 21.55, 79.13),
            _synapse_row("UNETR", (85.00, 84.52, 85.60, 56.30, 94.57, 70.46, 89.80, 60.47), 18.59, 78.35),
            _synapse_row("MISSFormer", (91.92, 82.00, 85.21, 68.65, 94.41, 80.81, 86.99, 65.67), 18.20, 81.96),
            _synapse_row("Swin-UNETR", (95.37, 86.26, 86.99, 66.54, 95.72, 77.01, 91.12, 68.80), 10.55, 83.48),
            _synapse_row("nnFormer", (90.51, 86.25, 86.57, 70.17, 96.84, 86.83, 92.04, 83.35), 10.63, 86.57),
            _synapse_row("UNETR++", (95.77, 87.18, 87.54, 71.25, 96.42, 86.01, 92.52, 81.10), 7.53, 87.22),
        ),
        f"the paper's Synapse table, as in {AUTHORS_REPO} README (media/synapse_results.png)"),
    "acdc": Protocol(
        "acdc", _labels(_organs((1, "RV"), (2, "Myo"), (3, "LV")), 3),
        f"{AUTHORS_REPO}: unetr_pp/inference_acdc.py (process_label)",
        (PaperResult("UNETR++", {"1": 91.89, "2": 90.61, "3": 96.00}, 92.83, None),),
        "the paper (IEEE TMI 2024), as recorded in the project's spec (shared/spec/UNETRPP.md, section 9)"),
    "lung": Protocol(
        "lung", _labels(_organs((1, "tumour")), 1),
        f"{AUTHORS_REPO}: evaluation_scripts/run_evaluation_lung.sh (nnU-Net v1 validation of label 1)",
        (PaperResult("nnU-Net", {"1": 74.31}, 74.31, None), PaperResult("UNETR++", {"1": 80.68}, 80.68, None)),
        "the paper (IEEE TMI 2024), as recorded in the project's spec (shared/spec/UNETRPP.md, section 9)"),
    "brats": Protocol(
        "brats",
        _labels((Target("WT", "whole tumour", (1, 2, 3)), Target("TC", "tumour core", (2, 3)),
                 Target("ET", "enhancing tumour", (3,))), 3),
        f"{AUTHORS_REPO}: unetr_pp/inference_tumor.py (process_label)",
        (PaperResult("UNETR++", {"WT": None, "TC": None, "ET": None}, 82.8, None),),
        "the paper (IEEE TMI 2024), as recorded in the project's spec (shared/spec/UNETRPP.md, section 9)"),
}
