"""The published UNETR++ configurations (Synapse/BTCV, ACDC, Lung, BraTS) as a table.

`build_official_variant` reproduces the architecture and geometry of a paper configuration; its
unique parameter counts equal the official ones.
"""
from __future__ import annotations

from dataclasses import dataclass

from nnunetv2_unetrpp.network_architecture.unetr_pp import UNETRPP


@dataclass(frozen=True)
class OfficialVariant:
    """What differs between the dataset configurations of the authors' code (their per-dataset network files)."""

    input_channels: int
    num_classes: int
    patch_size: tuple[int, int, int]
    stem_stride: tuple[int, int, int]
    attn_drop: float
    share_ef_projection: bool
    projection_bias: bool
    fusion: str
    num_conv_blocks: int
    unique_parameters: int


_SYNAPSE = OfficialVariant(1, 14, (64, 128, 128), (2, 4, 4), 0.15, True, True, "concat", 1, 42_952_850)
OFFICIAL_VARIANTS: dict[str, OfficialVariant] = {
    "synapse": _SYNAPSE,
    "btcv": _SYNAPSE,
    "acdc": OfficialVariant(1, 4, (16, 160, 160), (1, 4, 4), 0.1, False, True, "concat", 2, 66_796_404),
    "lung": OfficialVariant(1, 2, (32, 192, 192), (1, 4, 4), 0.1, False, True, "concat", 2, 121_174_798),
    "tumor": OfficialVariant(4, 4, (128, 128, 128), (4, 4, 4), 0.1, True, False, "sum", 1, 42_647_604),
}


def get_official_variant(name: str) -> OfficialVariant:
    """The table row of `name` (case-insensitive); ValueError listing the known variants."""
    try:
        return OFFICIAL_VARIANTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown UNETR++ variant {name!r}; choose one of {sorted(OFFICIAL_VARIANTS)}") from None


def official_network_kwargs(variant: str) -> dict:
    """UNETRPP keyword arguments of a paper configuration (without channels and classes)."""
    v = get_official_variant(variant)
    return dict(
        patch_size=v.patch_size, stem_stride=v.stem_stride, strides=[(2, 2, 2)] * 3, attn_drop=v.attn_drop,
        share_ef_projection=v.share_ef_projection, projection_bias=v.projection_bias, fusion=v.fusion,
        num_conv_blocks=v.num_conv_blocks, spatial_layout="official",
    )


def build_official_variant(
    variant: str, num_classes: int | None = None, in_channels: int | None = None, deep_supervision: bool = True
) -> UNETRPP:
    """The official architecture of `variant` ("synapse", "btcv", "acdc", "lung", "tumor").

    Uses the official spatial-attention layout so that published weights reproduce their outputs.
    """
    v = get_official_variant(variant)
    return UNETRPP(
        in_channels or v.input_channels, num_classes or v.num_classes, deep_supervision=deep_supervision,
        **official_network_kwargs(variant),
    )
