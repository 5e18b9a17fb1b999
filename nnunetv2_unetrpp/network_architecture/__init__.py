"""UNETR++ network: EPA attention, transformer blocks, the general-geometry network, and the
official variants with their checkpoint converter."""
from nnunetv2_unetrpp.network_architecture.attention import EPA, SPATIAL_LAYOUTS, TokenProjection
from nnunetv2_unetrpp.network_architecture.official_checkpoint import convert_official_state_dict, identify_official_variant
from nnunetv2_unetrpp.network_architecture.official_variants import OFFICIAL_VARIANTS, build_official_variant
from nnunetv2_unetrpp.network_architecture.transformer_block import TransformerBlock
from nnunetv2_unetrpp.network_architecture.unetr_pp import UNETRPP, stage_grids

__all__ = [
    "EPA", "SPATIAL_LAYOUTS", "TokenProjection", "TransformerBlock", "UNETRPP", "stage_grids",
    "OFFICIAL_VARIANTS", "build_official_variant", "convert_official_state_dict",
    "identify_official_variant",
]
