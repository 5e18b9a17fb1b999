"""UNETR++ geometry from an nnU-Net plan, stored in the plan itself.

Rule (documented in docs/ARCHITECTURE.md, "Geometry from the plan"): nnU-Net's downsampling steps `pool_op_kernel_sizes[1:]`
(padded with 1s to five steps) map onto UNETR++'s five: the patch-embedding stem is the product
of the first two steps, the three downsamplings are steps three to five, and deeper nnU-Net
steps are dropped. Thick-slice data, where nnU-Net does not pool along z at first, so gets an
anisotropic stem such as (1, 4, 4), as in the paper's ACDC and Lung models.

The resulting UNETRPP keyword arguments are written into
`plans["configurations"][configuration]["unetrpp"]` before nnU-Net's trainer saves the plans
to the results folder, so inference rebuilds exactly the trained network from that file.
"""
from __future__ import annotations

import numpy as np
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunetv2_unetrpp.network_architecture.unetr_pp import stage_grids

PLANS_KEY = "unetrpp"

#: Architecture defaults of the plugin's trainers: the Synapse configuration of the paper
#: (shared E/F, concatenation fusion, one conv block, attention dropout 0.15) with the corrected
#: spatial-attention layout (docs/ARCHITECTURE.md says why).
DEFAULT_ARCHITECTURE = dict(
    feature_size=16, dims=[32, 64, 128, 256], depths=[3, 3, 3, 3], decoder_depth=3, num_heads=4,
    proj_sizes=[64, 64, 64, 32], decoder_proj_size=64, attn_drop=0.15, num_conv_blocks=1,
    share_ef_projection=True, projection_bias=True, fusion="concat", spatial_layout="corrected",
)


def strides_from_pooling(pool_op_kernel_sizes: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """(stem_stride, three downsampling strides) from nnU-Net's pooling steps (see module doc)."""
    first, *steps = [np.asarray(p, dtype=int) for p in pool_op_kernel_sizes]
    ones = np.ones_like(first)
    steps = (steps + [ones] * 5)[:5]
    stem = first * steps[0] * steps[1]
    return stem.tolist(), [s.tolist() for s in steps[2:]]


def fit_patch_size(patch_size: list[int], total_stride: list[int]) -> list[int]:
    """Nearest smaller multiple of the total stride per axis, never fewer than one token."""
    return [max(t, (p // t) * t) for p, t in zip(patch_size, total_stride)]


def prepare_configuration(plans: dict, configuration: str, overrides: dict | None = None) -> list[str]:
    """Write the UNETR++ architecture (and, if needed, a fitting patch size) into `plans`.

    `overrides` may fix `patch_size`, `stem_stride`, `strides` or any UNETRPP keyword. Returns
    human-readable notes on what was changed, for the training log. Raises ValueError for
    configurations UNETR++ cannot serve.
    """
    resolved = PlansManager(plans).get_configuration(configuration)  # inheritance, old plan formats
    own = plans["configurations"][configuration]
    overrides = dict(overrides or {})
    patch = list(overrides.pop("patch_size", resolved.patch_size))
    if len(patch) not in (2, 3):
        raise ValueError(f"UNETR++ supports 2D and 3D configurations; {configuration!r} has patch size {patch}")
    if len(patch) != len(resolved.patch_size):
        raise ValueError(
            f"configuration {configuration!r} is {len(resolved.patch_size)}D but this UNETR++ variant needs a "
            f"{len(patch)}D patch {patch}: train it on a {len(patch)}d configuration"
        )
    stem, strides = strides_from_pooling(resolved.pool_op_kernel_sizes)
    stem = list(overrides.pop("stem_stride", stem))
    strides = [list(s) for s in overrides.pop("strides", strides)]
    if len(stem) != len(patch) or any(len(s) != len(patch) for s in strides):
        raise ValueError(f"stem/strides {stem}, {strides} do not match the {len(patch)}D patch size {patch}")

    notes = []
    total = (np.array(stem) * np.prod(np.array(strides), axis=0)).tolist()
    fitted = fit_patch_size(patch, total)
    if fitted != list(resolved.patch_size):
        notes.append(
            f"UNETR++: patch size {list(resolved.patch_size)} of the plans changed to {fitted} (the network needs "
            f"every axis to be a multiple of its total stride {total}: stem {stem}, downsamplings {strides}). "
            "The results folder's plans.json holds the new patch size; inference uses it."
        )
    own["patch_size"] = fitted
    arch = {**DEFAULT_ARCHITECTURE, **overrides, "stem_stride": stem, "strides": strides}
    grids = stage_grids(fitted, stem, strides)
    own[PLANS_KEY] = arch
    notes.append(f"UNETR++: patch {fitted}, stem {stem}, downsamplings {strides}, token grids {grids}")
    return notes


def architecture_from_configuration(configuration: ConfigurationManager) -> dict:
    """UNETRPP keyword arguments of a configuration; derived by the rule if the plans lack them."""
    if PLANS_KEY in configuration.configuration:
        arch = dict(configuration.configuration[PLANS_KEY])
        if "share_kv_projection" in arch:  # plans written by version 0.1.0
            arch["share_ef_projection"] = arch.pop("share_kv_projection")
        return arch
    stem, strides = strides_from_pooling(configuration.pool_op_kernel_sizes)
    return {**DEFAULT_ARCHITECTURE, "stem_stride": stem, "strides": strides}
