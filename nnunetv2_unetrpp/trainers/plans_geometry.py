"""UNETR++ in nnU-Net's plans: the `architecture` block that names the network, and the one builder.

A UNETR++ configuration's `architecture` block names `UNETRPP` with all its keyword arguments, the
ops as import paths (`_kw_requires_import`), as nnU-Net's planners write theirs. So nnU-Net's own
`get_network_from_plans` builds exactly the network, for any trainer, stock ones included.

`arch_kwargs["strides"]` are in nnU-Net's convention, one entry per resolution stage:
`[1s, stem, d1, d2, d3]` (full-resolution conv branch, patch embedding, three downsamplings).
nnU-Net reads them as `pool_op_kernel_sizes` and derives its deep-supervision targets from them:
`1/cumprod(strides)[:-1]` gives full, 1/stem, 1/(stem x d1), 1/(stem x d1 x d2); UNETR++'s three
heads (`UNETRPP.output_strides`) take the first three, and nnU-Net's halving loss weights over four
targets (the last one 0) give them 4/7, 2/7, 1/7: the paper's weights.

Stock plans (nnU-Net's CNN) get UNETR++ by a rule (docs/ARCHITECTURE.md, "Geometry from nnU-Net's pooling"):
nnU-Net's downsampling steps `pool_op_kernel_sizes[1:]` (padded with 1s to five steps) map onto
UNETR++'s five: the stem is the product of the first two steps, the three downsamplings are steps
three to five. Thick-slice data, where nnU-Net does not pool along z at first, so gets an
anisotropic stem such as (1, 4, 4), as in the paper's ACDC and Lung models.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
from dynamic_network_architectures.building_blocks.helper import (
    convert_dim_to_conv_op,
    get_matching_batchnorm,
    get_matching_dropout,
    get_matching_instancenorm,
)
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunetv2_unetrpp.network_architecture.official_variants import official_network_kwargs
from nnunetv2_unetrpp.network_architecture.unetr_pp import UNETRPP, stage_grids

NETWORK_CLASS_NAME = f"{UNETRPP.__module__}.{UNETRPP.__name__}"
#: the ops of `arch_kwargs`, written as import paths
OPS = ("conv_op", "norm_op", "block_norm_op", "nonlin", "dropout_op")
#: the private key of plans written by versions up to 0.2.0 (UNETR++ geometry next to a CNN's block)
LEGACY_PLANS_KEY = "unetrpp"
#: UNETRPP arguments that are geometry or data, not architecture hyperparameters
_NOT_HYPERPARAMETERS = {"self", "input_channels", "num_classes", "patch_size", "conv_op", "stem_stride", "strides",
                        "deep_supervision", *OPS}


def _hyperparameter_defaults() -> dict:
    """UNETRPP's own defaults (its signature is the one place they live), ops left out."""
    return {name: p.default for name, p in inspect.signature(UNETRPP.__init__).parameters.items()
            if name not in _NOT_HYPERPARAMETERS and not name.endswith("_kwargs")}


#: UNETR++ architecture hyperparameters of the plugin: UNETRPP's defaults (the paper's Synapse network with
#: the corrected spatial-attention layout; docs/ARCHITECTURE.md says why).
DEFAULT_ARCHITECTURE = _hyperparameter_defaults()


def _json(value):
    """Tuples -> lists, recursively: what plans.json holds."""
    return [_json(v) for v in value] if isinstance(value, (list, tuple)) else value


def _path(op: type | None) -> str | None:
    return None if op is None else f"{op.__module__}.{op.__name__}"


def architecture_block(patch_size: Sequence[int], stem_stride: Sequence[int], strides: Sequence[Sequence[int]],
                       **hyperparameters) -> dict:
    """The `architecture` block of a UNETR++ configuration: `network_class_name`, all `arch_kwargs`
    (patch, nnU-Net-convention strides, ops, hyperparameters) and `_kw_requires_import`.

    `strides` are the three downsampling strides; ValueError if the patch does not fit them.
    """
    ndim = len(patch_size)
    stage_grids(patch_size, stem_stride, strides)  # the patch must fit exactly: nothing is rounded later
    conv_op = convert_dim_to_conv_op(ndim)
    unknown = set(hyperparameters) - set(DEFAULT_ARCHITECTURE)
    if unknown:
        raise ValueError(f"not UNETR++ hyperparameters: {sorted(unknown)}")
    arch_kwargs = {
        "patch_size": [int(p) for p in patch_size],
        "strides": _json([[1] * ndim, stem_stride, *strides]),
        "conv_op": _path(conv_op),
        "norm_op": _path(get_matching_instancenorm(conv_op)), "norm_op_kwargs": {"eps": 1e-5, "affine": False},
        "block_norm_op": _path(get_matching_batchnorm(conv_op)), "block_norm_op_kwargs": {"eps": 1e-5, "momentum": 0.1},
        "nonlin": _path(nn.LeakyReLU), "nonlin_kwargs": {"negative_slope": 1e-2, "inplace": True},
        "dropout_op": _path(get_matching_dropout(dimension=ndim)),
        **{k: _json(v) for k, v in {**DEFAULT_ARCHITECTURE, **hyperparameters}.items()},
    }
    return {"network_class_name": NETWORK_CLASS_NAME, "arch_kwargs": arch_kwargs, "_kw_requires_import": list(OPS)}


def official_architecture(variant: str) -> dict:
    """The architecture block of a published variant's network (its geometry, the official layout)."""
    kwargs = official_network_kwargs(variant)
    return architecture_block(kwargs.pop("patch_size"), kwargs.pop("stem_stride"), kwargs.pop("strides"), **kwargs)


def names_unetrpp(configuration: dict) -> bool:
    """Whether a (resolved) configuration's architecture block names UNETR++."""
    return configuration.get("architecture", {}).get("network_class_name") == NETWORK_CLASS_NAME


def geometry(arch_kwargs: dict) -> tuple[list[int], list[int], list[list[int]]]:
    """(patch, stem, three downsampling strides) of a UNETR++ block's arch_kwargs."""
    _, stem, *strides = arch_kwargs["strides"]
    return list(arch_kwargs["patch_size"]), list(stem), [list(s) for s in strides]


def hyperparameters(arch_kwargs: dict) -> dict:
    """The architecture hyperparameters of a UNETR++ block's arch_kwargs (defaults filled in)."""
    return {k: _json(arch_kwargs.get(k, default)) for k, default in DEFAULT_ARCHITECTURE.items()}


def strides_from_pooling(pool_op_kernel_sizes: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """(stem_stride, three downsampling strides) from nnU-Net's pooling steps (see module doc)."""
    first, *steps = [np.asarray(p, dtype=int) for p in pool_op_kernel_sizes]
    ones = np.ones_like(first)
    steps = (steps + [ones] * 5)[:5]
    stem = first * steps[0] * steps[1]
    return stem.tolist(), [s.tolist() for s in steps[2:]]


def fit_patch_size(patch_size: Sequence[int], total_stride: Sequence[int]) -> list[int]:
    """Nearest smaller multiple of the total stride per axis, never fewer than one token."""
    return [int(max(t, (p // t) * t)) for p, t in zip(patch_size, total_stride)]


def _legacy_block(configuration: dict) -> dict:
    """The architecture block of a configuration written by version <= 0.2.0 (private "unetrpp" key)."""
    arch = dict(configuration[LEGACY_PLANS_KEY])
    if "share_kv_projection" in arch:  # plans written by version 0.1.0
        arch["share_ef_projection"] = arch.pop("share_kv_projection")
    return architecture_block(configuration["patch_size"], arch.pop("stem_stride"), arch.pop("strides"), **arch)


def unetrpp_architecture(configuration: dict) -> dict:
    """The UNETR++ architecture block of a resolved configuration: its own if it names UNETR++, that of a
    version <= 0.2.0 record, or (stock plans) the rule's geometry at its patch size, which must fit it."""
    if names_unetrpp(configuration):
        return configuration["architecture"]
    if LEGACY_PLANS_KEY in configuration:
        return _legacy_block(configuration)
    stem, strides = strides_from_pooling(configuration["architecture"]["arch_kwargs"]["strides"])
    return architecture_block(configuration["patch_size"], stem, strides)


def build_network(configuration: ConfigurationManager, num_input_channels: int, num_output_channels: int,
                  deep_supervision: bool = True) -> UNETRPP:
    """The UNETR++ of a configuration, through nnU-Net's `get_network_from_plans` (the one builder)."""
    block = unetrpp_architecture(configuration.configuration)
    return get_network_from_plans(block["network_class_name"], block["arch_kwargs"], block["_kw_requires_import"],
                                  num_input_channels, num_output_channels, deep_supervision=deep_supervision)


def prepare_configuration(plans: dict, configuration: str, overrides: dict | None = None) -> list[str]:
    """Make `configuration` of `plans` a UNETR++ configuration, as a UNETR++ trainer trains it.

    Plans that already name UNETR++ (the planner's) keep their geometry. Stock plans get the rule's
    stem and strides and, if needed, a patch size fitted to the network's total stride. A record of
    version <= 0.2.0 becomes an architecture block. `overrides` may fix `patch_size`, `stem_stride`,
    `strides` or any UNETRPP hyperparameter. Returns notes for the training log; ValueError for
    configurations UNETR++ cannot serve.
    """
    resolved = PlansManager(plans).get_configuration(configuration)  # inheritance, old plan formats
    own = plans["configurations"][configuration]
    overrides = dict(overrides or {})
    if names_unetrpp(resolved.configuration) or LEGACY_PLANS_KEY in resolved.configuration:
        block = unetrpp_architecture(resolved.configuration)
        patch, stem, strides = geometry(block["arch_kwargs"])
        arch = hyperparameters(block["arch_kwargs"])
    else:
        patch = list(resolved.patch_size)
        stem, strides = strides_from_pooling(resolved.pool_op_kernel_sizes)
        arch = dict(DEFAULT_ARCHITECTURE)
    planned = list(resolved.patch_size)
    patch = list(overrides.pop("patch_size", patch))
    if len(patch) not in (2, 3):
        raise ValueError(f"UNETR++ supports 2D and 3D configurations; {configuration!r} has patch size {patch}")
    if len(patch) != len(planned):
        raise ValueError(
            f"configuration {configuration!r} is {len(planned)}D but this UNETR++ variant needs a "
            f"{len(patch)}D patch {patch}: train it on a {len(patch)}d configuration"
        )
    stem = list(overrides.pop("stem_stride", stem))
    strides = [list(s) for s in overrides.pop("strides", strides)]
    if len(stem) != len(patch) or any(len(s) != len(patch) for s in strides):
        raise ValueError(f"stem/strides {stem}, {strides} do not match the {len(patch)}D patch size {patch}")

    notes = []
    total = (np.array(stem) * np.prod(np.array(strides), axis=0)).tolist()
    fitted = fit_patch_size(patch, total)
    if fitted != planned:
        notes.append(
            f"UNETR++: patch size {planned} of the plans changed to {fitted} (the network needs every axis to be a "
            f"multiple of its total stride {total}: stem {stem}, downsamplings {strides}). The results folder's "
            "plans.json holds the new patch size; inference uses it."
        )
    own.pop(LEGACY_PLANS_KEY, None)
    own["patch_size"] = fitted
    own["architecture"] = architecture_block(fitted, stem, strides, **{**arch, **overrides})
    notes.append(f"UNETR++: patch {fitted}, stem {stem}, downsamplings {strides}, "
                 f"token grids {stage_grids(fitted, stem, strides)}")
    return notes
