"""Shrink a results folder written by nnunetv2_unetrpp 0.2.0 into tests/data/legacy_0_2_0 (run once, by hand).

The folder came from the release at commit 0a355ef: the toy dataset of tests/nnunet_helpers.py
(`make_toy_dataset(raw, 990, num_train=5, num_test=1, shape=(8, 24, 24))`), `nnUNetv2_plan_and_preprocess
-d 990 -c 3d_fullres`, `nnUNetv2_train 990 3d_fullres 0 -tr nnUNetTrainerUNETRPP_smoke -device cpu` with
nnUNet_extTrainer from that release's `nnUNetv2_unetrpp_env`. Its checkpoint holds 160 MB of tensors; the
JSON files and the checkpoint's structure are kept as written, each tensor becomes a meta tensor of its
shape and dtype (no data), which `tests/test_legacy_results.py` fills again.

    python tests/data/make_legacy_0_2_0.py RESULTS_FOLDER/Dataset990_Toy/nnUNetTrainerUNETRPP_smoke__nnUNetPlans__3d_fullres
"""
import shutil
import sys
from pathlib import Path

import torch
from torch.utils._pytree import tree_map

source = Path(sys.argv[1])
target = Path(__file__).resolve().parent / "legacy_0_2_0"
target.mkdir(exist_ok=True)
for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
    shutil.copy(source / name, target / name)
checkpoint = torch.load(source / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
skeleton = tree_map(lambda v: torch.empty(v.shape, dtype=v.dtype, device="meta") if isinstance(v, torch.Tensor) else v,
                    checkpoint)
torch.save(skeleton, target / "checkpoint_final_skeleton.pth")
