"""nnUNetv2_unetrpp_import_official: a published model (v1 checkpoint + v1 plans) -> an nnU-Net v2 model folder
that stock nnU-Net predicts with; bad input is one line, exit 2, and nothing written or touched."""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from conftest import CreatesFile, write_image_file
from nnunet_helpers import nnunet_env, read_geometry, run
from reference_fixtures import load_reference, official_state_dict, reference_input, sample_indices, \
    write_official_checkpoint
from nnunetv2_unetrpp.pretrained.import_official import main as import_official
from nnunetv2_unetrpp.network_architecture.official_checkpoint import convert_official_state_dict
from nnunetv2_unetrpp.safe_loading import load_pickle
from nnunetv2_unetrpp.trainers.variants import nnUNetTrainerUNETRPP_ACDCArch

REFERENCE = Path(__file__).resolve().parent / "data" / "v1_reference"
CT, MR = "Task501_CTLike", "Task502_MRLike"
PLANS_FILE = "unetr_pp_Plansv2.1_plans_3D.pkl"
TRAINER = "nnUNetTrainerUNETRPP_ACDCArch"
LABELS = {"background": 0, "organ": 1, "core": 2, "rim": 3}


def _task_folder(root: Path, task: str) -> Path:
    """A v1 task folder as the preprocessed-data download has it: the plans nnU-Net v1 wrote, and dataset.json."""
    folder = root / task
    folder.mkdir()
    for name in (PLANS_FILE, "dataset.json"):
        shutil.copy(REFERENCE / task / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, Path]:
    """An ACDC-architecture v1 checkpoint (fixture weights; 1 channel, 4 classes) and the CT task folder whose
    plans (written by nnU-Net v1's planner, one CT channel, three labels) fit it."""
    root = tmp_path_factory.mktemp("published")
    return {"checkpoint": write_official_checkpoint(root / "model_final_checkpoint.model"),
            "task": _task_folder(root, CT)}


def _fingerprint(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


def test_imports_a_model_folder_nnunet_loads(published, tmp_path):
    out = tmp_path / "model"
    assert import_official(["-checkpoint", str(published["checkpoint"]), "-preprocessed", str(published["task"]),
                            "-o", str(out)]) == 0
    checkpoint = torch.load(out / "fold_0" / "checkpoint_final.pth", weights_only=True)  # plain types only
    assert checkpoint["trainer_name"] == TRAINER and checkpoint["init_args"]["configuration"] == "3d_fullres"
    plans = PlansManager(json.loads((out / "plans.json").read_text()))
    dataset_json = json.loads((out / "dataset.json").read_text())
    assert dataset_json["labels"] == LABELS
    assert checkpoint["init_args"]["plans"] == plans.plans and checkpoint["init_args"]["dataset_json"] == dataset_json
    network = nnUNetTrainerUNETRPP_ACDCArch.build_network_architecture(
        plans, plans.get_configuration("3d_fullres"), 1, 4, enable_deep_supervision=False)
    network.load_state_dict(checkpoint["network_weights"])  # strict, as nnU-Net's predictor loads it
    config = plans.get_configuration("3d_fullres")
    from_plans = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                        config.network_arch_init_kwargs_req_import, 1, 4, deep_supervision=False)
    from_plans.load_state_dict(checkpoint["network_weights"], strict=True)  # nnU-Net's own builder, the same network
    assert repr(from_plans) == repr(network)
    converted = convert_official_state_dict(official_state_dict(load_reference("acdc")), "acdc")
    assert checkpoint["network_weights"].keys() == converted.keys()
    assert all(torch.equal(checkpoint["network_weights"][k], v) for k, v in converted.items())
    assert (out / "fold_0" / "progress.png").is_file() and (out / "fold_0" / "validation" / "summary.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != "model"]  # no staging folder left behind


def _plans_with(tmp_path: Path, change) -> Path:
    """A task folder whose v1 plans pickle is the reference one after `change(plans)`."""
    task = tmp_path / "Task098_Changed"
    task.mkdir()
    shutil.copy(REFERENCE / CT / "dataset.json", task / "dataset.json")
    plans = load_pickle(REFERENCE / CT / PLANS_FILE)
    change(plans)
    (task / PLANS_FILE).write_bytes(pickle.dumps(plans))
    return task


def _truncated_plans(tmp_path: Path) -> Path:
    task = _plans_with(tmp_path, lambda plans: None)
    (task / PLANS_FILE).write_bytes((task / PLANS_FILE).read_bytes()[:700])
    return task


def _other_checkpoint(tmp_path: Path, **content) -> Path:
    """A small v1-style checkpoint that is not UNETR++'s."""
    path = tmp_path / "other.model"
    torch.save({"epoch": 3, "state_dict": {"conv_blocks_context.0.weight": torch.zeros(2, 1, 3, 3, 3)}, **content}, path)
    return path


BAD_INPUTS = {
    "missing checkpoint": (lambda p, t: ["-checkpoint", str(t / "missing.model"), "-preprocessed", str(p["task"])],
                           "does not exist"),
    "missing plans": (lambda p, t: ["-checkpoint", str(p["checkpoint"]), "-plans", str(t / "x.pkl"), "-dataset_json",
                                    str(p["task"] / "dataset.json")], "does not exist"),
    "truncated plans": (lambda p, t: ["-checkpoint", str(p["checkpoint"]), "-preprocessed",
                                      str(_truncated_plans(t))], "not a readable pickle"),
    "not UNETR++": (lambda p, t: ["-checkpoint", str(_other_checkpoint(t)), "-preprocessed", str(p["task"])],
                    "does not look like an official UNETR++ checkpoint"),
    "forbidden global in checkpoint": (lambda p, t: ["-checkpoint", str(_other_checkpoint(
        t, plot_stuff=CreatesFile(t / "ran"))), "-preprocessed", str(p["task"])], "not on the safe list"),
    "channels differ": (lambda p, t: ["-checkpoint", str(p["checkpoint"]), "-preprocessed", str(_plans_with(
        t, lambda plans: plans.update(num_modalities=2)))], "2 input channel(s)"),
    "classes differ": (lambda p, t: ["-checkpoint", str(p["checkpoint"]), "-preprocessed", str(_plans_with(
        t, lambda plans: plans.update(num_classes=13)))], "14 classes"),
    "unknown normalization": (lambda p, t: ["-checkpoint", str(p["checkpoint"]), "-preprocessed", str(_plans_with(
        t, lambda plans: plans["normalization_schemes"].update({0: "CT2"})))], "unknown v1 normalization scheme"),
    "forbidden global in plans": (lambda p, t: ["-checkpoint", str(p["checkpoint"]), "-preprocessed", str(_plans_with(
        t, lambda plans: plans.update(payload=CreatesFile(t / "ran"))))], "not on the safe list"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(published, tmp_path, capsys, case):
    make_args, message = BAD_INPUTS[case]
    args = make_args(published, tmp_path)
    before = _fingerprint(published["task"], tmp_path)
    assert import_official([*args, "-o", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "model").exists() and not (tmp_path / "ran").exists()
    assert _fingerprint(published["task"], tmp_path) == before


def _trained_model_folder(folder: Path) -> None:
    """What nnUNetv2_train leaves: plans, dataset.json, a fold with checkpoint, log and validation."""
    (folder / "fold_0" / "validation").mkdir(parents=True)
    for name, content in [("plans.json", "{}"), ("dataset.json", "{}"), ("dataset_fingerprint.json", "{}"),
                          ("fold_0/checkpoint_final.pth", "weights"), ("fold_0/training_log_2025_1_1.txt", "log"),
                          ("fold_0/validation/summary.json", "{}")]:
        (folder / name).write_text(content)


def test_overwrite_refuses_a_trained_model_folder_and_keeps_every_file(published, tmp_path, capsys):
    args = ["-checkpoint", str(published["checkpoint"]), "-preprocessed", str(published["task"])]
    trained = tmp_path / "Dataset001_Mine" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    _trained_model_folder(trained)
    before = _fingerprint(trained)
    assert import_official([*args, "-o", str(trained)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert import_official([*args, "-o", str(trained), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "was not written by nnUNetv2_unetrpp_import_official" in err
    assert _fingerprint(trained) == before and [p.name for p in trained.parent.iterdir()] == [trained.name]


def test_overwrite_replaces_an_earlier_import(published, tmp_path, capsys):
    args = ["-checkpoint", str(published["checkpoint"]), "-preprocessed", str(published["task"])]
    model = tmp_path / "model"
    assert import_official([*args, "-o", str(model)]) == 0
    (model / "fold_0" / "stale.txt").write_text("from the earlier import")
    assert import_official([*args, "-o", str(model), "--overwrite"]) == 0
    assert (model / "fold_0" / "checkpoint_final.pth").is_file() and not (model / "fold_0" / "stale.txt").exists()
    shutil.copy(REFERENCE / CT / PLANS_FILE, model / PLANS_FILE)  # replacing the folder would delete this input
    assert import_official(["-checkpoint", str(published["checkpoint"]), "-plans", str(model / PLANS_FILE),
                            "-dataset_json", str(REFERENCE / CT / "dataset.json"), "-o", str(model), "--overwrite"]) == 2
    assert "is or holds the input" in capsys.readouterr().err and (model / PLANS_FILE).is_file()


def test_install_refuses_a_taken_dataset_id_and_needs_results(published, tmp_path, monkeypatch, capsys):
    args = ["-checkpoint", str(published["checkpoint"]), "-preprocessed", str(published["task"]), "-d", "99",
            "-name", "CTLike"]
    monkeypatch.delenv("nnUNet_results", raising=False)
    assert import_official(args) == 2 and "nnUNet_results" in capsys.readouterr().err
    (tmp_path / "Dataset099_Other").mkdir()
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert import_official(args) == 2 and "already Dataset099_Other" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["Dataset099_Other"]


def _ct_like_scan(path: Path) -> None:
    """Air around a soft-tissue block with a brighter core; spacing and orientation unlike the plans'."""
    rng = np.random.default_rng(1)
    hu = np.full((40, 36, 10), -1000.0)
    hu[5:35, 6:30, 2:8] = 50 + rng.normal(0, 20, (30, 24, 6))
    hu[15:25, 12:24, 3:7] += 200
    write_image_file(hu.astype(np.int16), path, (0.9, 1.0, 3.5), (10.0, -20.0, 5.0), (0, 1, 0, 1, 0, 0, 0, 0, -1))


@pytest.mark.slow
def test_published_model_predicts_with_stock_nnunet(published, tmp_path):
    env = nnunet_env(tmp_path)
    model = tmp_path / "model"
    run(["nnUNetv2_unetrpp_import_official", "-checkpoint", str(published["checkpoint"]), "-preprocessed",
         str(published["task"]), "-o", str(model)], env)
    _ct_like_scan(tmp_path / "scans" / "case_0000.nii.gz")
    run(["nnUNetv2_predict_from_modelfolder", "-i", str(tmp_path / "scans"), "-o", str(tmp_path / "pred"), "-m",
         str(model), "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"], env)
    prediction = tmp_path / "pred" / "case.nii.gz"
    assert read_geometry(prediction) == read_geometry(tmp_path / "scans" / "case_0000.nii.gz")
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(prediction))))) <= {0, 1, 2, 3}

    # the folder's network is the official one: it reproduces the authors' recorded outputs
    plans = PlansManager(json.loads((model / "plans.json").read_text()))
    network = nnUNetTrainerUNETRPP_ACDCArch.build_network_architecture(
        plans, plans.get_configuration("3d_fullres"), 1, 4, enable_deep_supervision=False)
    network.load_state_dict(torch.load(model / "fold_0" / "checkpoint_final.pth", weights_only=True)["network_weights"])
    fixture = load_reference("acdc")
    with torch.no_grad():
        logits = network.eval()(reference_input(fixture)).reshape(-1)[sample_indices(fixture, 0)].double()
    expected = torch.tensor(fixture["deep_supervision_outputs"][0]["sample_values"], dtype=torch.float64)
    assert (logits - expected).abs().max() / expected.abs().max() < 1e-4


@pytest.mark.slow
def test_two_channel_mr_model_predicts_with_stock_nnunet(tmp_path):
    """The MR task's v1 plans (two modalities, z-score inside the nonzero mask) with a two-channel checkpoint."""
    env = nnunet_env(tmp_path)
    model = tmp_path / "model"
    checkpoint = write_official_checkpoint(tmp_path / "model_final_checkpoint.model", in_channels=2)
    run(["nnUNetv2_unetrpp_import_official", "-checkpoint", str(checkpoint), "-preprocessed",
         str(_task_folder(tmp_path, MR)), "-o", str(model)], env)
    plans = json.loads((model / "plans.json").read_text())["configurations"]["3d_fullres"]
    assert plans["normalization_schemes"] == ["ZScoreNormalization"] * 2 and plans["use_mask_for_norm"] == [True, True]
    (tmp_path / "scans").mkdir()
    for c in range(2):
        shutil.copy(REFERENCE / MR / f"scan_{c:04d}.nii.gz", tmp_path / "scans" / f"case_{c:04d}.nii.gz")
    run(["nnUNetv2_predict_from_modelfolder", "-i", str(tmp_path / "scans"), "-o", str(tmp_path / "pred"), "-m",
         str(model), "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"], env)
    prediction = tmp_path / "pred" / "case.nii.gz"
    assert read_geometry(prediction) == read_geometry(tmp_path / "scans" / "case_0000.nii.gz")
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(prediction))))) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_install_into_results_for_nnunet_predict_and_export(published, tmp_path, monkeypatch):
    env = nnunet_env(tmp_path)
    monkeypatch.setenv("nnUNet_results", env["nnUNet_results"])
    assert import_official(["-checkpoint", str(published["checkpoint"]), "-preprocessed", str(published["task"]),
                            "-d", "99", "-name", "CTLike"]) == 0
    folder = tmp_path / "results" / "Dataset099_CTLike" / f"{TRAINER}__nnUNetPlans__3d_fullres"
    assert json.loads((folder / "plans.json").read_text())["dataset_name"] == "Dataset099_CTLike"
    run(["nnUNetv2_export_model_to_zip", "-d", "99", "-o", str(tmp_path / "model.zip"), "-c", "3d_fullres", "-f", "0",
         "-tr", TRAINER], env)
    names = zipfile.ZipFile(tmp_path / "model.zip").namelist()
    assert f"Dataset099_CTLike/{TRAINER}__nnUNetPlans__3d_fullres/fold_0/checkpoint_final.pth" in names
