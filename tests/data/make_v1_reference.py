"""Make `tests/data/v1_reference/`: nnU-Net v1's own preprocessing of a CT-like volume, the reference
that `tests/test_v1_plans.py` holds nnU-Net v2's preprocessing (with the imported plans) against.

Runs in a throwaway environment with nnU-Net v1 (1.7.1, what the authors' fork is built on), never in
this project's:

    python3 -m venv /tmp/v1env
    /tmp/v1env/bin/pip install --no-deps nnunet==1.7.1 batchgenerators==0.25.5
    PIP_CONSTRAINT= /tmp/v1env/bin/pip install "numpy<2" "scipy<1.14" "scikit-image<0.25" "pandas<2.3" SimpleITK
    /tmp/v1env/bin/python tests/data/make_v1_reference.py

numpy < 2 as in 2022, when the published plans were pickled (numpy 1 names its globals `numpy.core`).
Writes, all small:
- `unetr_pp_Plansv2.1_plans_3D.pkl`: v1 plans with the keys and types of v1's ExperimentPlanner3D_v21
  (two stages; x is the thick axis, so transpose_forward is [2, 0, 1] as v1's planner sets it);
- `dataset.json`: a v1 dataset.json (one CT channel, three labels);
- `ct_0000.nii.gz`, `ct.nii.gz`: a CT-like volume (anisotropic spacing, non-identity direction, a zero
  border that cropping removes) and its labels;
- `v1_preprocessed.npz`: what v1's preprocessor (the one the plans name) made of them for the full-
  resolution stage, exactly as v1's `nnUNetTrainer.preprocess_patient` calls it at inference, plus
  the segmentation resampled as v1 does for training.
"""
from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

OUT = Path(__file__).resolve().parent / "v1_reference"
PLANS_FILE = "unetr_pp_Plansv2.1_plans_3D.pkl"
SPACING_ZYX = (0.8, 1.1, 4.0)
DIRECTION = (0.0, 0.0, 1.0, 0.6, 0.8, 0.0, -0.8, 0.6, 0.0)  # axes permuted and rotated
ORIGIN = (-101.5, 40.25, -300.0)
TRANSPOSE_FORWARD = [2, 0, 1]  # v1's planner: the largest-spacing axis first
FULLRES_SPACING = np.array([3.0, 0.75, 0.9])  # transposed order, as v1 stores it
LOWRES_SPACING = np.array([4.5, 1.5, 1.8])


def ct_like_volume(shape=(30, 26, 12), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """int16 HU values: air, a body of fat, a liver-like and a kidney-like blob, a bone; a
    zero border on two sides (cropped away by both versions); labels 1-3 for liver, kidney, bone."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    ellipsoid = lambda c, r: sum(((a - ci) / ri) ** 2 for a, ci, ri in zip((z, y, x), c, r)) < 1  # noqa: E731
    seg = np.zeros(shape, np.uint8)
    body = ellipsoid((15, 13, 6), (16, 11, 9))
    seg[ellipsoid((12, 10, 5), (7, 5, 4)) & body] = 1
    seg[ellipsoid((20, 16, 7), (4, 3, 3)) & body] = 2
    seg[ellipsoid((15, 20, 6), (10, 1.5, 2.5)) & body] = 3
    hu = np.where(body, -80.0, -1000.0) + rng.normal(0, 20, shape)  # fat, air
    hu[seg == 1] = 60 + rng.normal(0, 10, (seg == 1).sum())
    hu[seg == 2] = 150 + rng.normal(0, 10, (seg == 2).sum())
    hu[seg == 3] = 700 + rng.normal(0, 60, (seg == 3).sum())
    hu = np.round(hu)
    hu[hu == 0] = 1  # zero means "outside the scan" to the nonzero crop
    hu[:2], hu[:, -3:] = 0, 0
    seg[:2], seg[:, -3:] = 0, 0
    return hu.astype(np.int16), seg


def intensity_properties(foreground: np.ndarray) -> OrderedDict:
    """v1's DatasetAnalyzer.collect_intensity_properties for one modality (same keys and numpy types)."""
    props = OrderedDict()
    props["local_props"] = OrderedDict()
    props["median"] = np.median(foreground)
    props["mean"] = np.mean(foreground)
    props["sd"] = np.std(foreground)
    props["mn"] = np.min(foreground)
    props["mx"] = np.max(foreground)
    props["percentile_99_5"] = np.percentile(foreground, 99.5)
    props["percentile_00_5"] = np.percentile(foreground, 0.5)
    return props


def stage(spacing: np.ndarray, patch, pools, median_shape) -> dict:
    """One entry of v1's plans_per_stage (ExperimentPlanner3D_v21.get_properties_for_stage's keys)."""
    return {
        "batch_size": 2, "num_pool_per_axis": [int(np.log2(np.prod([p[a] for p in pools]))) for a in range(3)],
        "patch_size": np.array(patch), "median_patient_size_in_voxels": np.array(median_shape),
        "current_spacing": spacing, "original_spacing": np.array([4.0, 0.8, 1.1]),
        "do_dummy_2D_data_aug": True, "pool_op_kernel_sizes": pools,
        "conv_kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * len(pools),
    }


def v1_plans(hu: np.ndarray, seg: np.ndarray) -> dict:
    """A v1 plans dict with the keys of ExperimentPlanner3D_v21.plan_experiment."""
    modalities = {0: "CT"}
    cropped = (hu.shape[0] - 2, hu.shape[1] - 3, hu.shape[2])  # without the zero border
    dataset_properties = {
        "all_sizes": OrderedDict(ct=cropped), "all_spacings": OrderedDict(ct=np.array(SPACING_ZYX)),
        "all_classes": [1, 2, 3], "modalities": modalities,
        "intensityproperties": OrderedDict({0: intensity_properties(hu[seg > 0].astype(np.float32))}),
        "size_reductions": OrderedDict(ct=np.prod(cropped) / np.prod(hu.shape)),
    }
    pools = [[1, 2, 2], [2, 2, 2], [2, 2, 2]]
    transpose_backward = [np.argwhere(np.array(TRANSPOSE_FORWARD) == i)[0][0] for i in range(3)]
    return {
        "num_stages": 2, "num_modalities": 1, "modalities": modalities,
        "normalization_schemes": OrderedDict({0: "CT"}), "dataset_properties": dataset_properties,
        "list_of_npz_files": ["/data/nnUNet_preprocessed/Task099_CTLike/nnUNetData_plans_v2.1_stage1/ct.npz"],
        "original_spacings": [np.array(SPACING_ZYX)], "original_sizes": [np.array(hu.shape)],
        "preprocessed_data_folder": "/data/nnUNet_preprocessed/Task099_CTLike", "num_classes": 3,
        "all_classes": [1, 2, 3], "base_num_features": 32, "use_mask_for_norm": OrderedDict({0: False}),
        "keep_only_largest_region": None, "min_region_size_per_class": None, "min_size_per_class": None,
        "transpose_forward": TRANSPOSE_FORWARD, "transpose_backward": transpose_backward,
        "data_identifier": "nnUNetData_plans_v2.1",
        "plans_per_stage": {0: stage(LOWRES_SPACING, [8, 16, 16], pools, [8, 16, 13]),
                            1: stage(FULLRES_SPACING, [16, 32, 32], pools, [16, 30, 28])},
        "preprocessor_name": "GenericPreprocessor", "conv_per_stage": 2,
    }


def write_image(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_ZYX[::-1])
    image.SetDirection(DIRECTION)
    image.SetOrigin(ORIGIN)
    sitk.WriteImage(image, str(path))


def main() -> None:
    from nnunet.preprocessing import preprocessing

    OUT.mkdir(exist_ok=True)
    hu, seg = ct_like_volume()
    write_image(hu, OUT / "ct_0000.nii.gz")
    write_image(seg, OUT / "ct.nii.gz")
    plans = v1_plans(hu, seg)
    with open(OUT / PLANS_FILE, "wb") as f:
        pickle.dump(plans, f)
    (OUT / "dataset.json").write_text(json.dumps({
        "name": "CTLike", "description": "CT-like test volume", "tensorImageSize": "4D",
        "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver", "2": "kidney", "3": "bone"},
        "numTraining": 1, "numTest": 0, "training": [{"image": "./imagesTr/ct.nii.gz", "label": "./labelsTr/ct.nii.gz"}],
        "test": [],
    }, indent=2))

    # as v1's nnUNetTrainer.process_plans + preprocess_patient do for the full-resolution stage
    preprocessor_class = getattr(preprocessing, plans["preprocessor_name"])  # where v1's class lookup finds it
    preprocessor = preprocessor_class(plans["normalization_schemes"], plans["use_mask_for_norm"],
                                      plans["transpose_forward"], plans["dataset_properties"]["intensityproperties"])
    fullres = max(plans["plans_per_stage"])
    data, seg_out, props = preprocessor.preprocess_test_case(
        [str(OUT / "ct_0000.nii.gz")], plans["plans_per_stage"][fullres]["current_spacing"],
        seg_file=str(OUT / "ct.nii.gz"))
    np.savez_compressed(OUT / "v1_preprocessed.npz", data=data.astype(np.float32), seg=seg_out.astype(np.int8),
                        crop_bbox=np.array(props["crop_bbox"]), size_after_cropping=np.array(props["size_after_cropping"]))
    print("v1 preprocessed", hu.shape, "->", data.shape, "files in", OUT)


if __name__ == "__main__":
    main()
