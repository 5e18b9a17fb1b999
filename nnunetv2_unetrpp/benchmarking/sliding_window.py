"""nnU-Net's own sliding-window inference around any network, set up as `nnUNetv2_predict` runs it
(tiles at half a patch, Gaussian weighting, test-time mirroring, fp16 autocast on CUDA), for the
benchmarks that time prediction."""
from __future__ import annotations

from typing import Sequence

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn


def nnunet_predictor(network: nn.Module, plans_manager: PlansManager, configuration: ConfigurationManager,
                     dataset_json: dict, device: torch.device, mirror_axes: Sequence[int]) -> nnUNetPredictor:
    """nnU-Net's nnUNetPredictor around `network`, set up as nnUNetv2_predict does: step 0.5,
    Gaussian weighting, test-time mirroring over `mirror_axes` (none if empty)."""
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=bool(mirror_axes),
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration, None, dataset_json,
                                    type(network).__name__, tuple(mirror_axes) or None)
    return predictor


def predict_volume(network: nn.Module, image: torch.Tensor, patch_size: Sequence[int], num_classes: int,
                   device: torch.device | str, mirror_axes: Sequence[int] = (0, 1, 2)) -> torch.Tensor:
    """Logits (num_classes, *spatial) of `image` (channels, *spatial) by nnU-Net's predictor."""
    # the predictor reads only the patch size from the configuration and the labels from dataset.json
    configuration = ConfigurationManager({"patch_size": list(patch_size), "architecture": {}})
    labels = {"background": 0, **{f"class {i}": i for i in range(1, num_classes)}}
    predictor = nnunet_predictor(network, PlansManager({"configurations": {}}), configuration, {"labels": labels},
                                 torch.device(device), mirror_axes)
    return predictor.predict_sliding_window_return_logits(image)
