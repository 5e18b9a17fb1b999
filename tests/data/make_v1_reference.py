"""Make `tests/data/v1_reference/`: plans written by nnU-Net v1's own planner for a CT-like and an
MRI-like task, and v1's own preprocessing of one new scan of each with those plans, the references
that `tests/test_v1_plans.py` and `tests/test_import_official.py` hold the import against.

Runs in a throwaway environment with nnU-Net v1 (1.7.1, what the authors' fork is built on), never in
this project's:

    python3 -m venv /tmp/v1env
    /tmp/v1env/bin/pip install --no-deps nnunet==1.7.1 batchgenerators==0.25.5
    PIP_CONSTRAINT= /tmp/v1env/bin/pip install "numpy<2" "scipy<1.14" "scikit-image<0.25" "pandas<2.3" \
        "matplotlib<3.10" SimpleITK nibabel tqdm dicom2nifti scikit-learn medpy unittest2 requests sympy torch==2.14.1
    /tmp/v1env/bin/python tests/data/make_v1_reference.py /tmp/v1work

numpy < 2 as in 2022, when the published plans were pickled (numpy 1 names its globals `numpy.core`).
The script writes the raw v1 tasks into WORK/nnUNet_raw_data_base/nnUNet_raw_data and runs, with
nnUNet_raw_data_base, nnUNet_preprocessed and RESULTS_FOLDER below WORK,

    nnUNet_plan_and_preprocess -t 501 502 -pl3d ExperimentPlanner3D_v21 -pl2d None -no_pp -tf 2

(the plans are written before the preprocessing, which the tests do not need). Task501_CTLike: five
CT-like cases of different sizes and spacings, x the thick axis (v1 transposes it first), large
enough that v1 also plans a low-resolution stage. Task502_MRLike: four cases with two modalities
inside a zero background that cropping removes (so v1 decides to normalise inside the nonzero mask).
Per task, into `v1_reference/TASK/`, all small:
- `unetr_pp_Plansv2.1_plans_3D.pkl`: v1's `nnUNetPlansv2.1_plans_3D.pkl`, under the name of the
  authors' files;
- `dataset.json`: the task's dataset.json as v1 copies it next to its plans;
- `scan_0000.nii.gz`... and `scan.nii.gz`: a new scan of the task (geometry unlike the training
  cases: non-identity direction, other spacing) and its labels;
- `v1_preprocessed.npz`: what v1's preprocessor (the one the plans name) made of it for the full-
  resolution stage, exactly as v1's `nnUNetTrainer.preprocess_patient` calls it at inference, plus
  the segmentation resampled as v1 does for training.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

OUT = Path(__file__).resolve().parent / "v1_reference"
PLANS_FILE = "unetr_pp_Plansv2.1_plans_3D.pkl"
V1_PLANS_FILE = "nnUNetPlansv2.1_plans_3D.pkl"
CT_TASK, MR_TASK = "Task501_CTLike", "Task502_MRLike"
LABELS = {"0": "background", "1": "organ", "2": "core", "3": "rim"}  # 4 classes, as the ACDC variant predicts
DIRECTION = (0.0, 0.0, 1.0, 0.6, 0.8, 0.0, -0.8, 0.6, 0.0)  # axes permuted and rotated
ORIGIN = (-101.5, 40.25, -300.0)


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    """Boolean ellipsoid in array index space, centre and radii as fractions of the shape."""
    axes = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((a - c * s) / (r * s)) ** 2 for a, s, c, r in zip(axes, shape, centre, radii)) < 1


def _anatomy(shape, rng, shift=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(body mask, labels 0-3): a body with an organ, its core and a thin rim-like structure."""
    body = _ellipsoid(shape, (0.5, 0.5, 0.5), (0.46, 0.42, 0.47))
    seg = np.zeros(shape, np.uint8)
    seg[_ellipsoid(shape, (0.42 + shift, 0.45, 0.5), (0.18, 0.16, 0.2)) & body] = 1
    seg[_ellipsoid(shape, (0.42 + shift, 0.45, 0.5), (0.07, 0.06, 0.08)) & body] = 2
    seg[_ellipsoid(shape, (0.65, 0.6 - shift, 0.5), (0.12, 0.04, 0.25)) & body] = 3
    return body, seg


def ct_case(shape, seed) -> tuple[np.ndarray, np.ndarray]:
    """int16 HU values: air, fat body, soft-tissue organ, brighter core, bone-like rim; no zeros."""
    rng = np.random.default_rng(seed)
    body, seg = _anatomy(shape, rng, shift=0.03 * (seed % 3))
    hu = np.where(body, -80.0, -1000.0).astype(np.float32)
    for label, value in ((1, 60.0), (2, 150.0), (3, 700.0)):
        hu[seg == label] = value
    hu += rng.normal(0, 20, shape).astype(np.float32)
    hu = np.round(hu)
    hu[hu == 0] = 1  # zero means "outside the scan" to the nonzero crop
    return hu.astype(np.int16), seg


def mr_case(shape, seed) -> tuple[list[np.ndarray], np.ndarray]:
    """Two float32 MR-like channels (different contrasts) inside a zero background, and labels 0-3."""
    rng = np.random.default_rng(seed)
    body, seg = _anatomy(shape, rng, shift=0.02 * (seed % 3))
    channels = []
    for contrast in ((300.0, 500.0, 800.0, 150.0), (700.0, 250.0, 100.0, 900.0)):
        image = np.where(body, contrast[0], 0.0)
        for label, value in zip((1, 2, 3), contrast[1:]):
            image[seg == label] = value
        image = np.where(body, np.abs(image + rng.normal(0, 30, shape)) + 1, 0.0)  # only the background is zero
        channels.append(image.astype(np.float32))
    return channels, seg


def write_image(array: np.ndarray, path: Path, spacing_zyx, direction=None, origin=None) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    if direction is not None:
        image.SetDirection(direction)
        image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def write_task(raw: Path, task: str, modalities: dict, cases: list) -> None:
    """A raw v1 task folder: imagesTr/CASE_000M.nii.gz, labelsTr/CASE.nii.gz, dataset.json."""
    folder = raw / task
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "imagesTs").mkdir()
    training = []
    for name, channels, seg, spacing in cases:
        for m, image in enumerate(channels):
            write_image(image, folder / "imagesTr" / f"{name}_{m:04d}.nii.gz", spacing)
        write_image(seg, folder / "labelsTr" / f"{name}.nii.gz", spacing)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    (folder / "dataset.json").write_text(json.dumps({
        "name": task.split("_", 1)[1], "description": "synthetic test task", "tensorImageSize": "4D",
        "reference": "", "licence": "", "release": "", "modality": modalities, "labels": LABELS,
        "numTraining": len(training), "numTest": 0, "training": training, "test": []}, indent=2))


def raw_tasks(raw: Path) -> None:
    """Task501 (CT, anisotropic, x thick, ~19 Mvoxel: over 8 times the patch v1 fits in memory, so that v1
    adds a low-resolution stage with under half the voxels) and
    Task502 (two MR-like modalities, small, zero background)."""
    ct = []
    for i, (shape, spacing) in enumerate([((350, 340, 160), (0.8, 0.8, 3.0)), ((370, 360, 150), (0.78, 0.78, 3.0)),
                                          ((340, 350, 170), (0.82, 0.82, 2.5)), ((380, 360, 140), (0.75, 0.75, 3.0)),
                                          ((360, 330, 165), (0.8, 0.8, 3.2))]):
        hu, seg = ct_case(shape, i)
        ct.append((f"ct{i:02d}", [hu], seg, spacing))
    write_task(raw, CT_TASK, {"0": "CT"}, ct)
    mr = []
    for i, (shape, spacing) in enumerate([((20, 48, 48), (3.0, 1.2, 1.2)), ((22, 44, 50), (3.0, 1.25, 1.25)),
                                          ((18, 52, 46), (3.3, 1.2, 1.2)), ((24, 48, 44), (2.8, 1.3, 1.3))]):
        channels, seg = mr_case(shape, 10 + i)
        padded = [np.pad(c, ((2, 2), (6, 6), (6, 6))) for c in channels]  # background that cropping removes
        mr.append((f"mr{i:02d}", padded, np.pad(seg, ((2, 2), (6, 6), (6, 6))), spacing))
    write_task(raw, MR_TASK, {"0": "T1", "1": "T2"}, mr)


def new_scans() -> dict[str, tuple[list[np.ndarray], np.ndarray, tuple]]:
    """Per task, a small scan unlike the training cases (spacing, direction, a zero border on two sides)."""
    hu, seg = ct_case((30, 26, 12), 7)
    hu[:2], hu[:, -3:], seg[:2], seg[:, -3:] = 0, 0, 0, 0
    (t1, t2), mr_seg = mr_case((14, 30, 28), 17)
    return {CT_TASK: ([hu], seg, (0.8, 1.1, 4.0)),
            MR_TASK: ([np.pad(t1, 3), np.pad(t2, 3)], np.pad(mr_seg, 3), (2.5, 1.4, 1.1))}


def preprocess_like_v1(plans: dict, task_out: Path, n_channels: int) -> None:
    """v1's nnUNetTrainer.process_plans + preprocess_patient for the full-resolution stage."""
    from nnunet.preprocessing import preprocessing

    preprocessor_class = getattr(preprocessing, plans["preprocessor_name"])  # where v1's class lookup finds it
    preprocessor = preprocessor_class(plans["normalization_schemes"], plans["use_mask_for_norm"],
                                      plans["transpose_forward"], plans["dataset_properties"]["intensityproperties"])
    fullres = max(plans["plans_per_stage"])
    data, seg, props = preprocessor.preprocess_test_case(
        [str(task_out / f"scan_{m:04d}.nii.gz") for m in range(n_channels)],
        plans["plans_per_stage"][fullres]["current_spacing"], seg_file=str(task_out / "scan.nii.gz"))
    np.savez_compressed(task_out / "v1_preprocessed.npz", data=data.astype(np.float32), seg=seg.astype(np.int8),
                        crop_bbox=np.array(props["crop_bbox"]), size_after_cropping=np.array(props["size_after_cropping"]))
    print(task_out.name, "v1 preprocessed ->", data.shape)


def main(work: Path) -> None:
    import pickle

    env = dict(os.environ, nnUNet_raw_data_base=str(work / "nnUNet_raw_data_base"),
               nnUNet_preprocessed=str(work / "nnUNet_preprocessed"), RESULTS_FOLDER=str(work / "results"))
    raw = work / "nnUNet_raw_data_base" / "nnUNet_raw_data"
    if not (raw / MR_TASK).is_dir():
        raw_tasks(raw)
    command = ["nnUNet_plan_and_preprocess", "-t", "501", "502", "-pl3d", "ExperimentPlanner3D_v21", "-pl2d", "None",
               "-no_pp", "-tf", "2"]
    subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]], env=env, check=True)
    for task, (channels, seg, spacing) in new_scans().items():
        task_out = OUT / task
        task_out.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "nnUNet_preprocessed" / task / V1_PLANS_FILE, task_out / PLANS_FILE)
        shutil.copy(work / "nnUNet_preprocessed" / task / "dataset.json", task_out / "dataset.json")
        for m, image in enumerate(channels):
            write_image(image, task_out / f"scan_{m:04d}.nii.gz", spacing, DIRECTION, ORIGIN)
        write_image(seg, task_out / "scan.nii.gz", spacing, DIRECTION, ORIGIN)
        with open(task_out / PLANS_FILE, "rb") as f:
            preprocess_like_v1(pickle.load(f), task_out, len(channels))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
