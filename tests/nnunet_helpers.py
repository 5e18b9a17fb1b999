"""A toy dataset in nnU-Net raw format and helpers to run the real nnUNetv2_* commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from conftest import write_image_file
from nnunetv2_unetrpp.env import ext_trainer_value

SPACING_ZYX = (3.0, 1.0, 1.0)
ORIGIN_XYZ = (-12.5, 30.0, 7.25)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a 90 degree in-plane rotation


def toy_case(rng: np.random.Generator, shape=(12, 40, 40), spacing_zyx=SPACING_ZYX) -> tuple[np.ndarray, np.ndarray]:
    """Two channels, two labels: a bright ball (1) and a dark box (2) on noise; easy to learn."""
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    seg = np.zeros(shape, np.uint8)
    c = rng.uniform([4, 12, 12], [8, 28, 28])
    r = rng.uniform(7, 10)
    seg[((z - c[0]) * spacing_zyx[0] / spacing_zyx[1]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r ** 2] = 1
    lo = rng.integers([2, 2, 2], [5, 8, 8])
    seg[lo[0]:lo[0] + 5, lo[1]:lo[1] + 8, lo[2]:lo[2] + 8][seg[lo[0]:lo[0] + 5, lo[1]:lo[1] + 8, lo[2]:lo[2] + 8] == 0] = 2
    ch0 = rng.normal(0, 0.3, shape) + 2.0 * (seg == 1) - 1.5 * (seg == 2)
    ch1 = rng.normal(0, 0.3, shape) + 1.0 * (seg > 0)
    return np.stack([ch0, ch1]).astype(np.float32), seg


def make_toy_dataset(raw: Path, dataset_id: int, num_train: int = 6, num_test: int = 2, seed: int = 0,
                     shape=(12, 40, 40), spacing_zyx=SPACING_ZYX, one_label: bool = False) -> Path:
    """Dataset{id}_Toy with imagesTr/labelsTr/imagesTs/labelsTs and dataset.json; `one_label` merges
    ball and box into one foreground label."""
    folder = raw / f"Dataset{dataset_id:03d}_Toy"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_train + num_test):
        split = "Tr" if i < num_train else "Ts"
        image, seg = toy_case(rng, shape, spacing_zyx)
        if one_label:
            seg = (seg > 0).astype(np.uint8)
        for ch in range(2):
            write_image_file(image[ch], folder / f"images{split}" / f"toy_{i:03d}_{ch:04d}.nii.gz", spacing_zyx,
                             ORIGIN_XYZ, DIRECTION)
        write_image_file(seg, folder / f"labels{split}" / f"toy_{i:03d}.nii.gz", spacing_zyx, ORIGIN_XYZ, DIRECTION)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "MR"},
        "labels": {"background": 0, "foreground": 1} if one_label else {"background": 0, "ball": 1, "box": 2},
        "numTraining": num_train, "file_ending": ".nii.gz",
    }))
    return folder


def nnunet_env(root: Path, extra_trainer_dirs: tuple[Path, ...] = ()) -> dict:
    """Environment for nnU-Net child processes, everything under `root`."""
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
        nnUNet_results=str(root / "results"), nnUNet_n_proc_DA="1", nnUNet_compile="false",
        # nnU-Net's final validation otherwise spawns 8 export workers, each importing torch: minutes on 2 cores
        nnUNet_def_n_proc="1",
        nnUNet_extTrainer=os.pathsep.join([ext_trainer_value(""), *map(str, extra_trainer_dirs)]),
        OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1",
    )
    return env


def run(command: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an nnU-Net console command; fail with its output tail if it fails."""
    exe = Path(sys.executable).with_name(command[0])
    result = subprocess.run([str(exe), *command[1:]], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def read_geometry(path: Path) -> tuple:
    image = sitk.ReadImage(str(path))
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def network_of_results_folder(folder: Path, configuration: str, deep_supervision: bool = False):
    """nnU-Net's `get_network_from_plans` on a results folder's plans.json and dataset.json."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(json.loads((folder / "plans.json").read_text()))
    dataset_json = json.loads((folder / "dataset.json").read_text())
    config = manager.get_configuration(configuration)
    return get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                  config.network_arch_init_kwargs_req_import,
                                  determine_num_input_channels(manager, config, dataset_json),
                                  manager.get_label_manager(dataset_json).num_segmentation_heads,
                                  deep_supervision=deep_supervision)
