"""A results folder written by release 0.2.0 (plans.json with the private "unetrpp" key next to nnU-Net's
CNN block) still rebuilds, resumes (--c), validates (--val) and predicts.

tests/data/legacy_0_2_0 holds that folder's JSON files as written and its checkpoint with every tensor
replaced by a meta tensor of its shape (160 MB of weights and optimizer state; tests/data/make_legacy_0_2_0.py
says how it was made). `legacy_checkpoint` fills the tensors again; everything else is the file of 0.2.0.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils._pytree import tree_map

from nnunet_helpers import make_toy_dataset, nnunet_env, read_geometry, run

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_0_2_0"
DATASET, NAME, TRAINER = 990, "Dataset990_Toy", "nnUNetTrainerUNETRPP_smoke"


def legacy_checkpoint() -> dict:
    """The 0.2.0 checkpoint, its tensors filled: small random weights, unit BatchNorm variances, zero counters."""
    skeleton = torch.load(LEGACY / "checkpoint_final_skeleton.pth", map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(0)

    def fill(value):
        if not isinstance(value, torch.Tensor):
            return value
        if not value.dtype.is_floating_point:
            return torch.zeros(value.shape, dtype=value.dtype)
        return 0.02 * torch.randn(value.shape, generator=generator, dtype=value.dtype)

    checkpoint = tree_map(fill, skeleton)
    for key, value in checkpoint["network_weights"].items():
        if key.endswith("running_var"):
            value.abs_().add_(1.0)
    return checkpoint


def test_legacy_plans_rebuild_the_trained_network(tmp_path):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP_smoke
    from nnunetv2_unetrpp.pretrained.transfer_weights import read_source

    plans = json.loads((LEGACY / "plans.json").read_text())
    assert "unetrpp" in plans["configurations"]["3d_fullres"]  # the record of 0.2.0
    manager = PlansManager(plans)
    network = nnUNetTrainerUNETRPP_smoke.build_network_architecture(manager, manager.get_configuration("3d_fullres"),
                                                                   2, 3, True)
    checkpoint = legacy_checkpoint()
    network.load_state_dict(checkpoint["network_weights"], strict=True)
    assert network.stem_stride == (2, 4, 4) and network.patch_size == (8, 24, 24)
    path = tmp_path / "checkpoint_final.pth"
    torch.save(checkpoint, path)
    source = read_source(path, trust_pickles=True)  # transfer_weights reads the plans recorded in the checkpoint
    assert source.network.patch_size == (8, 24, 24) and source.architecture["spatial_layout"] == "corrected"


@pytest.mark.slow
def test_legacy_results_folder_resumes_validates_and_predicts(tmp_path):
    root = tmp_path
    make_toy_dataset(root / "raw", DATASET, num_train=5, num_test=1, shape=(8, 24, 24))  # the dataset 0.2.0 trained on
    env = nnunet_env(root)
    run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET), "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env)
    folder = root / "results" / NAME / f"{TRAINER}__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy(LEGACY / name, folder / name)
    torch.save(legacy_checkpoint(), folder / "fold_0" / "checkpoint_final.pth")

    train = ["nnUNetv2_train", str(DATASET), "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"]
    resumed = run([*train, "--c"], env)
    assert "Mean Validation Dice" in resumed.stdout  # loaded at its last epoch, it ends with the final validation
    (folder / "fold_0" / "validation" / "summary.json").unlink()
    run([*train, "--val"], env)
    assert (folder / "fold_0" / "validation" / "summary.json").is_file()

    images, out = root / "raw" / NAME / "imagesTs", tmp_path / "pred"
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET), "-c", "3d_fullres", "-f", "0",
         "-tr", TRAINER, "-device", "cpu", "--disable_progress_bar", "-npp", "1", "-nps", "1"], env)
    for image in images.glob("*_0000.nii.gz"):
        assert read_geometry(out / image.name.replace("_0000.nii.gz", ".nii.gz")) == read_geometry(image)
