"""Sliding-window inference over one volume, as nnU-Net predicts: tiles of the patch size at a
step of half a patch, Gaussian importance weighting, test-time mirroring over every axis, fp16
autocast on CUDA, logits accumulated in fp16 on the device.

`predict_volume` runs nnU-Net's own predictor where nnunetv2 is installed. A GPU machine set up
only to benchmark may lack nnunetv2 (and SimpleITK, which it needs), and this package's network
code must not need it, so `sliding_window_logits` is a small stand-in with the same
tiling, weighting, mirroring and precision. It exists to time networks where nnU-Net is absent,
not to replace nnU-Net's predictor (no padding of small images, no OOM fallback to the CPU).
"""
from __future__ import annotations

import itertools
import math
from contextlib import nullcontext
from typing import Sequence

import torch
from torch import nn


def tile_starts(image_size: Sequence[int], patch_size: Sequence[int], step: float = 0.5) -> list[list[int]]:
    """Tile start coordinates per axis: the fewest tiles whose spacing is at most `step` of the
    patch, spread evenly from 0 to `image - patch` (nnU-Net's rule)."""
    starts = []
    for image, patch in zip(image_size, patch_size):
        if image < patch:
            raise ValueError(f"image size {tuple(image_size)} is smaller than the patch {tuple(patch_size)}")
        n = math.ceil((image - patch) / (patch * step)) + 1
        spacing = (image - patch) / (n - 1) if n > 1 else 0
        starts.append([round(spacing * i) for i in range(n)])
    return starts


def gaussian_importance(patch_size: Sequence[int], device: torch.device) -> torch.Tensor:
    """fp16 weights of a tile: a Gaussian with sigma = patch / 8 per axis, peak 10, no zeros."""
    axes = []
    for p in patch_size:
        coords = torch.arange(p, dtype=torch.float64) - p // 2
        axes.append(torch.exp(-0.5 * (coords / (p / 8)) ** 2))
    weights = math.prod(a.view(*[-1 if i == j else 1 for j in range(len(axes))]) for i, a in enumerate(axes))
    weights = (weights / weights.max() * 10).to(device=device, dtype=torch.float16)
    return weights.clamp_min(weights[weights > 0].min())


def sliding_window_logits(network: nn.Module, image: torch.Tensor, patch_size: Sequence[int], num_classes: int,
                          step: float = 0.5, mirror_axes: Sequence[int] = (0, 1, 2),
                          device: torch.device | str = "cuda") -> torch.Tensor:
    """Logits (num_classes, *spatial) of `image` (channels, *spatial) predicted tile by tile with
    `network` (eval mode, one output)."""
    device = torch.device(device)
    spatial = image.shape[1:]
    weights = gaussian_importance(patch_size, device)
    logits = torch.zeros((num_classes, *spatial), dtype=torch.float16, device=device)
    counts = torch.zeros(spatial, dtype=torch.float16, device=device)
    flips = [tuple(a + 2 for a in c) for r in range(1, len(mirror_axes) + 1)
             for c in itertools.combinations(mirror_axes, r)]
    autocast = torch.autocast("cuda") if device.type == "cuda" else nullcontext()
    network.eval()
    with torch.inference_mode(), autocast:
        for corner in itertools.product(*tile_starts(spatial, patch_size, step)):
            window = tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
            tile = image[(slice(None), *window)][None].to(device)
            prediction = network(tile)
            for axes in flips:
                prediction += torch.flip(network(torch.flip(tile, axes)), axes)
            logits[(slice(None), *window)] += prediction[0] / (len(flips) + 1) * weights
            counts[window] += weights
        return logits / counts


def predict_volume(network: nn.Module, image: torch.Tensor, patch_size: Sequence[int], num_classes: int,
                   device: torch.device | str, mirror_axes: Sequence[int] = (0, 1, 2)) -> tuple[torch.Tensor, str]:
    """Logits of `image` by nnU-Net's predictor if nnunetv2 is importable, else by
    `sliding_window_logits`; also returns which one ran."""
    try:
        from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
    except ImportError:
        return sliding_window_logits(network, image, patch_size, num_classes, 0.5, mirror_axes, device), \
            "sliding_window_logits (nnunetv2 not installed)"
    # the predictor reads only the patch size from the configuration and the labels from dataset.json
    configuration = ConfigurationManager({"patch_size": list(patch_size), "architecture": {}})
    labels = {"background": 0, **{f"class {i}": i for i in range(1, num_classes)}}
    predictor = nnunet_predictor(network, PlansManager({"configurations": {}}), configuration, {"labels": labels},
                                 torch.device(device), mirror_axes)
    return predictor.predict_sliding_window_return_logits(image), "nnU-Net's nnUNetPredictor"


def nnunet_predictor(network: nn.Module, plans_manager, configuration, dataset_json: dict, device: torch.device,
                     mirror_axes: Sequence[int]):
    """nnU-Net's nnUNetPredictor around `network`, set up as nnUNetv2_predict does: step 0.5,
    Gaussian weighting, test-time mirroring over `mirror_axes` (none if empty)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=bool(mirror_axes),
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration, None, dataset_json,
                                    type(network).__name__, tuple(mirror_axes) or None)
    return predictor
