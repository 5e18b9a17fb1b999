"""`nnUNetv2_unetrpp_benchmark` on fabricated plans: any trainer/plans pair, stock ResEnc presets included."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compare_helpers import tiny_dataset_json, tiny_plans
from nnunetv2_unetrpp.benchmarking.cli import pairs
from nnunetv2_unetrpp.command_line import UserError

DATASET = "Dataset987_Bench"


def resenc_plans() -> dict:
    """tiny_plans with the architecture block of nnU-Net's residual-encoder presets."""
    plans = copy.deepcopy(tiny_plans())
    plans["plans_name"] = "nnUNetResEncUNetMPlans"
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    kwargs = arch["arch_kwargs"]
    kwargs["n_blocks_per_stage"] = kwargs.pop("n_conv_per_stage")
    return plans


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("preprocessed")
    folder = root / DATASET
    folder.mkdir()
    (folder / "nnUNetPlans.json").write_text(json.dumps({**tiny_plans(), "dataset_name": DATASET}))
    (folder / "nnUNetResEncUNetMPlans.json").write_text(json.dumps({**resenc_plans(), "dataset_name": DATASET}))
    (folder / "dataset.json").write_text(json.dumps(tiny_dataset_json({"background": 0, "a": 1, "b": 2})))
    return root


def benchmark(preprocessed: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "nnUNet_preprocessed": str(preprocessed), "nnUNet_raw": str(tmp_path),
           "nnUNet_results": str(tmp_path)}
    env.pop("nnUNet_extTrainer", None)  # the command adds this package's trainers itself
    return subprocess.run([sys.executable, "-m", "nnunetv2_unetrpp.benchmarking.cli", "-d", DATASET, "-c", "3d_fullres",
                           "-device", "cpu", "--repeats", "1", "--threads", "1", *args],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_resenc_preset_against_unetrpp(preprocessed, tmp_path):
    out = tmp_path / "bench.json"
    result = benchmark(preprocessed, tmp_path, "-tr", "nnUNetTrainer", "nnUNetTrainerUNETRPP",
                       "-p", "nnUNetResEncUNetMPlans", "nnUNetPlans", "--no_inference", "-o", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    base, ours = "nnUNetTrainer__nnUNetResEncUNetMPlans", "nnUNetTrainerUNETRPP__nnUNetPlans"
    assert list(report["networks"]) == [base, ours] and report["baseline"] == base
    assert report["networks"][base]["network"] == "nnUNetTrainer"
    assert report["networks"][base]["parameters"] > 0 and report["networks"][ours]["parameters"] > 10 ** 6
    ratios = report["ratios_over_baseline"][ours]
    assert ratios["parameters"] == pytest.approx(report["networks"][ours]["parameters"]
                                                 / report["networks"][base]["parameters"])
    assert report["ratios_over_baseline"][base]["train_step_s"] == 1.0
    assert "| training step (s) |" in result.stdout and base in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["-p", "nnUNetResEncUNetLPlans"], "nnUNetResEncUNetLPlans.json does not exist"),
    (["-tr", "nnUNetTrainerDoesNotExist"], "cannot find the trainer 'nnUNetTrainerDoesNotExist'"),
])
def test_user_errors_are_one_line(preprocessed, tmp_path, args, message):
    result = benchmark(preprocessed, tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_trainer_and_plans_lists_pair_up():
    assert pairs(["A", "B"], ["P"]) == [("A", "P"), ("B", "P")]
    assert pairs(["A"], ["P", "Q"]) == [("A", "P"), ("A", "Q")]
    assert pairs(["A", "B"], ["P", "Q"]) == [("A", "P"), ("B", "Q")]
    with pytest.raises(UserError, match="-tr has 3 trainers and -p 2 plans"):
        pairs(["A", "B", "C"], ["P", "Q"])
