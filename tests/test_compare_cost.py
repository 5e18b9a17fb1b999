"""Model cost of a fabricated stock nnU-Net model folder: parameters, FLOPs (independent count), epoch
time from the checkpoint's training record."""
import numpy as np
from pathlib import Path
import pytest
import torch

from compare_helpers import fake_logging, make_model_folder
from nnunetv2_unetrpp.compare.cost import compute_model_cost
from nnunetv2_unetrpp.compare.inputs import is_model_folder
from nnunetv2_unetrpp.compare.training_log import load_record, record_from_logging
from nnunetv2_unetrpp.safe_loading import UnsafePickleError


def conv_flops(network: torch.nn.Module, patch_size) -> int:
    """FLOPs of all (transposed) convolutions counted from their shapes: 2 per multiply-add."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = module.weight[0, 0].numel()
        if isinstance(module, torch.nn.ConvTranspose3d):  # every input voxel is spread to C_out * k outputs
            total += 2 * inputs[0][0].numel() * module.out_channels * k
        else:
            total += 2 * output[0].numel() * module.in_channels // module.groups * k

    handles = [m.register_forward_hook(hook) for m in network.modules()
               if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    with torch.no_grad():
        network.eval()(torch.randn(1, 1, *patch_size))
    for h in handles:
        h.remove()
    return total


def test_cost_of_stock_model_folder(tmp_path):
    folder, network = make_model_folder(tmp_path, {"background": 0, "liver": 1, "tumour": 2}, [10.5, 12.25, 11.0])
    assert is_model_folder(folder)
    cost = compute_model_cost(folder, ["fold_0"])
    assert cost["parameters"] == sum(p.numel() for p in network.parameters())
    assert cost["flops_per_patch"] > 0
    assert cost["flops_per_patch"] == conv_flops(network, cost["patch_size"])
    assert cost["patch_size"] == [8, 16, 16]
    assert (cost["trainer"], cost["configuration"]) == ("nnUNetTrainer", "3d_fullres")
    assert cost["epoch_seconds_mean"] == 11.25 and cost["epochs_logged"] == 3
    assert cost["inference_seconds_per_patch"] > 0


def test_training_record_from_checkpoint_logging(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    torch.save({"logging": fake_logging([30.0, 45.5, 20.0, 30.0, 24.5])}, fold / "checkpoint_final.pth")
    (fold / "training_log_2025_1_1_10_00_00.txt").write_text("Epoch time: 999.0 s\n")  # not the source
    record = load_record(fold)
    np.testing.assert_allclose(record.epoch_seconds, [30.0, 45.5, 20.0, 30.0, 24.5])
    np.testing.assert_allclose(record.minutes, np.cumsum([30.0, 45.5, 20.0, 30.0, 24.5]) / 60)
    assert record.training_seconds == pytest.approx(150.0) and record.pseudo_dice[-1] == pytest.approx(0.9)

    unfinished = fake_logging([10.0] * 4)
    unfinished["train_losses"].append(-1.0)  # an epoch that started but has no validation yet
    unfinished["epoch_start_timestamps"].append(unfinished["epoch_end_timestamps"][-1])
    assert len(record_from_logging(unfinished).epoch_seconds) == 4


def test_training_record_is_loaded_without_running_code(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    torch.save({"logging": fake_logging([1.0]), "extra": Path("x")}, fold / "checkpoint_final.pth")
    with pytest.raises(UnsafePickleError, match="pathlib"):
        load_record(fold)
