"""The GPU check: its --quick smoke run on CPU, its sliding window against nnU-Net's predictor,
and that it and the network code import without nnunetv2."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from nnunetv2_unetrpp.benchmarking.gpu_check import NNUNET_PLAN, UNETRPP_FUSED, UNETRPP_REFERENCE
from nnunetv2_unetrpp.benchmarking.sliding_window import gaussian_importance, sliding_window_logits, tile_starts

NETWORKS = {UNETRPP_FUSED, UNETRPP_REFERENCE, NNUNET_PLAN}


def test_quick_run_on_cpu_writes_json_and_markdown(tmp_path):
    out = tmp_path / "check.json"
    # the budget for this run is two minutes; it takes about 30 s on 2 busy cores
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_unetrpp.benchmarking.gpu_check", "--device", "cpu",
                           "--quick", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    assert results["environment"]["execution_path"] == "cpu fast paths"
    assert set(results["op_counts"]) == NETWORKS and all(n > 100 for n in results["op_counts"].values())
    assert list(results["training"]) == ["fp32", "amp", "amp+compile"]
    for mode in results["training"].values():
        assert NETWORKS <= set(mode)
        assert all(0 < mode[n]["train_step_s"] < math.inf for n in NETWORKS)
    assert set(results["goals"]) == set(results["training"])
    for name, r in results["sliding_window"].items():
        assert r["finite"] and r["sliding_window_s"] > 0, name
    table = out.with_suffix(".md").read_text()
    assert "| amp+compile | UNETR++ |" in table and "| network | sliding window (s) |" in table


@pytest.mark.parametrize("image,patch", [((128, 256, 256), (64, 128, 128)), ((110, 50, 64), (64, 32, 32)),
                                         ((64, 40, 32), (64, 40, 32))])
def test_tiles_and_gaussian_match_nnunet(image, patch):
    sliding_window_prediction = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    assert tile_starts(image, patch) == sliding_window_prediction.compute_steps_for_sliding_window(image, patch, 0.5)
    ours = gaussian_importance(patch, torch.device("cpu"))
    theirs = sliding_window_prediction.compute_gaussian(tuple(patch), 1 / 8, 10, device=torch.device("cpu"))
    assert ours.dtype == theirs.dtype == torch.float16
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-6)


def test_sliding_window_equals_nnunet_predictor():
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    from nnunetv2_unetrpp.benchmarking.sliding_window import predict_volume

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Conv3d(3, 3, (1, 1, 5), padding=(0, 0, 2)))
    image = torch.randn(1, 24, 48, 40)
    theirs, how = predict_volume(network, image, (16, 32, 32), 3, "cpu")
    assert how == "nnU-Net's nnUNetPredictor"
    ours = sliding_window_logits(network, image, (16, 32, 32), 3, device="cpu")
    assert ours.shape == theirs.shape == (3, 24, 48, 40)
    torch.testing.assert_close(ours, theirs)
    assert ours.abs().max() > 0.1


def test_gpu_check_and_network_import_without_nnunetv2():
    """The lent GPU machines have torch and dynamic-network-architectures, but no nnunetv2,
    SimpleITK or MONAI."""
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("nnunetv2", "SimpleITK", "monai"):
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        import torch
        from nnunetv2_unetrpp.benchmarking import gpu_check
        from nnunetv2_unetrpp.benchmarking.sliding_window import predict_volume
        from nnunetv2_unetrpp.network_architecture import build_official_variant
        logits, how = predict_volume(torch.nn.Conv3d(1, 2, 1), torch.randn(1, 8, 8, 8), (4, 8, 8), 2, "cpu")
        assert how.startswith("sliding_window_logits") and logits.shape == (2, 8, 8, 8), how
        assert not any(m.split(".")[0] in ("nnunetv2", "SimpleITK", "monai") for m in sys.modules)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
