"""Which labels or regions are evaluated: nnU-Net's reading of dataset.json or, without it, every
value found in the references.

Regions (lists of values, evaluated as their union) and the ignore label (not evaluated; its
reference voxels are masked out) mean what they mean to nnU-Net, whose `LabelManager` reads them.
Background (value 0) is never evaluated.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from nnunetv2_unetrpp.compare.errors import CompareError


@dataclass(frozen=True)
class Target:
    """One evaluated structure: ``key`` is its summary key (the int value as a string, or the region's name)."""

    key: str
    name: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class LabelSpec:
    """The evaluated targets, the ignore label, and the values a segmentation may contain (None: no check)."""

    targets: tuple[Target, ...]
    ignore_label: Optional[int]
    allowed_values: Optional[frozenset[int]]


def labels_from_dataset_json(path: Path) -> LabelSpec:
    """Targets from an nnU-Net dataset.json, read by nnU-Net's own `LabelManager`: its regions (with
    `regions_class_order`), its ignore label and its checks (background 0, ignore label highest)."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    try:
        dataset = json.loads(Path(path).read_text())
        labels = dataset["labels"]
    except FileNotFoundError:
        raise CompareError(f"dataset.json {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CompareError(f"cannot read the 'labels' dict of {path}: {e!r}") from None
    try:
        # regions_class_order only matters for turning predicted regions into a label map, not for
        # evaluating regions: where a dataset.json lacks it, any order of the right length serves
        regions = [v for k, v in labels.items() if k != "ignore" and set(_as_tuple(v)) != {0}]
        manager = LabelManager(labels, dataset.get("regions_class_order") or list(range(1, len(regions) + 1)))
    except (AssertionError, RuntimeError, TypeError, ValueError) as e:
        raise CompareError(f"{path}: nnU-Net's LabelManager rejects its labels: {e}") from None
    foreground = manager.foreground_regions if manager.has_regions else manager.foreground_labels
    if not foreground:
        raise CompareError(f"{path} defines no foreground label")
    names = {_as_tuple(value): name for name, value in labels.items() if name != "ignore"}
    values = [tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else (int(v),) for v in foreground]
    targets = tuple(Target(key=names[v] if manager.has_regions else str(v[0]), name=names[v], values=v) for v in values)
    allowed = {0, *manager.all_labels} | ({manager.ignore_label} if manager.has_ignore_label else set())
    return LabelSpec(targets, manager.ignore_label, frozenset(int(v) for v in allowed))


def _as_tuple(value) -> tuple[int, ...]:
    """A label's value(s) as a tuple; ValueError unless an int or a non-empty list of ints."""
    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"label value {value!r} is not an int or a list of ints")
    return items


def labels_from_values(values: Iterable[int]) -> LabelSpec:
    """Targets = every non-zero value found in the references; predictions are not checked for unknown values."""
    found = sorted({int(v) for v in values} - {0})
    if not found:
        raise CompareError("the reference segmentations contain no foreground label")
    return LabelSpec(tuple(Target(str(v), str(v), (v,)) for v in found), None, None)
