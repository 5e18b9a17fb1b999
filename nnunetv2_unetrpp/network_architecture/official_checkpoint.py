"""Loading the authors' checkpoints: official state_dict names (their nnU-Net v1 fork) -> this
implementation's, with the variant recognised from the tensors themselves."""
from __future__ import annotations

import re

import torch

from nnunetv2_unetrpp.network_architecture.official_variants import (
    OFFICIAL_VARIANTS,
    build_official_variant,
    get_official_variant,
)

_DECODERS = {"5": 0, "4": 1, "3": 2, "2": 3}
_RULES: list[tuple[str, str]] = [
    # encoder
    (r"^unetr_pp_encoder\.downsample_layers\.0\.0\.conv\.", "encoder.stem.0."),
    (r"^unetr_pp_encoder\.downsample_layers\.0\.1\.", "encoder.stem.1."),
    (r"^unetr_pp_encoder\.downsample_layers\.(\d)\.0\.conv\.", lambda m: f"encoder.downsamples.{int(m[1]) - 1}.0."),
    (r"^unetr_pp_encoder\.downsample_layers\.(\d)\.1\.", lambda m: f"encoder.downsamples.{int(m[1]) - 1}.1."),
    (r"^unetr_pp_encoder\.stages\.", "encoder.stages."),
    (r"^encoder1\.", "conv_branch."),
    # decoder
    (r"^decoder(\d)\.transp_conv\.conv\.", lambda m: f"decoder.stages.{_DECODERS[m[1]]}.upsample."),
    (r"^decoder2\.decoder_block\.0\.", "decoder.stages.3.blocks.0."),
    (r"^decoder(\d)\.decoder_block\.0\.", lambda m: f"decoder.stages.{_DECODERS[m[1]]}.blocks."),
    (r"^out(\d)\.conv\.conv\.", lambda m: f"decoder.seg_layers.{int(m[1]) - 1}."),
    # inside transformer blocks
    (r"\.epa_block\.E\.", ".attention.e_proj."),
    (r"\.epa_block\.F\.", ".attention.f_proj."),
    (r"\.epa_block\.EF$", ".attention.e_proj.weight"),
    (r"\.epa_block\.temperature$", ".attention.channel_temperature"),
    (r"\.epa_block\.temperature2$", ".attention.spatial_temperature"),
    (r"\.epa_block\.out_proj\.", ".attention.spatial_out."),
    (r"\.epa_block\.out_proj2\.", ".attention.channel_out."),
    (r"\.epa_block\.", ".attention."),
    (r"\.conv5(\d)\.", lambda m: f".conv_blocks.{int(m[1]) - 1}."),
    (r"\.conv8\.1\.", ".proj.1."),
    # MONAI UnetResBlock -> dynamic-network-architectures BasicBlockD
    (r"\.norm([12])\.", lambda m: f".conv{m[1]}.norm."),
    (r"\.conv3\.conv\.", ".skip.0.conv."),
    (r"\.norm3\.", ".skip.0.norm."),
]


def _rename(key: str) -> str:
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    return key


def _strip_module_prefix(state_dict: dict) -> dict:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def _as_state_dict(checkpoint: dict) -> dict:
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a checkpoint dict or a state_dict, got {type(checkpoint).__name__}")
    sd = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
    sd = _strip_module_prefix(sd)
    if not any(k.startswith("unetr_pp_encoder.") for k in sd):
        raise ValueError(
            "this does not look like an official UNETR++ checkpoint: no 'unetr_pp_encoder.*' keys "
            f"(first keys: {list(sd)[:3]})"
        )
    return sd


def identify_official_variant(checkpoint: dict) -> str:
    """Which official configuration an official checkpoint (or state_dict) belongs to."""
    sd = _as_state_dict(checkpoint)
    stem = tuple(sd["unetr_pp_encoder.downsample_layers.0.0.conv.weight"].shape)
    pos = sd.get("unetr_pp_encoder.stages.0.0.pos_embed")
    tokens = None if pos is None else pos.shape[1]
    two_conv_blocks = any(".conv52." in k for k in sd)
    shared_matrix = any(k.endswith(".epa_block.EF") for k in sd)
    for name in ("synapse", "acdc", "lung", "tumor"):
        v = OFFICIAL_VARIANTS[name]
        grid = [p // s for p, s in zip(v.patch_size, v.stem_stride)]
        if (stem[2:] == v.stem_stride and tokens == grid[0] * grid[1] * grid[2]
                and two_conv_blocks == (v.num_conv_blocks == 2) and shared_matrix == (not v.projection_bias)):
            return name
    raise ValueError(
        f"checkpoint matches no official UNETR++ variant (stem kernel {stem[2:]}, {tokens} tokens in stage 1, "
        f"{'two' if two_conv_blocks else 'one'} conv block(s), {'shared EF matrix' if shared_matrix else 'E/F Linears'})"
    )


def state_dict_aliases(model: torch.nn.Module) -> dict[str, list[str]]:
    """state_dict names grouped by tensor, first name first: nnU-Net-style blocks register modules
    under two names (`conv` and `all_modules.0`)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return {names[0]: names for names in groups.values()}


def convert_official_state_dict(checkpoint: dict, variant: str) -> dict[str, torch.Tensor]:
    """Official checkpoint (`model_final_checkpoint.model` contents or a bare state_dict, with or
    without `module.`) -> state_dict that `build_official_variant(variant)` loads strictly.

    Raises ValueError when the checkpoint belongs to another variant, saying which one.
    """
    target = get_official_variant(variant)
    sd = _as_state_dict(checkpoint)
    found = identify_official_variant(sd)
    if OFFICIAL_VARIANTS[found] != target:
        raise ValueError(f"checkpoint looks like the official {found!r} variant, not {variant!r}")

    renamed: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = _rename(key)
        if key.endswith(".epa_block.EF"):
            value = value.t().contiguous()
        if target.share_ef_projection and ".attention.f_proj." in new:
            shared = renamed.get(new.replace(".f_proj.", ".e_proj."), sd.get(key.replace(".F.", ".E.")))
            if shared is not None and not torch.equal(shared, value):
                raise ValueError(f"{key} differs from its E counterpart, but the {variant!r} variant shares E and F")
            continue
        renamed[new] = value

    in_channels = sd["unetr_pp_encoder.downsample_layers.0.0.conv.weight"].shape[1]
    num_classes = sd["out1.conv.conv.weight"].shape[0]
    with torch.device("meta"):
        model = build_official_variant(variant, num_classes=num_classes, in_channels=in_channels)
    groups = state_dict_aliases(model)
    missing = [k for k in groups if k not in renamed]
    unexpected = [k for k in renamed if k not in groups]
    if missing or unexpected:
        raise ValueError(f"cannot map the checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out = {}
    for canonical, names in groups.items():
        for name in names:
            out[name] = renamed[canonical]
    return out
