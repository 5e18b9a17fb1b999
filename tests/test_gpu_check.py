"""The GPU check: its --quick run on CPU (numbers against independent counts, ratios against its
own timings), its sliding window against nnU-Net's predictor, and that it and the network code
import without nnunetv2."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from nnunetv2_unetrpp.benchmarking import gpu_check
from nnunetv2_unetrpp.benchmarking.network_cost import count_parameters
from nnunetv2_unetrpp.benchmarking.op_count import count_training_step
from nnunetv2_unetrpp.benchmarking.sliding_window import gaussian_importance, sliding_window_logits, tile_starts
from nnunetv2_unetrpp.benchmarking.synapse import (
    NETWORKS,
    NNUNET_PLAN,
    QUICK,
    UNETRPP_FUSED,
    UNETRPP_REFERENCE,
    build_network,
)


@pytest.mark.slow
def test_quick_run_on_cpu(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_unetrpp.benchmarking.gpu_check", "--device", "cpu",
                           "--quick", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {} and results["environment"]["device"] == "cpu"
    assert results["command"].endswith(f"gpu_check --device cpu --quick -o {out}")
    assert results["environment"]["execution_path"] == "cpu fast paths"

    # the networks are the registry's, nnU-Net's planned PlainConvUNet the baseline
    baseline = build_network(QUICK, NNUNET_PLAN)
    assert results["baseline"] == NNUNET_PLAN
    assert results["networks"][NNUNET_PLAN] == {"class": "PlainConvUNet", "parameters": count_parameters(baseline)}
    assert results["networks"][UNETRPP_FUSED]["class"] == "UNETRPP"
    shape = (QUICK.batch, 1, *QUICK.patch)
    assert results["op_counts"] == {name: sum(count_training_step(lambda: build_network(QUICK, name), shape).values())
                                    for name in NETWORKS}

    # on CPU nnU-Net neither autocasts nor (by default) compiles: fp32, eager and compiled
    assert list(results["training"]) == ["fp32", "compile"]
    for mode, r in results["training"].items():
        for name in NETWORKS:
            assert len(r[name]["rounds_s"]) == results["rounds"]
            assert r[name]["train_step_s"] == statistics.median(r[name]["rounds_s"]) > 0
        goal = results["goals"][mode]
        ours, reference, base = (r[n]["train_step_s"] for n in (UNETRPP_FUSED, UNETRPP_REFERENCE, NNUNET_PLAN))
        assert goal["train_step_vs_nnunet"] == pytest.approx(ours / base)
        assert goal["speedup_vs_reference"] == pytest.approx(reference / ours)
        assert goal["train_step_vs_nnunet_met"] == (ours / base <= gpu_check.GOALS["train_step_vs_nnunet_max"])
    for name, r in results["sliding_window"].items():
        assert r["finite"] and r["sliding_window_s"] > 0 and r["predictor"] == "nnU-Net's nnUNetPredictor", name
    table = out.with_suffix(".md").read_text()
    assert f"| {NNUNET_PLAN} | PlainConvUNet | {count_parameters(baseline) / 1e6:.2f} |" in table
    assert f"| compile | {UNETRPP_FUSED} |" in table


def test_amp_on_cpu_is_refused(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--modes", "fp32", "amp", "-o", str(out)]) == 2
    assert capsys.readouterr().err == "error: modes with amp need CUDA: nnU-Net autocasts on CUDA only, not on cpu\n"
    assert not out.exists()


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
