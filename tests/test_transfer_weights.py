"""Moving UNETR++ weights between geometries: the rules' properties, the whole-network mapping, and
nnUNetv2_unetrpp_transfer_weights on plans written to disk (no training; the slow tier trains)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNETRPP, plans_dict
from nnunetv2_unetrpp.network_architecture import UNETRPP
from nnunetv2_unetrpp.trainers.plans_geometry import architecture_block
from nnunetv2_unetrpp.network_architecture.geometry_adaptation import (
    adapt_input_channels,
    interpolation_matrix,
    resample_positional_embedding,
    resample_token_projection,
    resize_patch_kernel,
)
from nnunetv2_unetrpp.pretrained.transfer_weights import SourceNetwork, check_compatible, main as transfer_cli, transfer_state_dict

#: (old grid, new grid): up, down, mixed, 2D; every axis has >= 2 cells so a ramp is visible on both
GRID_PAIRS = [((4, 8, 8), (8, 16, 16)), ((16, 20, 20), (8, 5, 10)), ((4, 6, 6), (2, 9, 4)), ((5, 3), (7, 2))]


def affine_field(grid, slopes, offset: float = 0.3) -> torch.Tensor:
    """offset + slopes . u over the cell centres u = (i + 0.5) / n of `grid` (float64, shape `grid`)."""
    axes = [(torch.arange(n, dtype=torch.float64) + 0.5) / n for n in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return offset + sum(s * m for s, m in zip(slopes, mesh))


def test_interpolation_matrix_is_identity_for_equal_sizes_and_keeps_ramps():
    assert torch.equal(interpolation_matrix(5, 5), torch.eye(5, dtype=torch.float64))
    for n_from, n_to in [(4, 9), (9, 4), (2, 7), (7, 2)]:
        ramp_from = affine_field((n_from,), (2.0,))
        assert torch.allclose(interpolation_matrix(n_from, n_to) @ ramp_from, affine_field((n_to,), (2.0,)), atol=1e-12)
    # inside, it is PyTorch's linear interpolation (align_corners=False)
    x = torch.randn(1, 1, 6, dtype=torch.float64)
    torch_up = torch.nn.functional.interpolate(x, size=12, mode="linear")[0, 0, 1:-1]
    assert torch.allclose((interpolation_matrix(6, 12) @ x[0, 0])[1:-1], torch_up)


@pytest.mark.parametrize("old, new", GRID_PAIRS)
def test_a_linear_ramp_positional_embedding_stays_the_same_ramp(old, new):
    slopes = torch.linspace(-1.0, 2.0, len(old)).tolist()
    channels = [affine_field(old, slopes), affine_field(old, [-s for s in slopes], 0.0)]
    pos = torch.stack([c.reshape(-1) for c in channels], dim=-1)[None].float()  # (1, N, 2)
    out = resample_positional_embedding(pos, old, new)
    assert out.shape == (1, math.prod(new), 2) and out.dtype == torch.float32
    expected = torch.stack([affine_field(new, slopes), affine_field(new, [-s for s in slopes], 0.0)], -1)
    torch.testing.assert_close(out.double(), expected.reshape(1, -1, 2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("old, new", GRID_PAIRS)
def test_token_projection_keeps_the_projection_of_constant_and_linear_fields(old, new):
    """Tolerance 1e-9 relative to the field's projection in float64: the rule is exact for affine fields."""
    weight = torch.randn(8, math.prod(old), dtype=torch.float64)
    resampled = resample_token_projection(weight, old, new)
    assert resampled.shape == (8, math.prod(new))
    for slopes in ([0.0] * len(old), torch.linspace(0.5, -1.5, len(old)).tolist()):
        before = weight @ affine_field(old, slopes).reshape(-1)
        after = resampled @ affine_field(new, slopes).reshape(-1)
        torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)
    # a field that is not affine is not kept exactly: the test above can fail
    bump = lambda g: affine_field(g, [0.0] * len(g)) * affine_field(g, [3.0] * len(g)) ** 2  # noqa: E731
    assert not torch.allclose(resampled @ bump(new).reshape(-1), weight @ bump(old).reshape(-1), rtol=1e-6)


@pytest.mark.parametrize("old_kernel, new_kernel", [((2, 4, 4), (1, 4, 4)), ((2, 4, 4), (4, 4, 4)),
                                                    ((1, 4, 4), (2, 2, 2)), ((4, 4), (2, 8))])
def test_resized_stem_keeps_its_response_to_constant_and_linear_inputs(old_kernel, new_kernel):
    weight = torch.randn(6, 2, *old_kernel, dtype=torch.float64)
    resized = resize_patch_kernel(weight, new_kernel)
    assert resized.shape == (6, 2, *new_kernel)
    linear_visible = all(n > 1 for n in new_kernel) and all(o > 1 for o in old_kernel)
    for slopes in ([0.0] * len(old_kernel), [1.5, -0.5, 2.0][:len(old_kernel)]):
        if any(slopes) and not linear_visible:
            continue  # a one-voxel axis cannot see a gradient; only constants are kept there
        response = lambda w, k: (w * affine_field(k, slopes)).flatten(2).sum(-1)  # noqa: E731
        torch.testing.assert_close(response(resized, new_kernel), response(weight, old_kernel), rtol=1e-9, atol=1e-9)
    # the stem of a patch embedding really computes that response
    x = affine_field(new_kernel, [1.0] * len(new_kernel)).expand(1, 2, *new_kernel)
    conv = torch.nn.functional.conv3d if len(new_kernel) == 3 else torch.nn.functional.conv2d
    assert torch.allclose(conv(x, resized, stride=new_kernel).flatten(), (resized * x).flatten(1).sum(-1))


def test_resized_transposed_kernel_paints_the_same_field():
    """A transposed conv whose kernel is an affine field over its output patch paints that field resampled."""
    old, new = (2, 4, 4), (1, 8, 4)
    field_old, field_new = affine_field(old, [1.0, -2.0, 0.5]), affine_field(new, [1.0, -2.0, 0.5])
    weight = field_old.expand(3, 5, *old)  # (in, out, *k)
    resized = resize_patch_kernel(weight, new, transposed=True)
    # the one z cell of the new kernel lies at the centre of the old two: the field's value there
    torch.testing.assert_close(resized, field_new.expand(3, 5, *new), atol=1e-12, rtol=0)


def test_input_channel_adaptation_keeps_the_response_to_equal_channels():
    weight = torch.randn(4, 2, 3, 3, 3, dtype=torch.float64)
    for channels in (1, 2, 4, 6):
        adapted = adapt_input_channels(weight, channels)
        assert adapted.shape == (4, channels, 3, 3, 3)
        torch.testing.assert_close(adapted.sum(1), weight.sum(1))
    assert adapt_input_channels(weight, 2) is weight


def tiny(patch, stem, channels=1, classes=3, **overrides):
    return UNETRPP(channels, classes, patch, stem_stride=stem, **{**TINY_UNETRPP, **overrides})


def source_of(network: UNETRPP, architecture=None) -> SourceNetwork:
    return SourceNetwork(network.state_dict(), network, architecture or dict(TINY_UNETRPP), "test source")


def test_same_geometry_returns_the_source_state_dict_bit_identically():
    source = tiny((32, 64, 64), (2, 4, 4))
    target = tiny((32, 64, 64), (2, 4, 4))
    out, records = transfer_state_dict(source_of(source), target)
    expected = source.state_dict()
    assert out.keys() == expected.keys()
    assert all(torch.equal(out[k], expected[k]) and out[k].dtype == expected[k].dtype for k in expected)
    assert {r["action"] for r in records} <= {"copied", "left to nnU-Net"}
    target.load_state_dict(out, strict=True)


def test_transfer_to_another_geometry_loads_strictly_and_names_every_change():
    torch.manual_seed(1)
    source = tiny((32, 64, 64), (2, 4, 4), channels=1, classes=3, share_ef_projection=False)
    target = tiny((32, 96, 64), (1, 4, 4), channels=2, classes=5, share_ef_projection=False)
    out, records = transfer_state_dict(source_of(source, {**TINY_UNETRPP, "share_ef_projection": False}), target)
    missing, unexpected = target.load_state_dict(out, strict=False)
    assert not unexpected and all(".seg_layers." in k for k in missing)  # heads of another class count: nnU-Net's
    actions = {r["tensor"]: r["action"] for r in records}
    assert actions["encoder.stem.0.weight"] == "resampled, channel-adapted"
    assert actions["conv_branch.conv1.conv.weight"] == "channel-adapted"
    assert actions["encoder.stages.0.0.pos_embed"] == actions["encoder.stages.0.0.attention.f_proj.weight"] == "resampled"
    assert actions["decoder.stages.3.upsample.weight"] == "resampled"  # the stem's transposed twin
    assert actions["encoder.downsamples.0.0.weight"] == "copied"
    assert actions["decoder.seg_layers.0.weight"] == "left to nnU-Net"
    assert actions["encoder.stages.0.0.attention.qkvv.weight"] == "copied"
    # every alias of a tensor (nnU-Net blocks register `conv` and `all_modules.0`) holds the same object
    assert out["conv_branch.conv1.conv.weight"] is out["conv_branch.conv1.all_modules.0.weight"]
    # the moved network runs
    with torch.no_grad():
        assert target.eval()(torch.randn(1, 2, 32, 96, 64))[0].shape == (1, 5, 32, 96, 64)


def test_shared_ef_projection_stays_one_tensor():
    source = tiny((32, 64, 64), (2, 4, 4))
    target = tiny((64, 64, 64), (4, 4, 4))
    out, _ = transfer_state_dict(source_of(source), target)
    assert not any(".f_proj." in k for k in out)
    target.load_state_dict(out, strict=False)
    for block in target.modules():
        if hasattr(block, "e_proj"):
            assert block.f_proj is None  # E serves F: one tensor, moved once


def test_hyperparameter_mismatch_names_each_difference_and_the_matching_trainers():
    """The ACDC/Lung architecture differs from the plugin's default in exactly three hyperparameters."""
    acdc = {"spatial_layout": "official", "share_ef_projection": False, "num_conv_blocks": 2, "attn_drop": 0.1}
    source = source_of(tiny((32, 64, 64), (2, 4, 4)), acdc)
    with pytest.raises(ValueError) as error:
        check_compatible(source, {}, (32, 64, 64), "nnUNetTrainerUNETRPP")
    message = str(error.value)
    assert "num_conv_blocks 2 vs 1" in message and "share_ef_projection False vs True" in message
    assert "spatial_layout official vs corrected" in message and "attn_drop" not in message
    assert "nnUNetTrainerUNETRPP_ACDCArch" in message and "nnUNetTrainerUNETRPP_LungArch" in message
    check_compatible(source, acdc, (16, 32, 32), "nnUNetTrainerUNETRPP_ACDCArch")  # geometry may differ
    with pytest.raises(ValueError, match="2D and 3D"):
        check_compatible(source, acdc, (64, 64), "nnUNetTrainerUNETRPP_ACDCArch")


TINY_TRAINER = f'''
from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP


class nnUNetTrainerUNETRPP_tinyTest(nnUNetTrainerUNETRPP):
    architecture_overrides = {dict(TINY_UNETRPP)!r}


class nnUNetTrainerUNETRPP_tinyTestSeparateEF(nnUNetTrainerUNETRPP):
    architecture_overrides = {dict(TINY_UNETRPP, share_ef_projection=False)!r}
'''


@pytest.fixture
def preprocessed(tmp_path, monkeypatch):
    """A planned and 'preprocessed' (folder only) Dataset777_Tiny, 2 channels and 3 labels, with a 3d_fullres
    plan of patch 16x64x64 and a thick-slice first pooling (stem 1x4x4), and a trainer folder for the tiny
    architecture in nnUNet_extTrainer."""
    import nnunetv2.paths

    from nnunetv2_unetrpp.env import ext_trainer_value

    folder = tmp_path / "preprocessed" / "Dataset777_Tiny"
    for data in ("nnUNetPlans_3d_fullres", "nnUNetPlans_2d"):
        (folder / data).mkdir(parents=True)
    strides = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    plans = plans_dict((16, 64, 64), strides, dataset_name="Dataset777_Tiny", spacing=(3.0, 0.8, 0.8))
    plans["configurations"]["2d"] = plans_dict((64, 64), [[1, 1]] + [[2, 2]] * 5, "2d")["configurations"]["2d"]
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    trainers = tmp_path / "trainers"
    trainers.mkdir()
    (trainers / "tiny_trainers.py").write_text(TINY_TRAINER)
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("nnUNet_extTrainer", ext_trainer_value("") + ":" + str(trainers))
    return folder


def nnunet_checkpoint(path: Path, network: UNETRPP, plans: dict, trainer: str = "nnUNetTrainerUNETRPP_tinyTest") -> Path:
    """A checkpoint as nnUNetTrainer.save_checkpoint writes it (numpy scalars in the log included)."""
    import numpy as np

    torch.save({"network_weights": network.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
                "logging": {"mean_fg_dice": [np.float64(0.5)], "epoch_start_timestamps": [1.0]},
                "_best_ema": np.float64(0.5), "current_epoch": 2,
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": {},
                              "device": torch.device("cpu")},
                "trainer_name": trainer, "inference_allowed_mirroring_axes": (0, 1, 2)}, path)
    return path


def source_plans(**architecture) -> dict:
    """Plans of a source dataset trained at patch 32x64x64 with stem 2x4x4 and the tiny architecture."""
    plans = plans_dict((32, 64, 64), [[1, 1, 1]] * 6, dataset_name="Dataset001_Source")
    plans["configurations"]["3d_fullres"]["architecture"] = architecture_block(
        [32, 64, 64], [2, 4, 4], [[2, 2, 2]] * 3, **{**TINY_UNETRPP, **architecture})
    return plans


def test_cli_moves_a_trained_checkpoint_into_another_plan(preprocessed, tmp_path, capsys):
    source = tiny((32, 64, 64), (2, 4, 4), channels=1, classes=4)
    checkpoint = nnunet_checkpoint(tmp_path / "checkpoint_final.pth", source, source_plans())
    out = tmp_path / "moved" / "weights.pth"
    assert transfer_cli([str(checkpoint), str(out), "-d", "Dataset777_Tiny", "-c", "3d_fullres",
                         "-tr", "nnUNetTrainerUNETRPP_tinyTest"]) == 0
    printed = capsys.readouterr().out
    assert "| resampled |" in printed and "| left to nnU-Net | 6 |" in printed
    report = json.loads((tmp_path / "moved" / "weights.transfer.json").read_text())
    assert report["target"]["stem_stride"] == [1, 4, 4] and report["target"]["patch_size"] == [16, 64, 64]
    assert report["source_geometry"]["token_grids"][0] == [16, 16, 16]
    assert report["target"]["token_grids"][0] == [16, 16, 16] and report["target"]["token_grids"][1] == [8, 8, 8]
    weights = torch.load(out, weights_only=True)["network_weights"]
    # exactly what nnUNetv2_train builds for the target, loaded as nnU-Net's -pretrained_weights does
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    target = tiny((16, 64, 64), (1, 4, 4), channels=2, classes=3)
    load_pretrained_weights(target, str(out))
    assert torch.equal(target.state_dict()["encoder.stem.0.weight"], weights["encoder.stem.0.weight"])
    assert weights["encoder.stem.0.weight"].shape == (8, 2, 1, 4, 4)


def test_cli_bad_input_is_one_line_and_writes_nothing(preprocessed, tmp_path, capsys):
    source = tiny((32, 64, 64), (2, 4, 4))
    checkpoint = nnunet_checkpoint(tmp_path / "checkpoint_final.pth", source, source_plans())
    before = checkpoint.read_bytes()
    out = tmp_path / "out.pth"

    def fails(args, message):
        assert transfer_cli([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
        assert not out.exists() and checkpoint.read_bytes() == before

    target = ["-d", "Dataset777_Tiny", "-c", "3d_fullres", "-tr", "nnUNetTrainerUNETRPP_tinyTest"]
    fails([tmp_path / "missing.pth", out, *target], "does not exist")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    fails([tmp_path / "text.pth", out, *target], "not a readable PyTorch checkpoint")
    stock = tmp_path / "stock.pth"
    torch.save({"network_weights": {"encoder.stages.0.0.convs.0.conv.weight": torch.zeros(1)},
                "trainer_name": "nnUNetTrainer", "init_args": {}}, stock)
    fails([stock, out, *target], "weights of nnUNetTrainer, not of a UNETR++ trainer")
    mislabelled = source_plans()
    mislabelled["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["patch_size"] = [64, 64, 64]
    fails([nnunet_checkpoint(tmp_path / "mislabelled.pth", source, mislabelled), out, *target],
          "do not fit the network that the file's own record (plans or variant) describes")
    torch.save({"network_weights": source.state_dict(), "init_args": {"configuration": "3d_fullres"}},
               tmp_path / "no_plans.pth")
    fails([tmp_path / "no_plans.pth", out, *target], "the plans recorded in the checkpoint (init_args) cannot be read")
    fails([checkpoint, out, "-d", "Dataset778_Missing", "-c", "3d_fullres"], "plan and preprocess")
    fails([checkpoint, out, "-d", "Dataset777_Tiny", "-c", "3d_lowres"], "has no configuration '3d_lowres'")
    fails([checkpoint, out, "-d", "Dataset777_Tiny", "-c", "2d", "-tr", "nnUNetTrainerUNETRPP_tinyTest"],
          "do not move between 2D and 3D")
    fails([checkpoint, out, *target[:4]], "dims [8, 16, 16, 32] vs [32, 64, 128, 256]")
    fails([checkpoint, out, *target[:4], "-tr", "nnUNetTrainer"], "is not a UNETR++ trainer")
    (preprocessed / "nnUNetPlans_3d_fullres").rmdir()
    fails([checkpoint, out, *target], "planned but not preprocessed")
    (preprocessed / "nnUNetPlans_3d_fullres").mkdir()
    out.write_bytes(b"precious")
    assert transfer_cli([str(checkpoint), str(out), *target]) == 2
    assert out.read_bytes() == b"precious" and "--overwrite" in capsys.readouterr().err
    assert transfer_cli([str(checkpoint), str(out), *target, "--overwrite"]) == 2  # not this command's output
    assert out.read_bytes() == b"precious" and "was not written by" in capsys.readouterr().err
    out.unlink()
    assert transfer_cli([str(checkpoint), str(out), *target]) == 0
    assert transfer_cli([str(checkpoint), str(out), *target, "--overwrite"]) == 0  # its own output: replaced


def test_cli_refuses_a_checkpoint_that_would_run_code(preprocessed, tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pth"
    torch.save({"network_weights": {}, "payload": Payload()}, evil)
    assert transfer_cli([str(evil), str(tmp_path / "o.pth"), "-d", "Dataset777_Tiny", "-c", "3d_fullres"]) == 2
    err = capsys.readouterr().err
    assert "not on the safe list" in err and "--trust_pickles" in err and not marker.exists()


def test_cli_reads_checkpoints_of_version_0_1_0(preprocessed, tmp_path):
    """0.1.0 named E/F k_proj/v_proj and the temperatures temperature/temperature2, and its plans said
    share_kv_projection; the transfer of such a checkpoint equals that of the same weights under today's names."""
    source = tiny((32, 64, 64), (2, 4, 4), share_ef_projection=False)
    today = nnunet_checkpoint(tmp_path / "today.pth", source, source_plans(share_ef_projection=False))
    old_names = {".attention.e_proj.": ".attention.k_proj.", ".attention.f_proj.": ".attention.v_proj.",
                 ".attention.channel_temperature": ".attention.temperature",
                 ".attention.spatial_temperature": ".attention.temperature2"}
    old_state = {}
    for key, value in source.state_dict().items():
        for new, old in old_names.items():
            key = key.replace(new, old)
        old_state[key] = value
    assert "encoder.stages.0.0.attention.k_proj.weight" in old_state
    plans = plans_dict((32, 64, 64), [[1, 1, 1]] * 6, dataset_name="Dataset001_Source")
    plans["configurations"]["3d_fullres"]["unetrpp"] = {**TINY_UNETRPP, "stem_stride": [2, 4, 4],  # 0.1.0's record
                                                        "strides": [[2, 2, 2]] * 3, "share_kv_projection": False}
    old = tmp_path / "old.pth"
    torch.save({**torch.load(today, weights_only=False), "network_weights": old_state,
                "init_args": {"plans": plans, "configuration": "3d_fullres"}}, old)
    target = ["-d", "Dataset777_Tiny", "-c", "3d_fullres", "-tr", "nnUNetTrainerUNETRPP_tinyTestSeparateEF"]
    assert transfer_cli([str(today), str(tmp_path / "a.pth"), *target]) == 0
    assert transfer_cli([str(old), str(tmp_path / "b.pth"), *target]) == 0
    a, b = (torch.load(tmp_path / f, weights_only=True)["network_weights"] for f in ("a.pth", "b.pth"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("variant", ["synapse", "acdc", "lung", "tumor"])
def test_each_published_variant_moves_into_its_architecture_trainer(variant, preprocessed):
    """Official weights (uninitialised values: shapes are what matters here) move into the 2-channel, 16x64x64
    plan of Dataset777 through the variant's ...Arch trainer, and load as nnU-Net loads pre-trained weights.
    The file path (convert, then the command) is the slow tier's end-to-end test."""
    from nnunetv2_unetrpp.network_architecture import build_official_variant
    from nnunetv2_unetrpp.network_architecture.official_variants import official_network_kwargs
    from nnunetv2_unetrpp.trainers.variants import PUBLISHED_ARCHITECTURE_TRAINERS
    from nnunetv2_unetrpp.pretrained.transfer_weights import target_network

    with torch.device("meta"):
        official = build_official_variant(variant)
    source = SourceNetwork(official.to_empty(device="cpu").state_dict(), official, official_network_kwargs(variant),
                           variant)
    trainer = PUBLISHED_ARCHITECTURE_TRAINERS[variant].__name__
    meta_target, architecture, _ = target_network("Dataset777_Tiny", "3d_fullres", trainer, "nnUNetPlans")
    check_compatible(source, architecture, meta_target.patch_size, trainer)
    target = UNETRPP(2, 3, meta_target.patch_size, stem_stride=meta_target.stem_stride, strides=meta_target.strides,
                     **architecture)
    weights, records = transfer_state_dict(source, target)
    assert target.patch_size == (16, 64, 64) and target.stem_stride == (1, 4, 4)
    assert {r["tensor"]: r["action"] for r in records}["encoder.stem.0.weight"].endswith("channel-adapted")
    missing, unexpected = target.load_state_dict(weights, strict=False)
    assert not unexpected and all(".seg_layers." in k for k in missing)


@pytest.mark.parametrize("trainer", ["nnUNetTrainer", "nnUNetTrainerUNETRPP_tinyTest"])
def test_target_is_the_network_the_planner_plans_name(preprocessed, trainer):
    """Plans of the UNETR++ planner: any trainer (nnU-Net's own included) builds the network they name, untouched."""
    from nnunetv2_unetrpp.pretrained.transfer_weights import target_network

    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["plans_name"] = "nnUNetUNETRPPPlans"
    plans["configurations"]["3d_fullres"]["patch_size"] = [32, 64, 64]
    plans["configurations"]["3d_fullres"]["architecture"] = architecture_block(
        [32, 64, 64], [2, 4, 4], [[2, 2, 2], [2, 2, 2], [1, 2, 2]], **TINY_UNETRPP)
    (preprocessed / "nnUNetUNETRPPPlans.json").write_text(json.dumps(plans))
    network, architecture, _ = target_network("Dataset777_Tiny", "3d_fullres", trainer, "nnUNetUNETRPPPlans")
    assert network.patch_size == (32, 64, 64) and network.stem_stride == (2, 4, 4)
    assert network.strides == [(2, 2, 2), (2, 2, 2), (1, 2, 2)]
    assert architecture["dims"] == list(TINY_UNETRPP["dims"])
