"""The GPU check: its --quick run (networks and operation counts against independent counts), the
benchmarks' sliding window (nnU-Net's predictor), and that the network code imports without nnunetv2."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch
from torch import nn

from nnunetv2_unetrpp.benchmarking import gpu_check
from nnunetv2_unetrpp.benchmarking.network_cost import count_parameters
from nnunetv2_unetrpp.benchmarking.op_count import count_training_step
from nnunetv2_unetrpp.benchmarking.sliding_window import predict_volume
from nnunetv2_unetrpp.benchmarking.synapse import (
    NETWORKS,
    NNUNET_PLAN,
    QUICK,
    UNETRPP_NETWORK,
    build_network,
)


def test_quick_run_counts_and_times_both_networks(tmp_path):
    """In process, fp32 only, no sliding window: the networks are the registry's, the baseline nnU-Net's
    planned PlainConvUNet, and the operation counts those of an independent count."""
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--modes", "fp32", "--repeats", "1",
                           "--no-sliding-window", "-o", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["errors"] == {} and results["baseline"] == NNUNET_PLAN
    baseline = build_network(QUICK, NNUNET_PLAN)
    assert results["networks"][NNUNET_PLAN] == {"class": "PlainConvUNet", "parameters": count_parameters(baseline)}
    assert results["networks"][UNETRPP_NETWORK]["class"] == "UNETRPP"
    shape = (QUICK.batch, 1, *QUICK.patch)
    assert results["op_counts"] == {name: sum(count_training_step(lambda: build_network(QUICK, name), shape).values())
                                    for name in NETWORKS}
    assert list(results["training"]) == ["fp32"] and set(results["goals"]) == {"fp32"}
    assert f"| {NNUNET_PLAN} | PlainConvUNet | {count_parameters(baseline) / 1e6:.2f} |" in out.with_suffix(".md").read_text()


def test_amp_on_cpu_is_refused(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--modes", "fp32", "amp", "-o", str(out)]) == 2
    assert capsys.readouterr().err == "error: modes with amp need CUDA: nnU-Net autocasts on CUDA only, not on cpu\n"
    assert not out.exists()


def test_predict_volume_is_nnunets_sliding_window():
    """A pointwise network: Gaussian-weighted, mirrored tiles average back to the network applied to
    the whole volume, which is not a multiple of the patch. At the volume's faces nnU-Net's fp16
    Gaussian weights are too small for that identity, so the faces are left out."""
    torch.manual_seed(0)
    network = nn.Conv3d(2, 3, 1)
    image = torch.randn(2, 24, 48, 40)
    logits = predict_volume(network, image, (16, 32, 32), 3, "cpu")
    assert logits.shape == (3, 24, 48, 40)
    with torch.no_grad():
        expected = network(image[None])[0]
    interior = (slice(None), slice(2, -2), slice(4, -4), slice(4, -4))
    torch.testing.assert_close(logits.float()[interior], expected[interior], rtol=1e-2, atol=1e-2)  # fp16 sums


def test_network_imports_without_nnunetv2():
    """The network needs only torch and dynamic-network-architectures."""
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("nnunetv2", "SimpleITK", "monai"):
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        import torch
        from nnunetv2_unetrpp.network_architecture import build_official_variant
        with torch.device("meta"):
            build_official_variant("synapse")
        assert not any(m.split(".")[0] in ("nnunetv2", "SimpleITK", "monai") for m in sys.modules)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
