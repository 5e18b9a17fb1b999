"""nnUNetv2_unetrpp_convert_official: file to file, with clear errors that lose nothing."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import CreatesFile
from reference_fixtures import write_official_checkpoint
from nnunetv2_unetrpp.network_architecture import build_official_variant
from nnunetv2_unetrpp.pretrained.convert_official import main as convert_official_cli


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    return write_official_checkpoint(tmp_path_factory.mktemp("official") / "model_final_checkpoint.model")


def test_converts_file_to_a_loadable_state_dict(official_checkpoint, tmp_path):
    out = tmp_path / "acdc_unetrpp.pth"
    assert convert_official_cli([str(official_checkpoint), str(out), "-v", "acdc"]) == 0
    saved = torch.load(out, weights_only=False)
    assert saved["variant"] == "acdc"
    build_official_variant("acdc").load_state_dict(saved["network_weights"], strict=True)


def test_wrong_variant_says_which_variant_it_looks_like(official_checkpoint, tmp_path):
    before = official_checkpoint.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "nnunetv2_unetrpp.pretrained.convert_official", str(official_checkpoint), str(tmp_path / "x.pth"),
         "-v", "synapse"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert "looks like the official 'acdc' variant, not 'synapse'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.pth").exists() and official_checkpoint.read_bytes() == before


def test_never_overwrites_without_being_asked(official_checkpoint, tmp_path, capsys):
    out = tmp_path / "existing.pth"
    out.write_bytes(b"precious")
    assert convert_official_cli([str(official_checkpoint), str(out), "-v", "acdc"]) == 2
    assert out.read_bytes() == b"precious" and "--overwrite" in capsys.readouterr().err
    assert convert_official_cli([str(official_checkpoint), str(out), "-v", "acdc", "--overwrite"]) == 2
    assert out.read_bytes() == b"precious" and "was not written by" in capsys.readouterr().err
    assert convert_official_cli([str(official_checkpoint), str(official_checkpoint), "-v", "acdc", "--overwrite"]) == 2
    out.unlink()
    assert convert_official_cli([str(official_checkpoint), str(out), "-v", "acdc"]) == 0
    assert convert_official_cli([str(official_checkpoint), str(out), "-v", "acdc", "--overwrite"]) == 0


def test_unreadable_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "not_a_checkpoint.model"
    bad.write_text("hello")
    assert convert_official_cli([str(bad), str(tmp_path / "o.pth"), "-v", "acdc"]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert convert_official_cli([str(tmp_path / "missing.model"), str(tmp_path / "o.pth"), "-v", "acdc"]) == 2


def test_checkpoint_with_code_is_refused_unexecuted(tmp_path, capsys):
    marker, checkpoint = tmp_path / "ran", tmp_path / "model_final_checkpoint.model"
    torch.save({"state_dict": {}, "plot_stuff": CreatesFile(marker)}, checkpoint)
    assert convert_official_cli([str(checkpoint), str(tmp_path / "o.pth"), "-v", "acdc"]) == 2
    assert "not on the safe list" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "o.pth").exists()
