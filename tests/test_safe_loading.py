"""safe_loading: downloaded pickles load without running code, and what they may not name is refused, unexecuted."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CreatesFile
from reference_fixtures import write_official_checkpoint
from nnunetv2_unetrpp.safe_loading import UnsafePickleError, load_checkpoint, load_pickle

V1_PLANS = Path(__file__).resolve().parent / "data" / "v1_reference" / "Task501_CTLike" / "unetr_pp_Plansv2.1_plans_3D.pkl"


def test_real_v1_plans_pickle_loads_restricted():
    raw = V1_PLANS.read_bytes()
    assert b"numpy.core.multiarray" in raw and b"collections" in raw  # written by nnU-Net v1 under numpy 1
    plans = load_pickle(V1_PLANS)
    assert plans["plans_per_stage"][1]["current_spacing"].tolist() == pytest.approx([3.0, 0.8, 0.8])
    assert isinstance(plans["dataset_properties"]["intensityproperties"][0]["sd"], np.floating)


def test_plans_with_a_forbidden_global_are_refused_and_not_executed(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "plans.pkl"
    path.write_bytes(pickle.dumps({"plans_per_stage": {}, "payload": CreatesFile(marker)}))
    with pytest.raises(UnsafePickleError, match=r"'io\.open'.*--trust_pickles"):
        load_pickle(path)
    assert not marker.exists()
    load_pickle(path, trust=True)  # the pickle does carry code: trusting it runs it
    assert marker.exists()


def test_checkpoint_with_a_forbidden_global_is_refused_and_not_executed(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "model_final_checkpoint.model"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "plot_stuff": CreatesFile(marker)}, path)
    with pytest.raises(UnsafePickleError, match=r"open.*not on the safe list"):
        load_checkpoint(path)
    assert not marker.exists()
    load_checkpoint(path, trust=True)
    assert marker.exists()


def test_v1_checkpoint_with_numpy_scalars_loads(tmp_path):
    checkpoint = load_checkpoint(write_official_checkpoint(tmp_path / "model_final_checkpoint.model"))
    assert checkpoint["epoch"] == 1000 and isinstance(checkpoint["plot_stuff"][3][0], np.floating)


@pytest.mark.parametrize("loader, make, message", [
    (load_pickle, lambda p: p.write_bytes(V1_PLANS.read_bytes()[:900]), "is not a readable pickle"),
    (load_pickle, lambda p: p.write_text("not a pickle"), "is not a readable pickle"),
    (load_checkpoint, lambda p: p.write_bytes(torch_bytes(p)[:5000]), "is not a readable PyTorch checkpoint"),
], ids=["truncated plans", "text as plans", "truncated checkpoint"])
def test_truncated_or_corrupt_files_are_a_clear_error(tmp_path, loader, make, message):
    path = tmp_path / "file"
    make(path)
    with pytest.raises(ValueError, match=message) as info:
        loader(path)
    assert not isinstance(info.value, UnsafePickleError) and "\n" not in str(info.value)


def torch_bytes(path: Path) -> bytes:
    full = path.with_suffix(".full")
    torch.save({"state_dict": {"w": torch.arange(4000.0)}}, full)
    return full.read_bytes()
