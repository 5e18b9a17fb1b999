"""`nnUNetv2_unetrpp_benchmark` on fabricated plans (any trainer/plans pair, stock ResEnc presets
included), and what every benchmark rests on: a measuring child that dies is reported, the training
step is nnU-Net's, the Synapse baseline is the network nnU-Net plans, the operation counter counts
kernels."""
from __future__ import annotations

import copy
import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from compare_helpers import tiny_dataset_json, tiny_plans
from conftest import plans_dict, write_image_file
from nnunetv2_unetrpp.benchmarking.cli import pairs
from nnunetv2_unetrpp.benchmarking.measure import MeasurementFailed, MeasureSettings, measure
from nnunetv2_unetrpp.benchmarking.op_count import OpCounter, count_training_step
from nnunetv2_unetrpp.benchmarking.synapse import NNUNET_PLAN, SYNAPSE, UNETRPP_NETWORK, build_network
from nnunetv2_unetrpp.benchmarking.training_step import TrainingStep, synthetic_loss
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
    nets = report["networks"]
    assert (nets[base]["network"], nets[ours]["network"]) == ("ResidualEncoderUNet", "UNETRPP")
    assert nets[base]["parameters"] > 0 and nets[ours]["parameters"] > 10 ** 6
    ratios = report["ratios_over_baseline"][ours]
    for key in ("parameters", "gflops_per_patch", "train_step_s"):
        assert ratios[key] == pytest.approx(nets[ours][key] / nets[base][key]), key
    assert "| training step (s) |" in result.stdout and base in result.stdout


@pytest.mark.parametrize("args, message", [
    (["-p", "nnUNetResEncUNetLPlans"], "nnUNetResEncUNetLPlans.json does not exist"),
    (["-tr", "nnUNetTrainerDoesNotExist"], "cannot find the trainer 'nnUNetTrainerDoesNotExist'"),
])
def test_user_errors_are_one_line(preprocessed, tmp_path, monkeypatch, capsys, args, message):
    for variable, value in {"nnUNet_preprocessed": preprocessed, "nnUNet_raw": tmp_path, "nnUNet_results": tmp_path,
                            "nnUNet_extTrainer": ""}.items():
        monkeypatch.setenv(variable, str(value))  # restored afterwards, also what the command sets itself
    from nnunetv2_unetrpp.benchmarking import cli

    assert cli.main(["-d", DATASET, "-c", "3d_fullres", "-device", "cpu", "--repeats", "1", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_trainer_and_plans_lists_pair_up():
    assert pairs(["A", "B"], ["P"]) == [("A", "P"), ("B", "P")]
    assert pairs(["A"], ["P", "Q"]) == [("A", "P"), ("A", "Q")]
    assert pairs(["A", "B"], ["P", "Q"]) == [("A", "P"), ("B", "Q")]
    with pytest.raises(UserError, match="-tr has 3 trainers and -p 2 plans"):
        pairs(["A", "B", "C"], ["P", "Q"])


@pytest.mark.parametrize("factory, message", [
    (functools.partial(signal.raise_signal, signal.SIGKILL), "killed by signal 9 (SIGKILL): out of memory?"),
    (functools.partial(os._exit, 3), "exited with status 3 without a result"),
])
def test_a_dying_child_is_reported_not_waited_for(factory, message):
    with pytest.raises(MeasurementFailed) as failed:
        measure("doomed", factory, {}, (1, 1, 4, 4, 4), MeasureSettings("forward", flops=False))
    assert str(failed.value) == f"measuring doomed (forward) failed: {message}"
    assert isinstance(failed.value, UserError)  # the commands print it as one line `error: ...`


def test_training_step_is_nnunets(monkeypatch, tmp_path):
    """Our step and nnUNetTrainer's own `configure_optimizers` + `train_step` (with the same loss,
    large enough for the gradient clipping to act) leave the same weights after three steps."""
    from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module

    monkeypatch.setenv("nnUNet_results", str(tmp_path))  # the trainer makes its output folder there
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}, "numTraining": 2,
                    "file_ending": ".nii.gz"}
    trainer = trainer_module.nnUNetTrainer(plans_dict((8, 16, 16), [[1, 1, 1], [2, 2, 2]]), "3d_fullres", 0,
                                           dataset_json, torch.device("cpu"))
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.LeakyReLU(), nn.Conv3d(4, 2, 1))
    theirs = copy.deepcopy(ours)
    loss = lambda output: 1e4 * synthetic_loss(output)  # noqa: E731
    trainer.network, trainer.loss = theirs, lambda output, target: loss(output)
    trainer.optimizer, _ = trainer.configure_optimizers()
    step = TrainingStep(ours, "cpu", loss=loss)
    initial = copy.deepcopy(ours)
    for seed in range(3):
        x = torch.randn(2, 1, 6, 8, 8, generator=torch.Generator().manual_seed(seed))
        norm_before_clipping = torch.nn.utils.get_total_norm(
            torch.autograd.grad(loss(theirs(x)), list(theirs.parameters())))
        assert norm_before_clipping > 12
        trainer.train_step({"data": x, "target": torch.zeros(1)})
        step(x)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(ours[0].weight, initial[0].weight)  # the steps moved the weights


@pytest.mark.slow
def test_synapse_baseline_is_the_network_nnunet_plans(tmp_path):
    """nnUNetv2_plan_experiment on the fingerprint of Synapse-like data (five cases of 64x128x128
    voxels at 3x0.9x0.9 mm, one CT channel, 14 classes) plans exactly `SYNAPSE`'s baseline."""
    from nnunet_helpers import nnunet_env, run

    name = "Dataset988_SynapseLike"
    raw, preprocessed = tmp_path / "raw" / name, tmp_path / "preprocessed" / name
    for folder in (raw / "imagesTr", raw / "labelsTr", preprocessed):
        folder.mkdir(parents=True)
    labels = {"background": 0, **{f"organ{i}": i for i in range(1, 14)}}
    write_image_file(torch.zeros(4, 8, 8).numpy(), raw / "imagesTr" / "case_0000.nii.gz", (3.0, 0.9, 0.9))
    write_image_file(torch.zeros(4, 8, 8).numpy(), raw / "labelsTr" / "case.nii.gz", (3.0, 0.9, 0.9))
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 5,
                                                  "file_ending": ".nii.gz"}))
    fingerprint = {"spacings": [[3.0, 0.9, 0.9]] * 5, "shapes_after_crop": [[64, 128, 128]] * 5,
                   "median_relative_size_after_cropping": 1.0,
                   "foreground_intensity_properties_per_channel": {"0": {
                       "max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0, "percentile_00_5": -1.0,
                       "percentile_99_5": 1.0, "std": 0.5}}}
    (preprocessed / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    run(["nnUNetv2_plan_experiment", "-d", "988"], nnunet_env(tmp_path))
    plan = json.loads((preprocessed / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    assert plan["patch_size"] == list(SYNAPSE.patch) and plan["batch_size"] == SYNAPSE.batch

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    architecture = plan["architecture"]
    planned = get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                     architecture["_kw_requires_import"], 1, len(labels), deep_supervision=True)
    ours = build_network(SYNAPSE, NNUNET_PLAN)
    assert type(ours) is type(planned) and str(ours) == str(planned)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in planned.state_dict().items()}


def test_op_counter_counts_kernels_not_views():
    x = torch.empty(4, 3, device="meta")
    with OpCounter() as counter:
        (x.t().unsqueeze(0) * 2).sum()
    assert counter.counts == {"mul": 1, "sum": 1}


def test_benchmark_replaces_only_its_own_results_file(tmp_path, capsys):
    """-o is checked before anything is measured: a file the benchmark did not write stays, with or without
    --overwrite; one it wrote (its stamp) is replaceable (here the run then stops at the missing dataset)."""
    from nnunetv2_unetrpp.benchmarking.cli import main
    from nnunetv2_unetrpp.own_output import stamp

    existing = tmp_path / "results.json"
    existing.write_text('{"mine": 1}')
    for extra, message in (([], "exists; pass --overwrite"), (["--overwrite"], "was not written by")):
        assert main(["-d", "999", "-c", "3d_fullres", "-o", str(existing), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and existing.read_text() == '{"mine": 1}'
    existing.write_text(json.dumps(stamp("nnUNetv2_unetrpp_benchmark")))
    assert main(["-d", "999", "-c", "3d_fullres", "-o", str(existing), "--overwrite"]) == 2
    assert "was not written by" not in capsys.readouterr().err


def test_unetrpp_plans_give_the_named_network_to_any_trainer(monkeypatch):
    """`-p` with plans of the UNETR++ planner: nnU-Net's own trainer and the UNETR++ trainer measure the same network."""
    from nnunetv2_unetrpp.benchmarking.network_cost import network_from_plans
    from nnunetv2_unetrpp.env import ext_trainer_value

    monkeypatch.setenv("nnUNet_extTrainer", ext_trainer_value(""))  # as the benchmark command sets it
    from nnunetv2_unetrpp.trainers.plans_geometry import architecture_block

    plans = copy.deepcopy(tiny_plans())
    config = plans["configurations"]["3d_fullres"]
    config["architecture"] = architecture_block(config["patch_size"], [1, 2, 2], [[2, 2, 2], [1, 1, 1], [1, 1, 1]],
                                                dims=[8, 16, 16, 32], feature_size=8, proj_sizes=[8, 8, 8, 8])
    dataset_json = tiny_dataset_json({"background": 0, "a": 1, "b": 2})
    with torch.device("meta"):
        stock = network_from_plans(plans, dataset_json, "3d_fullres", "nnUNetTrainer")
        ours = network_from_plans(plans, dataset_json, "3d_fullres", "nnUNetTrainerUNETRPP")
    assert type(stock).__name__ == type(ours).__name__ == "UNETRPP"
    assert list(stock.patch_size) == config["patch_size"] and stock.stem_stride == (1, 2, 2)
    assert {k: v.shape for k, v in stock.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_synapse_training_step_on_a_non_cpu_device_is_lean():
    """At most 3,700 aten operations per Synapse training step at batch 2 on the meta device, which
    dispatches what a GPU does (docs/BENCHMARKS.md)."""
    shape = (SYNAPSE.batch, 1, *SYNAPSE.patch)
    counts = count_training_step(lambda: build_network(SYNAPSE, UNETRPP_NETWORK), shape)
    assert counts["convolution"] > 0 and sum(counts.values()) <= 3700, sum(counts.values())


def test_end_to_end_benchmark_needs_two_checkouts(tmp_path, capsys):
    from nnunetv2_unetrpp.benchmarking import end_to_end

    assert end_to_end.main(["--before", str(tmp_path), "--no-demo"]) == 2
    assert capsys.readouterr().err == (f"error: --before {tmp_path} is not a checkout of this package (no "
                                       "nnunetv2_unetrpp/__init__.py); make one with: git worktree add /tmp/before 0a355ef\n")
