"""Fixtures and settings every test shares, and the test tiers.

The helper modules (`compare_helpers`, `nnunet_helpers`) build whole datasets from the same
functions as the fixtures (`plans_dict`, `write_image_file`), so each exists once.

`./run.sh test` runs everything (as CI does); `./run.sh test -m "not slow"` leaves out the tests
that run nnU-Net's commands in subprocesses, DDP and the demo.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import torch

#: The smallest UNETR++ that still has every part: for tests that need the network, not its size.
TINY_UNETRPP = dict(feature_size=8, dims=(8, 16, 16, 32), depths=(1, 1, 1, 1), decoder_depth=1, num_heads=2,
                    proj_sizes=(8, 8, 8, 4), decoder_proj_size=8)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: runs nnU-Net commands in subprocesses, DDP or the demo (minutes on 2 cores)")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_unetrpp_kwargs() -> dict:
    """The keyword arguments of the tiny UNETR++ (a copy; for processes a fixture cannot reach)."""
    return copy.deepcopy(TINY_UNETRPP)


@pytest.fixture
def tiny_unetrpp(tiny_unetrpp_kwargs) -> Callable:
    """`tiny_unetrpp(patch, input_channels=1, num_classes=3, **overrides)`: a tiny UNETRPP."""
    from nnunetv2_unetrpp.network_architecture import UNETRPP

    def make(patch: Sequence[int], input_channels: int = 1, num_classes: int = 3, **overrides):
        return UNETRPP(input_channels, num_classes, patch, **{**tiny_unetrpp_kwargs, **overrides})
    return make


def plans_dict(patch_size: Sequence[int], strides: Sequence[Sequence[int]], configuration: str = "3d_fullres",
           dataset_name: str = "Dataset999_Tiny", spacing: Sequence[float] | None = None) -> dict:
    dim = len(patch_size)
    n = len(strides)
    conv = "torch.nn.modules.conv.Conv3d" if dim == 3 else "torch.nn.modules.conv.Conv2d"
    norm = "torch.nn.modules.instancenorm.InstanceNorm3d" if dim == 3 else "torch.nn.modules.instancenorm.InstanceNorm2d"
    spacing = list(spacing or [1.0] * dim)
    resampling = "resample_data_or_seg_to_shape"
    config = {
        "data_identifier": f"nnUNetPlans_{configuration}", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": list(patch_size), "median_image_size_in_voxels": list(patch_size), "spacing": spacing,
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False], "batch_dice": True,
        "resampling_fn_data": resampling, "resampling_fn_seg": resampling, "resampling_fn_probabilities": resampling,
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities_kwargs": {},
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": n, "features_per_stage": [min(4 * 2 ** i, 32) for i in range(n)],
                            "conv_op": conv, "kernel_sizes": [[3] * dim] * n, "strides": [list(s) for s in strides],
                            "n_conv_per_stage": [1] * n, "n_conv_per_stage_decoder": [1] * (n - 1), "conv_bias": True,
                            "norm_op": norm, "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
    }
    return {
        "dataset_name": dataset_name, "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": list(patch_size), "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(range(dim)), "transpose_backward": list(range(dim)),
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "configurations": {configuration: config}, "foreground_intensity_properties_per_channel": {},
        "continue_training": False,
    }


@pytest.fixture
def make_plans() -> Callable[..., dict]:
    """`make_plans(patch_size, strides, configuration="3d_fullres", dataset_name=..., spacing=None)`: a
    minimal nnU-Net v2 plans dict (PlainConvUNet architecture block, one configuration)."""
    return plans_dict


def write_image_file(array: np.ndarray, path: Path, spacing_zyx: Sequence[float] | None = None,
                 origin: Sequence[float] | None = None, direction: Sequence[float] | None = None) -> Path:
    import SimpleITK as sitk

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    if spacing_zyx is not None:
        image.SetSpacing([float(s) for s in spacing_zyx[::-1]])  # SimpleITK's order is x, y(, z)
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """`write_image(array, path, spacing_zyx=None, origin=None, direction=None)`: an image file
    (NIfTI by extension) of a z, y(, x) array, spacing given in array axis order."""
    return write_image_file
