"""Model cost of a fabricated stock nnU-Net model folder: parameters, FLOPs (independent count), epoch time."""
import torch

from compare_helpers import make_model_folder
from nnunetv2_unetrpp.compare.cost import compute_model_cost, parse_epoch_times
from nnunetv2_unetrpp.compare.inputs import is_model_folder


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


def test_parse_epoch_times(tmp_path):
    log = tmp_path / "training_log.txt"
    log.write_text("2025-01-01 10:00:00: Epoch 0\n2025-01-01 10:00:01: Epoch time: 31.7 s\n"
                   "2025-01-01 10:00:02: train_loss -0.1\nEpoch time: 2 s\nEpoch timer broken\n")
    assert parse_epoch_times([log]) == [31.7, 2.0]
