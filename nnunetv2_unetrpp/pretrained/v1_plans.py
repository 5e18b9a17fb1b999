"""nnU-Net v1 plans and dataset.json -> nnU-Net v2 plans.json and dataset.json, one function per rule.

The published UNETR++ models come with v1 plans (the authors' fork of nnU-Net v1). v2's
DefaultPreprocessor reproduces v1's GenericPreprocessor with these settings; what it cannot
reproduce is refused here (ValueError) rather than approximated. One difference stays: v1
normalises after resampling, v2 before, so where v1's "CT" clipping is active the cubic spline
sees clipped instead of raw values (`tests/test_v1_plans.py` bounds the effect against v1 itself).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nnunetv2_unetrpp.network_architecture.official_variants import get_official_variant
from nnunetv2_unetrpp.trainers.plans_geometry import official_architecture

CONFIGURATION = "3d_fullres"
PLANS_NAME = "nnUNetPlans"  # the name nnUNetv2_predict uses when no -p is given

#: v1 scheme -> v2 normalization class. v1's "CT2" (per-case statistics inside the clip range) has no v2
#: counterpart, and other names were never written by v1's planners.
_NORMALIZATION = {"CT": "CTNormalization", "nonCT": "ZScoreNormalization", "noNorm": "NoNormalization"}

#: v2's names of v1's intensity properties (v1 writes `sd`, `mn`, `mx`).
_INTENSITY_KEYS = {"mean": "mean", "median": "median", "sd": "std", "mn": "min", "mx": "max",
                   "percentile_00_5": "percentile_00_5", "percentile_99_5": "percentile_99_5"}


def _values(value: Any, field: str) -> list:
    """A v1 collection as a list of its entries: v1 writes lists, tuples and numpy arrays, and dicts
    (OrderedDicts) keyed by int (channels, stages) or by case (e.g. `size_reductions`); the values
    of a dict in key order as stored."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    raise ValueError(f"the v1 plans' {field} is a {type(value).__name__}; nnU-Net v1 writes a list, tuple, "
                     "numpy array or dict there")


def _by_channel(mapping: Any, num_channels: int, what: str) -> list:
    """v1's per-modality entries (dicts keyed 0..C-1 by int, or a sequence) as a list in channel order."""
    if not isinstance(mapping, dict):
        mapping = dict(enumerate(_values(mapping, what)))
    try:
        return [mapping[c] for c in range(num_channels)]
    except KeyError:
        raise ValueError(f"the v1 plans' {what} do not cover channels 0..{num_channels - 1}: {mapping!r}") from None


def num_channels(plans: dict) -> int:
    """Input channels: v1's `num_modalities`."""
    return int(plans["num_modalities"])


def num_classes(plans: dict) -> int:
    """Network outputs: v1's `num_classes` counts foreground classes only."""
    return int(plans["num_classes"]) + 1


def fullres_stage(plans: dict) -> dict:
    """The stage v1 runs as 3d_fullres: the last of `plans_per_stage` (v1's default_configuration)."""
    stages = plans["plans_per_stage"]
    stage = stages[max(stages)] if isinstance(stages, dict) else _values(stages, "plans_per_stage")[-1]
    if not isinstance(stage, dict):
        raise ValueError(f"the v1 plans' full-resolution stage is a {type(stage).__name__}, not a dict")
    spacing = _values(stage["current_spacing"], "current_spacing")
    if len(spacing) != 3:
        raise ValueError(f"the v1 plans' full-resolution stage is not 3D (spacing {spacing})")
    return stage


def target_spacing(plans: dict) -> list[float]:
    """Spacing the network sees, in transposed axis order (as both versions store it)."""
    return [float(s) for s in _values(fullres_stage(plans)["current_spacing"], "current_spacing")]


def transposes(plans: dict) -> tuple[list[int], list[int]]:
    """(transpose_forward, transpose_backward); v1's planner writes the latter as numpy integers."""
    return ([int(a) for a in _values(plans["transpose_forward"], "transpose_forward")],
            [int(a) for a in _values(plans["transpose_backward"], "transpose_backward")])


def normalization(plans: dict) -> tuple[list[str], list[bool]]:
    """(normalization_schemes, use_mask_for_norm) per channel.

    v1 "CT" clips to the dataset's foreground percentiles and standardises with its mean and sd,
    as v2's CTNormalization; "nonCT" is a per-image z-score (inside the nonzero mask when
    `use_mask_for_norm`), as v2's ZScoreNormalization; "noNorm" leaves intensities, as NoNormalization.
    """
    channels = num_channels(plans)
    schemes = _by_channel(plans["normalization_schemes"], channels, "normalization_schemes")
    masks = [bool(m) for m in _by_channel(plans["use_mask_for_norm"], channels, "use_mask_for_norm")]
    unknown = sorted({s for s in schemes if s not in _NORMALIZATION})
    if unknown:
        raise ValueError(f"unknown v1 normalization scheme(s) {unknown}: nnU-Net v2 reproduces only "
                         f"{sorted(_NORMALIZATION)}")
    for c, (scheme, mask) in enumerate(zip(schemes, masks)):
        if scheme == "CT" and mask:  # v1 then zeroes the outside; v2's CTNormalization ignores the mask
            raise ValueError(f"channel {c}: v1 'CT' normalization with use_mask_for_norm cannot be reproduced "
                             "by nnU-Net v2")
    return [_NORMALIZATION[s] for s in schemes], masks


def intensity_properties(plans: dict) -> dict[str, dict[str, float]]:
    """v1's `dataset_properties['intensityproperties'][c]` under v2's names, for every channel.

    Channels that v1 normalises with "CT" need them. v1 records none when no channel is CT (MRI), but
    v2 looks up an entry for every channel, so those get an empty one.
    """
    schemes = _by_channel(plans["normalization_schemes"], num_channels(plans), "normalization_schemes")
    recorded = _dataset_properties(plans).get("intensityproperties") or {}
    if not isinstance(recorded, dict):
        recorded = dict(enumerate(_values(recorded, "intensityproperties")))
    out = {}
    for c, scheme in enumerate(schemes):
        props = recorded.get(c)
        if props is None:
            if scheme == "CT":
                raise ValueError(f"channel {c} is normalised as CT but the v1 plans hold no intensity properties for it")
            out[str(c)] = {}
            continue
        if not isinstance(props, dict):
            raise ValueError(f"the v1 plans' intensityproperties of channel {c} are a {type(props).__name__}, "
                             "not a dict")
        missing = [k for k in _INTENSITY_KEYS if k not in props and scheme == "CT"]
        if missing:
            raise ValueError(f"channel {c}: the v1 intensity properties lack {missing}")
        out[str(c)] = {v2: float(props[v1]) for v1, v2 in _INTENSITY_KEYS.items() if v1 in props}
    return out


def resampling() -> dict[str, Any]:
    """v2 resampling settings that do what v1 did (GenericPreprocessor, segmentation export).

    v1 resamples separately along the low-resolution axis (order 0 there) whenever the original or
    the target spacing is more anisotropic than 3 (`force_separate_z=None`, v2's default threshold
    is v1's 3): images with order 3 in-plane, segmentations and, at export, the network's output with
    order 1 (v1 resampled softmax probabilities, v2 resamples logits).
    """
    function = "resample_data_or_seg_to_shape"
    kwargs = lambda is_seg, order: dict(is_seg=is_seg, order=order, order_z=0, force_separate_z=None)  # noqa: E731
    return {
        "resampling_fn_data": function, "resampling_fn_data_kwargs": kwargs(False, 3),
        "resampling_fn_seg": function, "resampling_fn_seg_kwargs": kwargs(True, 1),
        "resampling_fn_probabilities": function, "resampling_fn_probabilities_kwargs": kwargs(False, 1),
    }


def channel_names(plans: dict) -> dict[str, str]:
    """v2 `channel_names` from v1's `modalities` ({0: "CT"} -> {"0": "CT"})."""
    return {str(c): str(name) for c, name in enumerate(_by_channel(plans["modalities"], num_channels(plans),
                                                                   "modalities"))}


def labels(dataset_json: dict) -> dict[str, int]:
    """v2 `labels` from v1's dataset.json ({"0": "background", "1": "spleen"} -> {"background": 0, "spleen": 1})."""
    try:
        by_value = {int(value): str(name) for value, name in dataset_json["labels"].items()}
    except (KeyError, AttributeError, ValueError):
        raise ValueError("the v1 dataset.json has no 'labels' of the form {\"0\": \"background\", \"1\": \"name\"}") \
            from None
    names = list(by_value.values())
    if len(set(names)) != len(names):
        raise ValueError(f"the v1 dataset.json names two labels alike: {dataset_json['labels']}")
    if sorted(by_value) != list(range(len(by_value))):
        raise ValueError(f"the v1 dataset.json's label values are not 0..{len(by_value) - 1}: {sorted(by_value)}")
    return {by_value[v]: v for v in sorted(by_value)}


def v2_plans(plans: dict, variant: str, dataset_name: str) -> dict:
    """The v2 plans.json of an imported model: v1's preprocessing, the variant's network and patch size."""
    stage = fullres_stage(plans)
    median_shape = _values(stage["median_patient_size_in_voxels"], "median_patient_size_in_voxels")
    forward, backward = transposes(plans)
    schemes, masks = normalization(plans)
    configuration = {
        "data_identifier": f"{PLANS_NAME}_{CONFIGURATION}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": int(stage["batch_size"]), "patch_size": list(get_official_variant(variant).patch_size),
        "median_image_size_in_voxels": [float(s) for s in median_shape],
        "spacing": target_spacing(plans), "normalization_schemes": schemes, "use_mask_for_norm": masks,
        **resampling(), "architecture": official_architecture(variant), "batch_dice": True,
    }
    return {
        "dataset_name": dataset_name, "plans_name": PLANS_NAME,
        "original_median_spacing_after_transp": [float(s) for s in _values(stage["original_spacing"],
                                                                           "original_spacing")],
        "original_median_shape_after_transp": [int(s) for s in median_shape],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": forward, "transpose_backward": backward,
        "configurations": {CONFIGURATION: configuration}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": intensity_properties(plans),
    }


def fingerprint(plans: dict) -> dict:
    """v2's dataset_fingerprint.json from v1's dataset properties (sizes after cropping, spacings in the
    files' axis order, intensities); nnU-Net's model export packs it with the model."""
    properties = _dataset_properties(plans)
    reductions = [float(r) for r in _values(properties.get("size_reductions", {}), "size_reductions")]
    return {
        "foreground_intensity_properties_per_channel": intensity_properties(plans),
        "shapes_after_crop": [[int(s) for s in _values(size, "all_sizes entry")]
                              for size in _values(properties["all_sizes"], "all_sizes")],
        "spacings": [[float(s) for s in _values(spacing, "all_spacings entry")]
                     for spacing in _values(properties["all_spacings"], "all_spacings")],
        "median_relative_size_after_cropping": float(np.median(reductions)) if reductions else 1.0,
    }


def _dataset_properties(plans: dict) -> dict:
    properties = plans["dataset_properties"]
    if not isinstance(properties, dict):
        raise ValueError(f"the v1 plans' dataset_properties is a {type(properties).__name__}, not a dict")
    return properties


def v2_dataset_json(plans: dict, dataset_json: dict) -> dict:
    """The v2 dataset.json of an imported model: channels from the plans, labels from v1's dataset.json."""
    return {"channel_names": channel_names(plans), "labels": labels(dataset_json),
            "numTraining": int(dataset_json.get("numTraining", 0)), "file_ending": ".nii.gz",
            "name": str(dataset_json.get("name", "")), "description": "imported from nnU-Net v1 plans"}
