"""Which labels or regions are evaluated, taken from dataset.json or, without it, from the references.

nnU-Net's dataset.json ``labels`` maps names to an int (a label) or a list of ints (a region: the union of
those values, as in nnU-Net's region-based training). ``ignore`` names the ignore label, which is not
evaluated and whose reference voxels are masked out. Background (value 0) is never evaluated.
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


def _as_values(name: str, value, source: Path) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise CompareError(f"{source}: label '{name}' has value {value!r}; expected an int or a list of ints")
    return tuple(items)


def labels_from_dataset_json(path: Path) -> LabelSpec:
    """Targets from the ``labels`` dict of an nnU-Net dataset.json."""
    try:
        labels = json.loads(Path(path).read_text())["labels"]
    except FileNotFoundError:
        raise CompareError(f"dataset.json {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CompareError(f"cannot read the 'labels' dict of {path}: {e!r}") from None
    targets, allowed, ignore_label = [], {0}, None
    for name, value in labels.items():
        values = _as_values(name, value, path)
        allowed.update(values)
        if name == "ignore":
            if len(values) != 1:
                raise CompareError(f"{path}: the ignore label must be a single int, got {value!r}")
            ignore_label = values[0]
        elif values != (0,):
            is_region = isinstance(value, (list, tuple))
            targets.append(Target(key=name if is_region else str(value), name=name, values=values))
    if not targets:
        raise CompareError(f"{path} defines no foreground label")
    return LabelSpec(tuple(targets), ignore_label, frozenset(allowed))


def labels_from_values(values: Iterable[int]) -> LabelSpec:
    """Targets = every non-zero value found in the references; predictions are not checked for unknown values."""
    found = sorted({int(v) for v in values} - {0})
    if not found:
        raise CompareError("the reference segmentations contain no foreground label")
    return LabelSpec(tuple(Target(str(v), str(v), (v,)) for v in found), None, None)
