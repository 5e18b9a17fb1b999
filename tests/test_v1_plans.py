"""v1_plans: each v1 -> v2 rule, and v2's preprocessing with the imported plans against nnU-Net v1's own output.

The v1 output (`data/v1_reference/`, made by `data/make_v1_reference.py` with nnU-Net 1.7.1) is v1's
GenericPreprocessor on a CT-like volume: x is the thick axis (transpose [2, 0, 1]), the spacing is
anisotropic (separate-z resampling), the direction is not the identity, a zero border is cropped.
"""
from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_unetrpp import v1_plans
from nnunetv2_unetrpp.network_architecture.official_variants import build_official_variant
from nnunetv2_unetrpp.safe_loading import load_pickle
from nnunetv2_unetrpp.trainers.variants import nnUNetTrainerUNETRPP_ACDCArch

REFERENCE = Path(__file__).resolve().parent / "data" / "v1_reference"


@pytest.fixture(scope="module")
def v1() -> tuple[dict, dict]:
    """(v1 plans, v1 dataset.json) as nnU-Net v1 wrote them."""
    return (load_pickle(REFERENCE / "unetr_pp_Plansv2.1_plans_3D.pkl"),
            json.loads((REFERENCE / "dataset.json").read_text()))


@pytest.fixture
def plans(v1) -> dict:
    """A copy of the v1 plans, free to change."""
    return copy.deepcopy(v1[0])


def _imported(v1) -> PlansManager:
    """The imported plans, through JSON as nnU-Net reads them from plans.json."""
    return PlansManager(json.loads(json.dumps(v1_plans.v2_plans(v1[0], "acdc", "Dataset999_X"))))


def test_target_spacing_is_the_full_resolution_stage(plans):
    assert v1_plans.target_spacing(plans) == [3.0, 0.75, 0.9]  # stage 1; stage 0 is 3d_lowres
    del plans["plans_per_stage"][1]
    assert v1_plans.target_spacing(plans) == [4.5, 1.5, 1.8]


def test_transposes_become_plain_integers(plans):
    assert v1_plans.transposes(plans) == ([2, 0, 1], [1, 2, 0])
    assert all(type(a) is int for a in sum(v1_plans.transposes(plans), []))


def test_normalization_schemes(plans):
    assert v1_plans.normalization(plans) == (["CTNormalization"], [False])
    plans["normalization_schemes"] = OrderedDict({0: "nonCT"})
    plans["use_mask_for_norm"] = OrderedDict({0: True})
    assert v1_plans.normalization(plans) == (["ZScoreNormalization"], [True])
    plans["normalization_schemes"] = OrderedDict({0: "noNorm"})
    assert v1_plans.normalization(plans)[0] == ["NoNormalization"]


@pytest.mark.parametrize("scheme, mask, message", [
    ("CT2", False, "unknown v1 normalization scheme"), ("MRI", False, "unknown v1 normalization scheme"),
    ("CT", True, "cannot be reproduced"),
])
def test_normalization_v2_cannot_reproduce_is_refused(plans, scheme, mask, message):
    plans["normalization_schemes"], plans["use_mask_for_norm"] = {0: scheme}, {0: mask}
    with pytest.raises(ValueError, match=message):
        v1_plans.normalization(plans)


def test_intensity_properties_get_v2_names(plans):
    v1_props = plans["dataset_properties"]["intensityproperties"][0]
    props = v1_plans.intensity_properties(plans)["0"]
    assert set(props) == {"mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5"}
    for v1_key, v2_key in [("sd", "std"), ("mn", "min"), ("mx", "max"), ("mean", "mean"),
                           ("percentile_00_5", "percentile_00_5"), ("percentile_99_5", "percentile_99_5")]:
        assert props[v2_key] == float(v1_props[v1_key]) and type(props[v2_key]) is float
    del plans["dataset_properties"]["intensityproperties"][0]["sd"]
    with pytest.raises(ValueError, match="lack"):
        v1_plans.intensity_properties(plans)
    plans["dataset_properties"]["intensityproperties"] = None  # v1 collects none without a CT channel
    with pytest.raises(ValueError, match="no intensity properties"):
        v1_plans.intensity_properties(plans)
    plans["normalization_schemes"] = OrderedDict({0: "nonCT"})
    assert v1_plans.intensity_properties(plans) == {"0": {}}  # v2 still looks the channel up


def test_mri_plans_preprocess_with_z_score(plans, v1):
    """MRI plans (no intensity properties, nonzero mask) run through v2's preprocessor."""
    plans["normalization_schemes"], plans["use_mask_for_norm"] = OrderedDict({0: "nonCT"}), OrderedDict({0: True})
    plans["dataset_properties"]["intensityproperties"] = None
    imported = PlansManager(json.loads(json.dumps(v1_plans.v2_plans(plans, "acdc", "Dataset999_X"))))
    data, seg, _ = DefaultPreprocessor(verbose=False).run_case(
        [str(REFERENCE / "ct_0000.nii.gz")], None, imported, imported.get_configuration("3d_fullres"),
        v1_plans.v2_dataset_json(plans, v1[1]))
    inside = data[seg >= 0]
    assert abs(inside.mean()) < 0.1 and abs(inside.std() - 1) < 0.1


def test_channel_and_label_names(v1):
    plans, dataset_json = v1
    assert v1_plans.channel_names(plans) == {"0": "CT"}
    assert v1_plans.labels(dataset_json) == {"background": 0, "liver": 1, "kidney": 2, "bone": 3}
    with pytest.raises(ValueError, match="alike"):
        v1_plans.labels({"labels": {"0": "background", "1": "organ", "2": "organ"}})
    with pytest.raises(ValueError, match="not 0..1"):
        v1_plans.labels({"labels": {"0": "background", "2": "spleen"}})


def test_fingerprint_from_v1_dataset_properties(v1):
    fingerprint = v1_plans.fingerprint(v1[0])
    assert fingerprint["shapes_after_crop"] == [[28, 23, 12]] and fingerprint["spacings"] == [[0.8, 1.1, 4.0]]
    assert fingerprint["median_relative_size_after_cropping"] == pytest.approx(28 * 23 / (30 * 26))
    assert fingerprint["foreground_intensity_properties_per_channel"] == v1_plans.intensity_properties(v1[0])


def test_patch_size_and_network_are_the_variants(v1):
    plans = _imported(v1)
    configuration = plans.get_configuration("3d_fullres")
    assert configuration.patch_size == [16, 160, 160]  # the v1 plans say 16x32x32: the checkpoint's geometry wins
    network = nnUNetTrainerUNETRPP_ACDCArch.build_network_architecture(
        plans, configuration, 1, 4, enable_deep_supervision=False)
    official = build_official_variant("acdc", deep_supervision=False)
    assert repr(network) == repr(official)
    assert configuration.configuration["unetrpp"]["spatial_layout"] == "official"


def test_v2_preprocessing_matches_v1(v1):
    """Geometry and segmentation exactly; intensities within the bound of v2 normalising before resampling.

    v1 clips to the CT percentiles after the cubic resampling, v2 before, so near the edges of clipped
    regions (air, bone) the spline differs. On the reference volume (1.7 HU mean, 100 HU worst, in
    units of v1's sd of 246 HU: 0.007 and 0.41), 78% of voxels agree to 1e-4 sd.
    """
    reference = np.load(REFERENCE / "v1_preprocessed.npz")
    plans = _imported(v1)
    data, seg, properties = DefaultPreprocessor(verbose=False).run_case(
        [str(REFERENCE / "ct_0000.nii.gz")], str(REFERENCE / "ct.nii.gz"), plans, plans.get_configuration("3d_fullres"),
        v1_plans.v2_dataset_json(*v1))
    assert data.shape == reference["data"].shape == (1, 16, 30, 28)
    forward = v1_plans.transposes(v1[0])[0]
    assert properties["bbox_used_for_cropping"] == reference["crop_bbox"][forward].tolist()  # v1 crops before transposing
    np.testing.assert_array_equal(seg, reference["seg"])
    difference = np.abs(data - reference["data"])
    assert difference.mean() < 0.01
    assert np.percentile(difference, 99) < 0.2
    assert (difference < 1e-4).mean() > 0.7


def test_v2_operations_in_v1_order_reproduce_v1_exactly(v1):
    """v2's resampling and normalization, fed the imported plans but run in v1's order (crop, transpose,
    resample, then clip and standardise), give v1's numbers: every imported setting is v1's."""
    reference = np.load(REFERENCE / "v1_preprocessed.npz")
    plans = _imported(v1)
    configuration = plans.get_configuration("3d_fullres")
    image = sitk.ReadImage(str(REFERENCE / "ct_0000.nii.gz"))
    spacing = np.array(image.GetSpacing()[::-1])[plans.transpose_forward]
    data = sitk.GetArrayFromImage(image).astype(np.float32)[None].transpose(0, *[a + 1 for a in plans.transpose_forward])
    data, _, _ = crop_to_nonzero(data)
    data = configuration.resampling_fn_data(data, reference["data"].shape[1:], spacing, configuration.spacing)
    normalize = CTNormalization(False, plans.foreground_intensity_properties_per_channel["0"])
    data = normalize.run(data[0])
    np.testing.assert_allclose(data, reference["data"][0], atol=1e-5, rtol=0)
