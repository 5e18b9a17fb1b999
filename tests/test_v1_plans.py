"""v1_plans: each v1 -> v2 rule on plans written by nnU-Net v1's own planner, and v2's preprocessing with
the imported plans against nnU-Net v1's own output.

`data/v1_reference/` (made by `data/make_v1_reference.py` with nnU-Net 1.7.1's `nnUNet_plan_and_preprocess`)
holds two tasks: Task501_CTLike (CT, x the thick axis so transpose [2, 0, 1], two stages) and
Task502_MRLike (two MR-like modalities, z-scored inside the nonzero mask as v1 decided). Each has a new
scan (anisotropic spacing, non-identity direction, a zero border that cropping removes) and what v1's
GenericPreprocessor made of it with the task's plans.
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization, ZScoreNormalization
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_unetrpp.pretrained import v1_plans
from nnunetv2_unetrpp.network_architecture.official_variants import build_official_variant
from nnunetv2_unetrpp.safe_loading import load_pickle
from nnunetv2_unetrpp.trainers.variants import nnUNetTrainerUNETRPP_ACDCArch

REFERENCE = Path(__file__).resolve().parent / "data" / "v1_reference"
CT, MR = "Task501_CTLike", "Task502_MRLike"
PLANS_FILE = "unetr_pp_Plansv2.1_plans_3D.pkl"


def read_v1(task: str) -> tuple[dict, dict]:
    """(v1 plans, v1 dataset.json) of a task, as nnU-Net v1 wrote them."""
    return load_pickle(REFERENCE / task / PLANS_FILE), json.loads((REFERENCE / task / "dataset.json").read_text())


@pytest.fixture
def ct() -> dict:
    """The CT task's v1 plans, free to change."""
    return read_v1(CT)[0]


def _imported(plans: dict) -> PlansManager:
    """The imported plans, through JSON as nnU-Net reads them from plans.json."""
    return PlansManager(json.loads(json.dumps(v1_plans.v2_plans(plans, "acdc", "Dataset999_X"))))


def _scan(task: str, plans: dict) -> list[str]:
    return [str(REFERENCE / task / f"scan_{c:04d}.nii.gz") for c in range(v1_plans.num_channels(plans))]


def test_v1_writes_two_stages_and_the_types_read_here(ct):
    """What v1 1.7.1 writes (the fixture is its output, not a guess): stages keyed by int, lists of
    sizes and spacings, dicts keyed by case or channel, numpy arrays and scalars."""
    assert sorted(ct["plans_per_stage"]) == [0, 1]
    properties = ct["dataset_properties"]
    assert type(properties["all_sizes"]) is list and type(properties["all_spacings"]) is list
    assert isinstance(properties["size_reductions"], OrderedDict) and isinstance(ct["normalization_schemes"], OrderedDict)
    assert isinstance(ct["plans_per_stage"][1]["current_spacing"], np.ndarray)
    assert isinstance(properties["intensityproperties"][0]["sd"], np.floating)


def test_target_spacing_is_the_full_resolution_stage(ct):
    fullres, lowres = (ct["plans_per_stage"][s]["current_spacing"].tolist() for s in (1, 0))
    assert np.prod(lowres) > np.prod(fullres)
    assert v1_plans.target_spacing(ct) == pytest.approx(fullres) and fullres == pytest.approx([3.0, 0.8, 0.8], abs=0.01)
    del ct["plans_per_stage"][1]
    assert v1_plans.target_spacing(ct) == lowres


def test_transposes_become_plain_integers(ct):
    assert v1_plans.transposes(ct) == ([2, 0, 1], [1, 2, 0])  # v1 moved the thick x axis first
    assert all(type(a) is int for a in sum(v1_plans.transposes(ct), []))
    assert v1_plans.transposes(read_v1(MR)[0]) == ([0, 1, 2], [0, 1, 2])


def test_normalization_schemes_as_v1_decided(ct):
    assert v1_plans.normalization(ct) == (["CTNormalization"], [False])
    assert v1_plans.normalization(read_v1(MR)[0]) == (["ZScoreNormalization"] * 2, [True, True])
    ct["normalization_schemes"] = OrderedDict({0: "noNorm"})
    assert v1_plans.normalization(ct)[0] == ["NoNormalization"]


@pytest.mark.parametrize("scheme, mask, message", [
    ("CT2", False, "unknown v1 normalization scheme"), ("MRI", False, "unknown v1 normalization scheme"),
    ("CT", True, "cannot be reproduced"),
])
def test_normalization_v2_cannot_reproduce_is_refused(ct, scheme, mask, message):
    ct["normalization_schemes"], ct["use_mask_for_norm"] = {0: scheme}, {0: mask}
    with pytest.raises(ValueError, match=message):
        v1_plans.normalization(ct)


def test_intensity_properties_get_v2_names(ct):
    v1_props = ct["dataset_properties"]["intensityproperties"][0]
    props = v1_plans.intensity_properties(ct)["0"]
    assert set(props) == {"mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5"}
    for v1_key, v2_key in [("sd", "std"), ("mn", "min"), ("mx", "max"), ("mean", "mean"),
                           ("percentile_00_5", "percentile_00_5"), ("percentile_99_5", "percentile_99_5")]:
        assert props[v2_key] == float(v1_props[v1_key]) and type(props[v2_key]) is float
    assert v1_plans.intensity_properties(read_v1(MR)[0]) == {"0": {}, "1": {}}  # v1 collects none without CT
    del ct["dataset_properties"]["intensityproperties"][0]["sd"]
    with pytest.raises(ValueError, match="lack"):
        v1_plans.intensity_properties(ct)
    ct["dataset_properties"]["intensityproperties"] = None
    with pytest.raises(ValueError, match="no intensity properties"):
        v1_plans.intensity_properties(ct)


def test_channel_and_label_names():
    labels = {"background": 0, "organ": 1, "core": 2, "rim": 3}
    for task, channels in ((CT, {"0": "CT"}), (MR, {"0": "T1", "1": "T2"})):
        plans, dataset_json = read_v1(task)
        assert v1_plans.channel_names(plans) == channels and v1_plans.labels(dataset_json) == labels
    with pytest.raises(ValueError, match="alike"):
        v1_plans.labels({"labels": {"0": "background", "1": "organ", "2": "organ"}})
    with pytest.raises(ValueError, match="not 0..1"):
        v1_plans.labels({"labels": {"0": "background", "2": "spleen"}})


def test_fingerprint_from_v1_dataset_properties(ct):
    properties = ct["dataset_properties"]
    fingerprint = v1_plans.fingerprint(ct)
    assert fingerprint["shapes_after_crop"] == [list(map(int, s)) for s in properties["all_sizes"]]
    assert len(fingerprint["shapes_after_crop"]) == 5 and fingerprint["spacings"][0] == pytest.approx([0.8, 0.8, 3.0])
    assert fingerprint["median_relative_size_after_cropping"] == pytest.approx(1.0)  # CT: nothing is zero
    assert fingerprint["foreground_intensity_properties_per_channel"] == v1_plans.intensity_properties(ct)
    mr = v1_plans.fingerprint(read_v1(MR)[0])
    assert len(mr["spacings"]) == 4 and mr["median_relative_size_after_cropping"] < 0.75  # why v1 masks


@pytest.mark.parametrize("as_type", [
    lambda values, cases: OrderedDict(zip(cases, values)),  # keyed by case
    lambda values, cases: dict(enumerate(values)),  # keyed by int
    lambda values, cases: tuple(tuple(v) if np.ndim(v) else v for v in values),
    lambda values, cases: np.array([np.asarray(v) for v in values]),
], ids=["dict by case", "dict by int", "tuples", "numpy array"])
def test_fields_in_every_type_v1_writes(ct, as_type):
    expected = v1_plans.fingerprint(ct)
    properties = ct["dataset_properties"]
    cases = list(properties["size_reductions"])
    for key in ("all_sizes", "all_spacings"):
        properties[key] = as_type(properties[key], cases)
    properties["size_reductions"] = as_type(list(properties["size_reductions"].values()), cases)
    ct["transpose_forward"] = np.array(ct["transpose_forward"])
    assert v1_plans.fingerprint(ct) == expected and v1_plans.transposes(ct)[0] == [2, 0, 1]


@pytest.mark.parametrize("field, path", [("all_sizes", ("dataset_properties", "all_sizes")),
                                         ("transpose_forward", ("transpose_forward",)),
                                         ("dataset_properties", ("dataset_properties",))])
def test_a_field_of_another_type_is_named(ct, field, path):
    parent = ct
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = "2, 0, 1"
    with pytest.raises(ValueError, match=f"the v1 plans' {field} is a str"):
        v1_plans.fingerprint(ct), v1_plans.transposes(ct)


def test_patch_size_and_network_are_the_variants(ct):
    plans = _imported(ct)
    configuration = plans.get_configuration("3d_fullres")
    assert configuration.patch_size == [16, 160, 160]  # the v1 plans say otherwise: the checkpoint's geometry wins
    network = nnUNetTrainerUNETRPP_ACDCArch.build_network_architecture(
        plans, configuration, 1, 4, enable_deep_supervision=False)
    official = build_official_variant("acdc", deep_supervision=False)
    assert repr(network) == repr(official)
    assert configuration.network_arch_init_kwargs["spatial_layout"] == "official"
    assert "unetrpp" not in configuration.configuration


def _v2_preprocessed(task: str) -> tuple[dict, np.ndarray, np.ndarray, dict, np.lib.npyio.NpzFile]:
    plans, dataset_json = read_v1(task)
    imported = _imported(plans)
    data, seg, properties = DefaultPreprocessor(verbose=False).run_case(
        _scan(task, plans), str(REFERENCE / task / "scan.nii.gz"), imported, imported.get_configuration("3d_fullres"),
        v1_plans.v2_dataset_json(plans, dataset_json))
    return plans, data, seg, properties, np.load(REFERENCE / task / "v1_preprocessed.npz")


def test_v2_preprocessing_matches_v1_ct():
    """Geometry and segmentation exactly; intensities within the bound of v2 normalising before resampling.

    v1 clips to the CT percentiles after the cubic resampling, v2 before, so near the edges of clipped
    regions (air, bone) the spline differs; measured on this scan: see the thresholds.
    """
    plans, data, seg, properties, reference = _v2_preprocessed(CT)
    assert data.shape == reference["data"].shape
    forward = v1_plans.transposes(plans)[0]
    assert properties["bbox_used_for_cropping"] == reference["crop_bbox"][forward].tolist()  # v1 crops before transposing
    np.testing.assert_array_equal(seg, reference["seg"])
    difference = np.abs(data - reference["data"])
    assert difference.mean() < 0.01
    assert np.percentile(difference, 99) < 0.2
    assert (difference < 1e-4).mean() > 0.7


def test_v2_preprocessing_matches_v1_mr():
    """Two channels z-scored inside the nonzero mask: segmentation and mask exactly; intensities within the
    bound of v2 normalising before resampling.

    v2 takes mean and sd over the mask before resampling (v1 after), and its cubic spline then mixes
    normalised values with the zeros outside the mask, where v1's mixes raw intensities with raw zeros. On
    this small scan, most of whose voxels lie near the mask's edge, that gives (in units of the channel's
    sd) 0.30 mean and 1.95 99th-percentile difference inside the mask, and up to 0.78 outside it, where
    v1 writes 0; `test_v2_operations_in_v1_order_reproduce_v1_exactly` shows that the settings are v1's.
    """
    plans, data, seg, _, reference = _v2_preprocessed(MR)
    assert data.shape == reference["data"].shape and data.shape[0] == 2
    np.testing.assert_array_equal(seg, reference["seg"])
    inside = reference["seg"][0] >= 0
    np.testing.assert_array_equal(reference["data"][:, ~inside], 0)
    assert np.abs(data[:, ~inside]).max() < 1
    difference = np.abs(data - reference["data"])[:, inside]
    assert difference.mean() < 0.35 and np.percentile(difference, 99) < 2.1


@pytest.mark.parametrize("task", [CT, MR])
def test_v2_operations_in_v1_order_reproduce_v1_exactly(task):
    """v2's cropping, resampling and normalization, fed the imported plans but run in v1's order (crop,
    transpose, resample image and nonzero mask, then normalise), give v1's numbers: every imported setting
    is v1's. (Outside the nonzero mask v1 writes 0, v2's ZScoreNormalization leaves the input.)"""
    plans, _ = read_v1(task)
    reference = np.load(REFERENCE / task / "v1_preprocessed.npz")
    imported = _imported(plans)
    configuration = imported.get_configuration("3d_fullres")
    images = [sitk.ReadImage(f) for f in _scan(task, plans)]
    spacing = np.array(images[0].GetSpacing()[::-1])[imported.transpose_forward]
    axes = [a + 1 for a in imported.transpose_forward]
    data = np.stack([sitk.GetArrayFromImage(i).astype(np.float32) for i in images]).transpose(0, *axes)
    data, mask, _ = crop_to_nonzero(data)
    shape = reference["data"].shape[1:]
    data = configuration.resampling_fn_data(data, shape, spacing, configuration.spacing)
    mask = configuration.resampling_fn_seg(mask, shape, spacing, configuration.spacing)[0]
    schemes = {"CTNormalization": CTNormalization, "ZScoreNormalization": ZScoreNormalization}
    inside = mask >= 0
    for c, (scheme, use_mask) in enumerate(zip(configuration.normalization_schemes, configuration.use_mask_for_norm)):
        normalize = schemes[scheme](use_mask, imported.foreground_intensity_properties_per_channel[str(c)])
        np.testing.assert_allclose(normalize.run(data[c], mask)[inside], reference["data"][c][inside], atol=1e-5, rtol=0)
    assert (~inside).any() == (task == MR)  # CT: nothing is zero, the mask is everything


def test_plans_are_deep_copied_not_changed(ct):
    before = copy.deepcopy(ct)
    v1_plans.v2_plans(ct, "acdc", "Dataset999_X"), v1_plans.fingerprint(ct)
    assert repr(ct) == repr(before)
