"""Per-case evaluation: read reference and predictions with nnU-Net's reader, check them, compute metrics.

Runs in worker processes (top-level functions only, so the 'spawn' start method works). Spacing comes from
the image header via nnU-Net's reader (``props['spacing']``, in the array's axis order). Axes of size 1 are
dropped with their spacing, so a 2D image stored as 1 x H x W is evaluated in 2D. Reference voxels equal to
the ignore label are set to background in both masks before any metric, which for Dice is exactly
nnU-Net's exclusion of those voxels from TP/FP/FN.
"""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import numpy as np
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from tqdm import tqdm

from nnunetv2_unetrpp.compare.errors import CompareError
from nnunetv2_unetrpp.compare.labels import LabelSpec
from nnunetv2_unetrpp.compare.metrics import mask_metrics

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs to evaluate one case for every method."""

    reference: str
    predictions: tuple[tuple[str, str], ...]  # (method name, file)
    reader: type[BaseReaderWriter]
    labels: LabelSpec
    nsd_tolerance_mm: float
    paper_rules: bool = False  # add the UNETR++ paper's HD95 (--protocol)


def read_segmentation(file: str, reader: type[BaseReaderWriter]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Segmentation array and its spacing (mm, per array axis) as nnU-Net's reader gives them."""
    try:
        seg, props = reader().read_seg(file)
    except Exception as e:  # any reader failure is a bad input file
        raise CompareError(f"cannot read {file}: {e}") from None
    return seg[0], tuple(float(s) for s in props["spacing"])


def _drop_singleton_axes(seg: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    keep = [i for i, n in enumerate(seg.shape) if n > 1]
    return seg.reshape([seg.shape[i] for i in keep]), tuple(spacing[i] for i in keep)


def unique_values(task: tuple[str, type[BaseReaderWriter]]) -> set[int]:
    """Label values in one segmentation file (used to find labels when there is no dataset.json)."""
    seg, _ = read_segmentation(*task)
    return {int(v) for v in np.unique(seg)}


def _check_values(seg: np.ndarray, file: str, labels: LabelSpec) -> None:
    if labels.allowed_values is None:
        return
    unknown = sorted({int(v) for v in np.unique(seg)} - labels.allowed_values)
    if unknown:
        raise CompareError(f"{file} contains label values {unknown} that are not in dataset.json labels "
                           f"{sorted(labels.allowed_values)}")


def evaluate_case(task: CaseTask) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of one case: ``{method: {target key: {metric: value}}}``."""
    ref, ref_spacing = read_segmentation(task.reference, task.reader)
    _check_values(ref, task.reference, task.labels)
    ref_eval, spacing_eval = _drop_singleton_axes(ref, ref_spacing)
    ignore = ref_eval == task.labels.ignore_label if task.labels.ignore_label is not None else None
    result = {}
    for method, file in task.predictions:
        pred, spacing = read_segmentation(file, task.reader)
        if pred.shape != ref.shape:
            raise CompareError(f"size mismatch: prediction {file} has shape {pred.shape} but reference "
                               f"{task.reference} has shape {ref.shape}")
        if not np.allclose(spacing, ref_spacing, rtol=1e-3, atol=1e-6):
            raise CompareError(f"spacing mismatch: prediction {file} has spacing {spacing} but reference "
                               f"{task.reference} has spacing {ref_spacing}")
        _check_values(pred, file, task.labels)
        pred = _drop_singleton_axes(pred, spacing)[0]
        result[method] = {}
        for target in task.labels.targets:
            ref_mask, pred_mask = np.isin(ref_eval, target.values), np.isin(pred, target.values)
            if ignore is not None:
                ref_mask &= ~ignore
                pred_mask &= ~ignore
            result[method][target.key] = mask_metrics(ref_mask, pred_mask, spacing_eval, task.nsd_tolerance_mm,
                                                         task.paper_rules)
    return result


def run_parallel(function: Callable[[T], R], tasks: Iterable[T], num_processes: int, description: str) -> list[R]:
    """``[function(t) for t in tasks]`` in 'spawn' worker processes (in-process for one worker), with a progress
    bar. A worker that dies (the out-of-memory killer, a crash) is a CompareError, not a wait: a
    ProcessPoolExecutor notices dead workers, where multiprocessing.Pool would wait forever for their tasks."""
    tasks = list(tasks)
    workers = min(num_processes, len(tasks))
    if workers <= 1:
        return list(tqdm(map(function, tasks), total=len(tasks), desc=description, unit="case", leave=False))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return list(tqdm(pool.map(function, tasks), total=len(tasks), desc=description, unit="case", leave=False))
        except BrokenProcessPool:
            raise CompareError(f"{description}: a worker process died (killed by the out-of-memory killer?); run with "
                               "fewer processes (-np)") from None
