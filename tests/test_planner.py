"""nnUNetv2_unetrpp_plan_experiment: nnU-Net's planning with UNETR++ sized for the GPU memory target.

The dataset's images are tiny; its fingerprint says CT-like volumes of 200 x 512 x 512 voxels at
1.5 x 0.8 x 0.8 mm, so that memory, not the image size, bounds patch and batch (planning reads only the
fingerprint)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_helpers import make_toy_dataset, nnunet_env, run

pytestmark = pytest.mark.slow

DATASET, NAME = 503, "Dataset503_Toy"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    root = tmp_path_factory.mktemp("planner")
    make_toy_dataset(root / "raw", DATASET, num_train=5, num_test=0, shape=(8, 24, 24))
    env = nnunet_env(root)
    run(["nnUNetv2_extract_fingerprint", "-d", str(DATASET), "-np", "1"], env)
    fingerprint_file = root / "preprocessed" / NAME / "dataset_fingerprint.json"
    fingerprint = json.loads(fingerprint_file.read_text())
    cases = len(fingerprint["spacings"])
    fingerprint.update(spacings=[[1.5, 0.8, 0.8]] * cases, shapes_after_crop=[[200, 512, 512]] * cases)
    fingerprint_file.write_text(json.dumps(fingerprint))
    run(["nnUNetv2_unetrpp_plan_experiment", "-d", str(DATASET)], env)
    run(["nnUNetv2_unetrpp_plan_experiment", "-d", str(DATASET), "-gpu_memory_target", "24"], env)
    folder = root / "preprocessed" / NAME
    return {gb: json.loads((folder / name).read_text()) for gb, name in
            ((8, "nnUNetUNETRPPPlans.json"), (24, "nnUNetUNETRPPPlans_24G.json"))}, root, env


def voxels_per_step(configuration: dict) -> int:
    return int(np.prod(configuration["patch_size"])) * configuration["batch_size"]


def test_24_gb_gives_at_least_1_5x_the_voxels_per_step_of_8_gb(planned):
    plans, _, _ = planned
    for configuration in ("3d_fullres", "2d"):
        ratio = voxels_per_step(plans[24]["configurations"][configuration]) / \
            voxels_per_step(plans[8]["configurations"][configuration])
        assert ratio >= 1.5, (configuration, ratio)


@pytest.mark.parametrize("gb", [8, 24])
def test_every_configuration_names_the_unetrpp_it_trains(planned, gb):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_unetrpp import memory_estimate
    from nnunetv2_unetrpp.network_architecture.unetr_pp import UNETRPP

    plans, _, _ = planned
    manager = PlansManager(plans[gb])
    # at 24 GB the full-resolution patch covers enough of the image: nnU-Net plans no cascade then
    expected = {"2d", "3d_fullres"} | ({"3d_lowres", "3d_cascade_fullres"} if gb == 8 else set())
    assert expected == set(manager.available_configurations)
    for name in manager.available_configurations:
        config = manager.get_configuration(name)
        kwargs = config.network_arch_init_kwargs
        assert config.network_arch_class_name == "nnunetv2_unetrpp.network_architecture.unetr_pp.UNETRPP"
        assert kwargs["patch_size"] == config.patch_size and "unetrpp" not in config.configuration
        assert kwargs["strides"][0] == [1] * len(config.patch_size)  # nnU-Net's convention: full resolution first
        with torch.device("meta"):  # the patch is a multiple of the total stride: the network builds as planned
            network = get_network_from_plans(config.network_arch_class_name, kwargs,
                                             config.network_arch_init_kwargs_req_import, 2, 3)
        assert isinstance(network, UNETRPP) and list(network.patch_size) == config.patch_size
        assert config.batch_size >= 2
        # the plan's training step is estimated within the memory target (the estimate is calibrated in fp32)
        estimate = memory_estimate.count_training_memory(network, (2, *config.patch_size)).training_bytes(
            config.batch_size, memory_estimate.UNETRPP_ACTIVATION_FACTOR)
        assert estimate < 2 * gb * 2 ** 30


def test_2d_and_3d_fullres_reuse_nnunet_plans_preprocessed_data(planned):
    plans, _, _ = planned
    for gb in (8, 24):
        configurations = plans[gb]["configurations"]
        assert configurations["3d_fullres"]["data_identifier"] == "nnUNetPlans_3d_fullres"
        assert configurations["2d"]["data_identifier"] == "nnUNetPlans_2d"
    assert plans[8]["configurations"]["3d_lowres"]["data_identifier"] == "nnUNetUNETRPPPlans_3d_lowres"
    assert plans[8]["plans_name"] == "nnUNetUNETRPPPlans" and plans[24]["plans_name"] == "nnUNetUNETRPPPlans_24G"


def test_planning_without_a_fingerprint_is_one_line(planned, tmp_path):
    _, root, env = planned
    make_toy_dataset(root / "raw", 504, num_train=5, num_test=0, shape=(8, 24, 24))
    exe = Path(sys.executable).with_name("nnUNetv2_unetrpp_plan_experiment")
    result = subprocess.run([str(exe), "-d", "504"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "nnUNetv2_extract_fingerprint -d 504" in result.stderr
    assert result.stderr.count("\n") == 1


def test_plan_and_preprocess_in_one_step(tmp_path):
    make_toy_dataset(tmp_path / "raw", 505, num_train=5, num_test=0, shape=(8, 24, 24))
    env = nnunet_env(tmp_path)
    run(["nnUNetv2_unetrpp_plan_and_preprocess", "-d", "505", "-c", "3d_fullres", "-np", "1",
         "--verify_dataset_integrity"], env)
    folder = tmp_path / "preprocessed" / "Dataset505_Toy"
    plans = json.loads((folder / "nnUNetUNETRPPPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"].endswith(".UNETRPP")
    assert len(list((folder / "nnUNetPlans_3d_fullres").glob("*.b2nd"))) == 2 * 5  # image and segmentation per case


def test_c_plans_only_the_configurations_asked_for(planned):
    _, root, env = planned
    run(["nnUNetv2_unetrpp_plan_experiment", "-d", str(DATASET), "-c", "3d_cascade_fullres",
         "-overwrite_plans_name", "cascade_only"], env)
    plans = json.loads((root / "preprocessed" / NAME / "cascade_only.json").read_text())
    # the cascade stage, the configuration it inherits from and the stage it follows
    assert sorted(plans["configurations"]) == ["3d_cascade_fullres", "3d_fullres", "3d_lowres"]
    exe = Path(sys.executable).with_name("nnUNetv2_unetrpp_plan_experiment")
    result = subprocess.run([str(exe), "-d", "503", "-c", "3d_fulres"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2 and "has no configuration 3d_fulres" in result.stderr
