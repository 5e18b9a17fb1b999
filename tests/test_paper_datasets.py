"""The paper's benchmarks as nnU-Net datasets: conversion of fake downloads with the real layout and case names
(small random volumes), the paper's split in splits_final.json, labels, geometry, and the errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_image_file
from nnunet_helpers import ORIGIN_XYZ, DIRECTION, read_geometry
from nnunetv2_unetrpp.paper_datasets import main_brats, main_synapse

# The authors' fold 0, as their trainers list it (unetr_pp_trainer_synapse.py / _lung.py, do_split)
AUTHORS_SYNAPSE_TRAIN = ['img0006', 'img0007', 'img0009', 'img0010', 'img0021', 'img0023', 'img0024', 'img0026',
                         'img0027', 'img0031', 'img0033', 'img0034', 'img0039', 'img0040', 'img0005', 'img0028',
                         'img0030', 'img0037']
AUTHORS_SYNAPSE_VAL = ['img0001', 'img0002', 'img0003', 'img0004', 'img0008', 'img0022', 'img0025', 'img0029',
                       'img0032', 'img0035', 'img0036', 'img0038']
AUTHORS_LUNG_VAL = ['lung_058', 'lung_025', 'lung_046', 'lung_070', 'lung_001', 'lung_062', 'lung_083', 'lung_081',
                    'lung_093', 'lung_044', 'lung_027', 'lung_048', 'lung_003']
BTCV_CASES = [f"{n:04d}" for n in [*range(1, 11), *range(21, 41)]]  # the 30 labelled BTCV cases
SPACING_ZYX = (3.0, 0.8, 0.8)


def make_btcv_download(root: Path, shape=(4, 8, 8), seed: int = 0) -> Path:
    """RawData/Training/{img,label}/{img,label}00XX.nii.gz of the 30 labelled cases (random CT-like noise, the 13
    organs as boxes) and one unlabelled Testing image, all at anisotropic spacing with origin and direction."""
    rng = np.random.default_rng(seed)
    training = root / "RawData" / "Training"
    for n in BTCV_CASES:
        seg = np.zeros(shape, np.int16)
        for v in range(1, 14):  # organ v: a box at a random place, later organs drawn over earlier ones
            lo = rng.integers(0, [max(1, s - s // 3) for s in shape])
            seg[tuple(slice(a, a + max(1, s // 3)) for a, s in zip(lo, shape))] = v
        image = rng.normal(0, 50, shape) + 40.0 * seg
        write_image_file(image.astype(np.int16), training / "img" / f"img{n}.nii.gz", SPACING_ZYX, ORIGIN_XYZ,
                         DIRECTION)
        write_image_file(seg.astype(np.uint8), training / "label" / f"label{n}.nii.gz", SPACING_ZYX, ORIGIN_XYZ,
                         DIRECTION)
    write_image_file(np.zeros(shape, np.int16), root / "RawData" / "Testing" / "img" / "img0061.nii.gz", SPACING_ZYX)
    return root


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    dirs = {v: tmp_path / v for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for variable, folder in dirs.items():
        folder.mkdir()
        monkeypatch.setenv(variable, str(folder))
    return dirs


@pytest.fixture(scope="module")
def btcv(tmp_path_factory) -> Path:
    return make_btcv_download(tmp_path_factory.mktemp("btcv"))


def test_synapse_conversion_and_split(btcv, nnunet_dirs, capsys):
    assert main_synapse(["-i", str(btcv), "-d", "601"]) == 0
    raw = nnunet_dirs["nnUNet_raw"] / "Dataset601_Synapse"
    names = lambda sub: sorted(p.name for p in (raw / sub).iterdir())  # noqa: E731
    assert names("imagesTr") == [f"img{n}_0000.nii.gz" for n in BTCV_CASES]
    assert names("labelsTr") == [f"img{n}.nii.gz" for n in BTCV_CASES]
    assert names("imagesTs") == sorted(f"{c}_0000.nii.gz" for c in AUTHORS_SYNAPSE_VAL)
    assert names("labelsTs") == sorted(f"{c}.nii.gz" for c in AUTHORS_SYNAPSE_VAL)
    dataset = json.loads((raw / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "spleen": 1, "right kidney": 2, "left kidney": 3,
                                 "gallbladder": 4, "esophagus": 5, "liver": 6, "stomach": 7, "aorta": 8,
                                 "inferior vena cava": 9, "portal vein and splenic vein": 10, "pancreas": 11,
                                 "right adrenal gland": 12, "left adrenal gland": 13}
    assert (dataset["numTraining"], dataset["file_ending"], dataset["channel_names"]) == (30, ".nii.gz", {"0": "CT"})
    for n in ("0001", "0040"):  # geometry and voxels exactly the download's
        for source, target in ((btcv / "RawData/Training/img" / f"img{n}.nii.gz", raw / f"imagesTr/img{n}_0000.nii.gz"),
                               (btcv / "RawData/Training/label" / f"label{n}.nii.gz", raw / f"labelsTr/img{n}.nii.gz")):
            assert read_geometry(target) == read_geometry(source)
            assert read_geometry(target)[1] == pytest.approx(SPACING_ZYX[::-1])
            np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))),
                                          sitk.GetArrayFromImage(sitk.ReadImage(str(source))))
    splits = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset601_Synapse" / "splits_final.json").read_text())
    assert len(splits) == 1
    assert sorted(splits[0]["train"]) == sorted(AUTHORS_SYNAPSE_TRAIN) and len(splits[0]["train"]) == 18
    assert sorted(splits[0]["val"]) == sorted(AUTHORS_SYNAPSE_VAL) and len(splits[0]["val"]) == 12
    assert "fold 0 = the paper's 18 training and 12 evaluated cases" in capsys.readouterr().out


def _error(main, argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_synapse_refuses_to_overwrite(btcv, nnunet_dirs, capsys):
    assert main_synapse(["-i", str(btcv), "-d", "602"]) == 0
    capsys.readouterr()
    assert "dataset ID 602 is taken" in _error(main_synapse, ["-i", str(btcv), "-d", "602"], capsys)
    split = nnunet_dirs["nnUNet_preprocessed"] / "Dataset602_Synapse" / "splits_final.json"
    assert main_synapse(["-d", "602", "--split_only"]) == 0  # already the paper's split: nothing to do
    user_split = '[{"train": ["img0001"], "val": ["img0002"]}]'
    split.write_text(user_split)
    assert "pass --replace_split" in _error(main_synapse, ["-d", "602", "--split_only"], capsys)
    assert split.read_text() == user_split
    assert main_synapse(["-d", "602", "--split_only", "--replace_split"]) == 0
    assert split.with_name("splits_final.json.before_paper_split").read_text() == user_split
    assert len(json.loads(split.read_text())[0]["val"]) == 12


def test_synapse_input_errors(tmp_path, nnunet_dirs, capsys, monkeypatch):
    download = make_btcv_download(tmp_path / "dl", shape=(2, 3, 3))
    assert "not the BTCV download" in _error(main_synapse, ["-i", str(tmp_path), "-d", "603"], capsys)
    label = download / "RawData/Training/label/label0007.nii.gz"
    write_image_file(np.full((2, 3, 3), 14, np.uint8), label, SPACING_ZYX)
    assert "values [14] that are not BTCV organ labels" in _error(main_synapse, ["-i", str(download), "-d", "603"],
                                                                   capsys)
    write_image_file(np.zeros((2, 3, 4), np.uint8), label, SPACING_ZYX)
    assert "label0007.nii.gz does not match img0007.nii.gz" in _error(
        main_synapse, ["-i", str(download), "-d", "603"], capsys)
    label.unlink()
    assert "files of the 30 labelled BTCV cases are missing" in _error(
        main_synapse, ["-i", str(download), "-d", "603"], capsys)
    assert not list(nnunet_dirs["nnUNet_raw"].iterdir())  # nothing written by a failed conversion
    monkeypatch.delenv("nnUNet_raw")
    assert "nnUNet_raw is not set" in _error(main_synapse, ["-d", "603", "--split_only"], capsys)


def _nnunet_raw_dataset(raw: Path, name: str, cases: list[str]) -> None:
    """A converted-looking dataset: dataset.json and (empty) label files of these cases."""
    (raw / name / "labelsTr").mkdir(parents=True)
    (raw / name / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
    for c in cases:
        (raw / name / "labelsTr" / f"{c}.nii.gz").touch()


def test_brats_split_only(nnunet_dirs, capsys):
    _nnunet_raw_dataset(nnunet_dirs["nnUNet_raw"], "Dataset604_BrainTumour",
                        [f"BRATS_{n:03d}" for n in range(1, 485)])
    assert main_brats(["-d", "604", "--split_only"]) == 0
    split = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset604_BrainTumour" / "splits_final.json")
                       .read_text())[0]
    assert (len(split["train"]), len(split["val"])) == (387, 73)
    assert {"BRATS_001", "BRATS_483", "BRATS_400", "BRATS_484"} <= set(split["train"])  # first, last, appended
    assert {"BRATS_011", "BRATS_397"} <= set(split["val"]) and not set(split["train"]) & set(split["val"])
    assert "BRATS_058" not in split["train"] + split["val"]  # in neither of the authors' lists
    assert "24 cases are in neither list" in capsys.readouterr().err


def test_split_needs_the_benchmarks_cases(nnunet_dirs, capsys):
    _nnunet_raw_dataset(nnunet_dirs["nnUNet_raw"], "Dataset605_BrainTumour", ["BRATS_001"])
    assert "459 cases of the paper's brats split are not in" in _error(main_brats, ["-d", "605", "--split_only"],
                                                                        capsys)
    assert not (nnunet_dirs["nnUNet_preprocessed"] / "Dataset605_BrainTumour").exists()


def _console(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name(name)
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def test_acdc_with_nnunets_conversion(tmp_path, nnunet_dirs):
    """nnU-Net's own ACDC conversion (training/patientNNN/patientNNN_frameMM[_gt].nii.gz), then the paper's split
    by patient: both frames of the paper's 20 validation patients."""
    import os

    for p in range(1, 101):
        for frame in (1, 8 + p % 7):
            stem = tmp_path / "ACDC" / "training" / f"patient{p:03d}" / f"patient{p:03d}_frame{frame:02d}"
            write_image_file(np.zeros((2, 3, 3), np.int16), Path(f"{stem}.nii.gz"), (10.0, 1.5, 1.5))
            write_image_file(np.ones((2, 3, 3), np.uint8), Path(f"{stem}_gt.nii.gz"), (10.0, 1.5, 1.5))
    (tmp_path / "ACDC" / "testing").mkdir()
    result = _console("nnUNetv2_unetrpp_convert_acdc", "-i", str(tmp_path / "ACDC"), "-d", "606", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    split = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset606_ACDC" / "splits_final.json").read_text())[0]
    assert (len(split["train"]), len(split["val"])) == (160, 40)
    assert split["val"][:4] == ["patient002_frame01", "patient002_frame10", "patient003_frame01", "patient003_frame11"]
    assert "patient001_frame09" in split["train"]
    labels = sorted(p.name for p in (nnunet_dirs["nnUNet_raw"] / "Dataset606_ACDC" / "labelsTr").iterdir())
    assert len(labels) == 200 and labels[0] == "patient001_frame01.nii.gz"


def test_lung_with_nnunets_msd_conversion(tmp_path, nnunet_dirs):
    import os

    task = tmp_path / "Task06_Lung"
    cases = [f"lung_{n:03d}" for n in (1, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 20, 22, 23, 25, 26, 27, 28, 29, 31, 33, 34,
                                       36, 37, 38, 41, 42, 43, 44, 45, 46, 47, 48, 49, 51, 53, 54, 55, 57, 58, 59, 61,
                                       62, 64, 65, 66, 69, 70, 71, 73, 74, 75, 78, 79, 80, 81, 83, 84, 86, 92, 93, 95,
                                       96)]
    for c in cases:
        write_image_file(np.zeros((2, 3, 3), np.int16), task / "imagesTr" / f"{c}.nii.gz", (2.5, 0.8, 0.8))
        write_image_file(np.ones((2, 3, 3), np.uint8), task / "labelsTr" / f"{c}.nii.gz", (2.5, 0.8, 0.8))
    (task / "imagesTs").mkdir()
    (task / "dataset.json").write_text(json.dumps({
        "name": "Lung", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "cancer"},
        "numTraining": len(cases), "training": [], "test": []}))
    result = _console("nnUNetv2_unetrpp_convert_lung", "-i", str(task), "-d", "607", "-np", "1", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    split = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset607_Lung" / "splits_final.json").read_text())[0]
    assert sorted(split["val"]) == sorted(AUTHORS_LUNG_VAL) and len(split["train"]) == 50
    assert sorted(split["train"] + split["val"]) == cases
    wrong = _console("nnUNetv2_unetrpp_convert_brats", "-i", str(task), "-d", "608", env=dict(os.environ))
    assert wrong.returncode == 2 and "must be the Decathlon folder Task01_BrainTumour" in wrong.stderr
