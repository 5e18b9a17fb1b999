"""The real nnUNetv2_* commands on a tiny generated dataset (2 channels, anisotropic spacing,
non-trivial origin and direction): plan, preprocess, train (3d_fullres and 2d), resume, --val,
predict, evaluate, ensemble with stock nnU-Net, find_best_configuration, a learning run, and
pre-trained weights into dataset 502: nnU-Net's moved-plans workflow and nnUNetv2_unetrpp_transfer_weights
into 502's own plan."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_helpers import make_toy_dataset, network_of_results_folder, nnunet_env, read_geometry, run

pytestmark = pytest.mark.slow

DATASET = 501
NAME = "Dataset501_Toy"
#: the fine-tuning target: isotropic spacing (another stem), another patch, one foreground label
TARGET, TARGET_NAME = 502, "Dataset502_Toy"

TEST_TRAINERS = textwrap.dedent('''
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP, nnUNetTrainerUNETRPP_SynapseArch
    from nnunetv2_unetrpp.trainers.settings import DeclaredSettings


    class nnUNetTrainer_toysmoke(DeclaredSettings, nnUNetTrainer):
        """Stock nnU-Net with the budget of nnUNetTrainerUNETRPP_smoke."""
        num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch = 2, 5, 2


    class nnUNetTrainerUNETRPP_frozen(nnUNetTrainerUNETRPP):
        """One iteration at learning rate 0 and no final validation: the final weights are the initial ones."""
        num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch, initial_lr = 1, 1, 1, 0.0

        def perform_actual_validation(self, save_probabilities: bool = False):
            pass


    class nnUNetTrainerUNETRPP_toylearn(nnUNetTrainerUNETRPP):
        """A short real training: 6 epochs x 10 iterations."""
        num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch = 6, 10, 2


    class nnUNetTrainerUNETRPP_toyfinetune(nnUNetTrainerUNETRPP):
        """One epoch of two iterations, no final validation: enough to load pre-trained weights and train on them."""
        num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch = 1, 2, 1

        def perform_actual_validation(self, save_probabilities: bool = False):
            pass


    class nnUNetTrainerUNETRPP_SynapseArch_toyfinetune(nnUNetTrainerUNETRPP_toyfinetune):
        """The published Synapse architecture at the plan's geometry, one short epoch."""
        architecture_overrides = nnUNetTrainerUNETRPP_SynapseArch.architecture_overrides
''')


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    make_toy_dataset(root / "raw", DATASET)
    trainers = root / "test_trainers"
    trainers.mkdir()
    (trainers / "toy_trainers.py").write_text(TEST_TRAINERS)
    env = nnunet_env(root, (trainers,))
    run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET), "-c", "3d_fullres", "2d",
         "--verify_dataset_integrity", "-np", "1", "-npfp", "1"], env)
    return root, env


def model_folder(root: Path, trainer: str, configuration: str, dataset_name: str = NAME) -> Path:
    return root / "results" / dataset_name / f"{trainer}__nnUNetPlans__{configuration}"


def train_on(dataset: int, env, configuration: str, trainer: str, *extra: str):
    return run(["nnUNetv2_train", str(dataset), configuration, "0", "-tr", trainer, "-device", "cpu", *extra], env)


def train(env, configuration: str, trainer: str, *extra: str):
    return train_on(DATASET, env, configuration, trainer, *extra)


@pytest.fixture(scope="module")
def trained(workspace):
    root, env = workspace
    for configuration in ("3d_fullres", "2d"):
        train(env, configuration, "nnUNetTrainerUNETRPP_smoke", "--npz")
    train(env, "3d_fullres", "nnUNetTrainer_toysmoke", "--npz")
    return root, env


@pytest.mark.parametrize("configuration", ["3d_fullres", "2d"])
def test_training_records_the_geometry_it_trained(trained, configuration):
    root, _ = trained
    folder = model_folder(root, "nnUNetTrainerUNETRPP_smoke", configuration)
    plans = json.loads((folder / "plans.json").read_text())["configurations"][configuration]
    stem = plans["architecture"]["arch_kwargs"]["strides"][1]
    assert len(stem) == len(plans["patch_size"]) == (3 if configuration == "3d_fullres" else 2)
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "nnUNetTrainerUNETRPP_smoke" and checkpoint["current_epoch"] == 2
    pos = checkpoint["network_weights"]["encoder.stages.0.0.pos_embed"]
    grid0 = [p // s for p, s in zip(plans["patch_size"], stem)]
    assert pos.shape[1] == int(np.prod(grid0))
    # nnU-Net's own builder, on the results folder's plans.json, builds the trained network
    network = network_of_results_folder(folder, configuration)
    network.load_state_dict(checkpoint["network_weights"], strict=True)
    assert list(network.patch_size) == plans["patch_size"]
    summary = json.loads((folder / "fold_0" / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}
    log = next((folder / "fold_0").glob("training_log_*.txt")).read_text()
    assert "UNETR++: patch" in log


def test_anisotropic_plan_gets_an_anisotropic_stem(trained):
    root, _ = trained
    plans = json.loads((model_folder(root, "nnUNetTrainerUNETRPP_smoke", "3d_fullres") / "plans.json").read_text())
    stem = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"][1]
    assert stem[0] < stem[1] == stem[2]


def test_resume_continues_from_the_latest_checkpoint(trained):
    root, env = trained
    fold = model_folder(root, "nnUNetTrainerUNETRPP_smoke", "3d_fullres") / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    checkpoint["current_epoch"] = 1  # as if interrupted after the first epoch
    torch.save(checkpoint, fold / "checkpoint_latest.pth")
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_final_first_run.pth")
    logs_before = set(fold.glob("training_log_*.txt"))
    train(env, "3d_fullres", "nnUNetTrainerUNETRPP_smoke", "--c", "--npz")
    new_log = (set(fold.glob("training_log_*.txt")) - logs_before).pop().read_text()
    assert "Epoch 1" in new_log and "Epoch 0\n" not in new_log
    resumed = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert resumed["current_epoch"] == 2


def test_val_reruns_the_validation_of_a_trained_fold(trained):
    root, env = trained
    validation = model_folder(root, "nnUNetTrainerUNETRPP_smoke", "3d_fullres") / "fold_0" / "validation"
    before = sorted(p.name for p in validation.iterdir())  # predictions, their --npz probabilities, summary
    for file in validation.iterdir():
        file.unlink()
    result = train(env, "3d_fullres", "nnUNetTrainerUNETRPP_smoke", "--val", "--npz")
    assert "Epoch " not in result.stdout  # no training, only the validation
    assert any(name.endswith(".npz") for name in before) and sorted(p.name for p in validation.iterdir()) == before
    assert set(json.loads((validation / "summary.json").read_text())["mean"]) == {"1", "2"}


def test_pretrained_weights_through_moved_plans(trained, target_dataset):
    """nnU-Net's pre-training workflow: the source dataset's plans moved to the target (502, already
    fingerprinted), which is preprocessed with them and trained from the source's weights; all but the
    segmentation heads are loaded."""
    root, env = trained
    target, plans = TARGET, "nnUNetPlans_from501"
    run(["nnUNetv2_move_plans_between_datasets", "-s", str(DATASET), "-t", str(target), "-sp", "nnUNetPlans",
         "-tp", plans], env)
    run(["nnUNetv2_preprocess", "-d", str(target), "-plans_name", plans, "-c", "3d_fullres", "-np", "1"], env)
    source = model_folder(root, "nnUNetTrainerUNETRPP_smoke", "3d_fullres") / "fold_0" / "checkpoint_final.pth"
    result = run(["nnUNetv2_train", str(target), "3d_fullres", "0", "-tr", "nnUNetTrainerUNETRPP_frozen", "-p", plans,
                  "-device", "cpu", "-pretrained_weights", str(source)], env)
    assert f"Loading pretrained weights from file  {source}" in result.stdout
    loaded = torch.load(root / "results" / TARGET_NAME / f"nnUNetTrainerUNETRPP_frozen__{plans}__3d_fullres"
                        / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    pretrained = torch.load(source, map_location="cpu", weights_only=False)["network_weights"]
    assert loaded.keys() == pretrained.keys()
    buffers = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm statistics move in training mode
    for key, value in pretrained.items():
        if ".seg_layers." in key:  # nnU-Net never loads the heads
            assert not torch.equal(loaded[key], value), key
        elif not key.endswith(buffers):
            assert torch.equal(loaded[key], value), key


def test_predict_keeps_geometry_and_evaluates(trained, tmp_path):
    root, env = trained
    images = root / "raw" / NAME / "imagesTs"
    out = tmp_path / "pred"
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET), "-c", "3d_fullres", "-f", "0",
         "-tr", "nnUNetTrainerUNETRPP_smoke", "-device", "cpu", "--disable_progress_bar", "-npp", "1", "-nps", "1"], env)
    cases = sorted(p.name.replace("_0000.nii.gz", "") for p in images.glob("*_0000.nii.gz"))
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [c + ".nii.gz" for c in cases]
    for case in cases:
        assert read_geometry(out / f"{case}.nii.gz") == read_geometry(images / f"{case}_0000.nii.gz")
        values = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz"))))
        assert set(values.tolist()) <= {0, 1, 2}
    folder = model_folder(root, "nnUNetTrainerUNETRPP_smoke", "3d_fullres")
    run(["nnUNetv2_evaluate_folder", str(root / "raw" / NAME / "labelsTs"), str(out),
         "-djfile", str(folder / "dataset.json"), "-pfile", str(folder / "plans.json"), "-np", "1"], env)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == len(cases)


def test_ensemble_of_unetrpp_and_stock_nnunet(trained, tmp_path):
    root, env = trained
    images = root / "raw" / NAME / "imagesTs"
    outputs = []
    for trainer in ("nnUNetTrainerUNETRPP_smoke", "nnUNetTrainer_toysmoke"):
        out = tmp_path / trainer
        run(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET), "-c", "3d_fullres", "-f", "0",
             "-tr", trainer, "-device", "cpu", "--save_probabilities", "--disable_tta", "--disable_progress_bar",
             "-npp", "1", "-nps", "1"], env)
        outputs.append(str(out))
    run(["nnUNetv2_ensemble", "-i", *outputs, "-o", str(tmp_path / "ensemble"), "-np", "1"], env)
    for case in images.glob("*_0000.nii.gz"):
        name = case.name.replace("_0000.nii.gz", ".nii.gz")
        assert read_geometry(tmp_path / "ensemble" / name) == read_geometry(case)


def test_find_best_configuration_with_unetrpp(trained):
    root, env = trained
    run(["nnUNetv2_find_best_configuration", str(DATASET), "-c", "3d_fullres", "2d",
         "-tr", "nnUNetTrainerUNETRPP_smoke", "-f", "0", "-np", "1"], env)
    info = json.loads((root / "results" / NAME / "inference_information.json").read_text())
    assert info["best_model_or_ensemble"]["selected_model_or_models"]
    assert all(m["trainer"] == "nnUNetTrainerUNETRPP_smoke" for m in info["best_model_or_ensemble"]["selected_model_or_models"])
    assert "nnUNetTrainerUNETRPP_smoke" in (root / "results" / NAME / "inference_instructions.txt").read_text()


def test_short_training_learns_the_toy_task(workspace):
    """A real, if short, training through the trainer: 60 iterations on CPU reach Dice >= 0.8."""
    root, env = workspace
    train(env, "3d_fullres", "nnUNetTrainerUNETRPP_toylearn")
    summary = json.loads((model_folder(root, "nnUNetTrainerUNETRPP_toylearn", "3d_fullres")
                          / "fold_0" / "validation" / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] >= 0.8, summary["mean"]


def test_missing_ext_trainer_variable_is_explained(workspace):
    _, env = workspace
    env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    with pytest.raises(AssertionError, match="nnUNet_extTrainer"):
        train(env, "3d_fullres", "nnUNetTrainerUNETRPP_smoke")
    with pytest.raises(AssertionError, match=r"eval \"\$\(nnUNetv2_unetrpp_env\)\""):
        run(["nnUNetv2_unetrpp_env", "--check"], env)


def test_ext_trainer_pointing_at_the_package_source_is_explained(workspace):
    _, env = workspace
    import nnunetv2_unetrpp
    env = {**env, "nnUNet_extTrainer": str(Path(nnunetv2_unetrpp.__file__).parent / "trainers")}
    with pytest.raises(AssertionError, match="points at the package source"):
        train(env, "3d_fullres", "nnUNetTrainerUNETRPP_smoke")


def test_benchmark_command_measures_both_networks_from_the_same_plans(workspace, tmp_path):
    root, env = workspace
    out = tmp_path / "benchmark.json"
    result = run(["nnUNetv2_unetrpp_benchmark", "-d", str(DATASET), "-c", "3d_fullres", "-device", "cpu",
                  "--repeats", "1", "--threads", "1", "--no-mirroring", "-o", str(out)], env)
    assert "| training step (s) |" in result.stdout
    report = json.loads(out.read_text())
    nets = report["networks"]
    base, ours = nets["nnUNetTrainer__nnUNetPlans"], nets["nnUNetTrainerUNETRPP__nnUNetPlans"]
    assert ours["patch_size"] == base["patch_size"] == [12, 40, 40]
    assert (base["network"], ours["network"]) == ("PlainConvUNet", "UNETRPP")
    for name, entry in nets.items():
        assert entry["median_case_shape"] == [12, 40, 40]
        assert entry["gflops_per_patch"] > 0 and entry["train_step_s"] > 0 and entry["sliding_window_s"] > 0
    # the baseline is the network nnU-Net builds from these plans
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    preprocessed = root / "preprocessed" / NAME
    architecture = json.loads((preprocessed / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]["architecture"]
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    planned = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                     architecture["_kw_requires_import"], len(dataset_json["channel_names"]),
                                     len(dataset_json["labels"]), deep_supervision=True)
    assert base["parameters"] == sum(p.numel() for p in planned.parameters())


@pytest.fixture(scope="module")
def target_dataset(workspace):
    """Dataset 502, planned and preprocessed: patch 20x48x48 and stem 4x4x4 where 501 has 12x40x40 and 2x4x4."""
    root, env = workspace
    make_toy_dataset(root / "raw", TARGET, num_train=5, num_test=1, seed=1, shape=(20, 48, 48),
                     spacing_zyx=(1.2, 1.2, 1.2), one_label=True)
    run(["nnUNetv2_plan_and_preprocess", "-d", str(TARGET), "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env)
    return root, env


def fine_tune_from(source: Path, trainer: str, root: Path, env: dict, tmp_path: Path) -> dict:
    """transfer_weights into dataset 502's plan, then nnUNetv2_train -pretrained_weights; returns the report."""
    weights = tmp_path / "transferred.pth"
    result = run(["nnUNetv2_unetrpp_transfer_weights", str(source), str(weights), "-d", str(TARGET), "-c", "3d_fullres",
                  "-tr", trainer], env)
    assert "| resampled |" in result.stdout and "| left to nnU-Net |" in result.stdout
    report = json.loads((tmp_path / "transferred.transfer.json").read_text())
    assert report["target"]["patch_size"] == [20, 48, 48] and report["target"]["stem_stride"] == [4, 4, 4]
    assert report["target"]["num_classes"] == 2
    training = train_on(TARGET, env, "3d_fullres", trainer, "-pretrained_weights", str(weights))
    assert f"Loading pretrained weights from file  {weights}" in training.stdout
    checkpoint = torch.load(model_folder(root, trainer, "3d_fullres", TARGET_NAME) / "fold_0" / "checkpoint_final.pth",
                            map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 1
    assert checkpoint["network_weights"]["encoder.stages.0.0.pos_embed"].shape[1] == 5 * 12 * 12
    return report


def test_trained_checkpoint_fine_tunes_on_a_dataset_with_another_plan(trained, target_dataset, tmp_path):
    root, env = target_dataset
    source = model_folder(root, "nnUNetTrainerUNETRPP_smoke", "3d_fullres") / "fold_0" / "checkpoint_final.pth"
    report = fine_tune_from(source, "nnUNetTrainerUNETRPP_toyfinetune", root, env, tmp_path)
    assert report["source_geometry"]["stem_stride"] == [2, 4, 4] and report["source_geometry"]["num_classes"] == 3


def test_converted_official_checkpoint_fine_tunes_on_a_dataset_with_another_plan(target_dataset, tmp_path):
    from reference_fixtures import load_reference, official_state_dict

    root, env = target_dataset
    official = tmp_path / "model_final_checkpoint.model"
    torch.save({"epoch": 1000, "state_dict": official_state_dict(load_reference("synapse")), "optimizer_state_dict": {},
                "lr_scheduler_state_dict": None, "plot_stuff": None, "best_stuff": None}, official)
    converted = tmp_path / "synapse.pth"
    run(["nnUNetv2_unetrpp_convert_official", str(official), str(converted), "-v", "synapse"], env)
    official.unlink()  # 170 MB
    report = fine_tune_from(converted, "nnUNetTrainerUNETRPP_SynapseArch_toyfinetune", root, env, tmp_path)
    assert report["source_geometry"]["patch_size"] == [64, 128, 128]
    actions = {r["tensor"]: r["action"] for r in report["tensors"]}
    assert actions["encoder.stages.0.0.attention.e_proj.weight"] == "resampled"
    assert actions["encoder.stem.0.weight"] == "resampled, channel-adapted"  # 1 -> 2 channels, 2x4x4 -> 4x4x4


#: a smaller UNETR++ than the planner's default, written into its plans as a user may: keeps the stock
#: trainer's 250 iterations short on a CPU
SMALL_ARCHITECTURE = dict(feature_size=8, dims=[8, 16, 16, 32], depths=[1, 1, 1, 1], decoder_depth=1,
                          proj_sizes=[8, 8, 8, 8], decoder_proj_size=8)


def test_planner_plans_train_and_predict_with_stock_nnunet_and_no_ext_trainer(workspace, tmp_path):
    root, env = workspace
    run(["nnUNetv2_unetrpp_plan_experiment", "-d", str(DATASET)], env)
    plans_file = root / "preprocessed" / NAME / "nnUNetUNETRPPPlans.json"
    plans = json.loads(plans_file.read_text())
    planned = plans["configurations"]["3d_fullres"]
    assert planned["data_identifier"] == "nnUNetPlans_3d_fullres"  # nnUNetPlans' preprocessed data serves
    assert planned["architecture"]["arch_kwargs"]["patch_size"] == planned["patch_size"]
    planned["architecture"]["arch_kwargs"].update(SMALL_ARCHITECTURE)
    plans_file.write_text(json.dumps(plans))

    stock = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    run(["nnUNetv2_train", str(DATASET), "3d_fullres", "0", "-p", "nnUNetUNETRPPPlans", "-tr", "nnUNetTrainer_1epoch",
         "-device", "cpu"], stock)
    folder = root / "results" / NAME / "nnUNetTrainer_1epoch__nnUNetUNETRPPPlans__3d_fullres"
    recorded = json.loads((folder / "plans.json").read_text())["configurations"]["3d_fullres"]
    assert recorded["patch_size"] == planned["patch_size"]  # the trained patch is the planned one
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "nnUNetTrainer_1epoch"
    network = network_of_results_folder(folder, "3d_fullres")
    network.load_state_dict(checkpoint["network_weights"], strict=True)
    assert type(network).__name__ == "UNETRPP" and list(network.patch_size) == planned["patch_size"]

    images = root / "raw" / NAME / "imagesTs"
    out = tmp_path / "pred"
    run(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET), "-c", "3d_fullres", "-f", "0",
         "-p", "nnUNetUNETRPPPlans", "-tr", "nnUNetTrainer_1epoch", "-device", "cpu", "--disable_progress_bar",
         "-npp", "1", "-nps", "1"], stock)
    for image in images.glob("*_0000.nii.gz"):
        prediction = out / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert read_geometry(prediction) == read_geometry(image)
