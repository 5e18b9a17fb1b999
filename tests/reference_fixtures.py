"""The reference fixtures of the authors' UNETR++ implementation, and the weights that made them.

`data/official_<variant>.json` records what the authors' network (CPU, fp32, eval mode, deep
supervision on) outputs when every state_dict entry holds a value computed from the entry's own
key name, for an input computed the same way. The values come from a counter-based generator
(splitmix64 of `index * golden ratio + seed`, seeded by the key's sha256): no RNG state, so every
platform rebuilds them bit for bit. This module rebuilds weights, input and sample positions, so
the comparison needs nothing outside the repository.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

DATA_DIR = Path(__file__).resolve().parent / "data"
VARIANTS_WITH_OUTPUTS = ("synapse", "acdc")

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX = ((30, np.uint64(0xBF58476D1CE4E5B9)), (27, np.uint64(0x94D049BB133111EB)))
_DTYPES = {"float32": torch.float32, "int64": torch.int64}


@lru_cache(maxsize=None)
def load_reference(variant: str) -> dict:
    """The recorded fixture of one official variant (read once per session; do not mutate)."""
    path = DATA_DIR / f"official_{variant}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the reference data belongs to the repository (tests/data)")
    return json.loads(path.read_text())


def hashed_uniform(label: str, count: int) -> np.ndarray:
    """`count` float64 numbers in [0, 1) determined by `label` alone.

    x_i = splitmix64(i * golden_gamma + seed) with seed = the first 8 bytes of sha256(label) read
    little-endian, all arithmetic mod 2**64; the top 53 bits of x_i make the float.
    """
    seed = np.uint64(int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little"))
    with np.errstate(over="ignore"):
        x = np.arange(count, dtype=np.uint64) * _GOLDEN_GAMMA + seed
        for shift, multiplier in _MIX:
            x = (x ^ (x >> np.uint64(shift))) * multiplier
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def hashed_symmetric(label: str, shape: Sequence[int]) -> np.ndarray:
    """Numbers in [-1, 1) of the given shape (C order), determined by `label` alone."""
    return 2.0 * hashed_uniform(label, int(np.prod(shape, dtype=np.int64))).reshape(tuple(shape)) - 1.0


def entry_value(key: str, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fixture value of the official state_dict entry `key`: a scale suited to what the entry is
    (norm statistics near their neutral values, weights with variance 1 / fan-in), times a
    symmetric hashed pattern of the key."""
    shape = tuple(shape)
    if dtype == torch.int64:  # BatchNorm's num_batches_tracked
        return torch.zeros(shape, dtype=dtype)
    u = hashed_symmetric(key, shape)
    leaf = key.rsplit(".", 1)[-1]
    affine = {  # leaf name -> (offset, scale)
        "running_var": (1.0, 0.2), "running_mean": (0.0, 0.05), "temperature": (1.0, 0.2),
        "temperature2": (1.0, 0.2), "gamma": (0.5, 0.1), "pos_embed": (0.0, 0.02), "bias": (0.0, 0.02),
    }
    if leaf in affine:
        offset, scale = affine[leaf]
        value = offset + scale * u
    elif leaf == "EF":  # BraTS: one shared (N, p) token projection
        value = u * np.sqrt(3.0 / shape[0])
    elif leaf == "weight" and len(shape) == 1:  # affine weight of a norm layer
        value = 1.0 + 0.1 * u
    else:  # linear, conv and transposed-conv weights: uniform with variance 1 / fan_in
        if "transp_conv" in key:  # (in, out, *kernel)
            fan_in = shape[0] * int(np.prod(shape[2:], dtype=np.int64))
        else:
            fan_in = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else shape[0]
        value = u * np.sqrt(3.0 / fan_in)
    return torch.from_numpy(np.ascontiguousarray(value)).to(dtype)


def official_state_dict(fixture: dict) -> dict[str, torch.Tensor]:
    """The fixture's weights under the official key names; keys the official model shares (E and F
    of the Synapse variant) are one tensor, as there."""
    same_as = dict(fixture["shared_keys"])
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype in fixture["state_dict_keys"]:
        state[key] = state[same_as[key]] if key in same_as else entry_value(key, shape, _DTYPES[dtype])
    return state


def reference_input(fixture: dict) -> torch.Tensor:
    """The input the fixture's outputs were recorded for, (1, C, *patch) float32."""
    return torch.from_numpy(hashed_symmetric("input:" + fixture["variant"], fixture["input_shape"])).float()


def sample_indices(fixture: dict, output_index: int) -> torch.Tensor:
    """Flat indices of deep-supervision output `output_index` at which values were recorded."""
    record = fixture["deep_supervision_outputs"][output_index]
    numel = int(np.prod(record["shape"], dtype=np.int64))
    u = hashed_uniform(f"sample:{fixture['variant']}:{output_index}", len(record["sample_values"]))
    return torch.from_numpy(np.minimum((u * numel).astype(np.int64), numel - 1))


def write_official_checkpoint(path: Path, variant: str = "acdc", in_channels: int | None = None) -> Path:
    """`model_final_checkpoint.model` as the authors' nnU-Net v1 trainer saves it (network_trainer.save_checkpoint):
    the fixture's weights under `module.`, and learning curves holding numpy scalars, as v1 logs them. With
    `in_channels`, the layers that read the image (stem, encoder1) take that many channels (the first
    one's kernels repeated, scaled to keep the sum)."""
    state = official_state_dict(load_reference(variant))
    if in_channels is not None:
        for key in ("unetr_pp_encoder.downsample_layers.0.0.conv.weight", "encoder1.conv1.conv.weight",
                    "encoder1.conv3.conv.weight"):
            state[key] = state[key].repeat(1, in_channels, 1, 1, 1) / in_channels
    curves = ([1.2, 0.8], [1.3, 0.9], [1.25, 0.85], [np.float64(0.4), np.float64(0.6)])
    torch.save({"epoch": 1000, "state_dict": {"module." + k: v for k, v in state.items()},
                "optimizer_state_dict": {}, "lr_scheduler_state_dict": None, "plot_stuff": curves,
                "best_stuff": (999, 0.8, np.float64(0.6), np.float64(0.6)), "amp_grad_scaler": {"scale": 65536.0}}, path)
    return path

