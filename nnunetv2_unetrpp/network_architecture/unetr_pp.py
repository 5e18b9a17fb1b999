"""UNETR++ (Shaker et al., IEEE TMI 2024) for any patch size, 2D or 3D.

Hierarchical encoder (stem patch embedding + three downsamplings, each followed by EPA
transformer blocks), a full-resolution residual conv branch, and a decoder that upsamples with
transposed convolutions and ADDS the skip features. Heads exist at full resolution, 1/stem and
1/(stem x first downsampling stride) (`UNETRPP.output_strides`); all three always exist so one
state_dict loads with deep supervision on or off.

Positional embeddings and the token projections E/F are sized by the token count of their
stage, so a network accepts exactly the patch size it was built for.
"""
from __future__ import annotations

import math
import re
from typing import Sequence, Type

import numpy as np
import torch
from dynamic_network_architectures.architectures.abstract_arch import AbstractDynamicNetworkArchitectures
from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim,
    get_matching_batchnorm,
    get_matching_convtransp,
    get_matching_dropout,
    get_matching_instancenorm,
)
from torch import nn
from torch.nn.modules.conv import _ConvNd

from nnunetv2_unetrpp.network_architecture.attention import TokenProjection
from nnunetv2_unetrpp.network_architecture.transformer_block import TransformerBlock, residual_conv_block

Size = Sequence[int]


def stage_grids(patch_size: Size, stem_stride: Size, strides: Sequence[Size]) -> list[tuple[int, ...]]:
    """Token grid of every encoder stage; ValueError naming working patch sizes if one is not whole."""
    total = np.array(stem_stride, dtype=int)
    factors = [total.copy()]
    for s in strides:
        total = total * np.array(s, dtype=int)
        factors.append(total.copy())
    patch = np.array(patch_size, dtype=int)
    if len(patch) != len(total):
        raise ValueError(f"patch_size {tuple(patch_size)} has {len(patch)} axes, the strides have {len(total)}")
    if np.any(patch % total) or np.any(patch < total):
        lower = tuple(int(max(t, (p // t) * t)) for p, t in zip(patch, total))
        upper = tuple(int(-(-p // t) * t) for p, t in zip(patch, total))
        raise ValueError(
            f"patch size {tuple(int(p) for p in patch)} does not fit UNETR++ with stem stride "
            f"{tuple(stem_stride)} and downsampling strides {[tuple(s) for s in strides]}: every axis must be a "
            f"positive multiple of the total stride {tuple(int(t) for t in total)}. Patch sizes that work: "
            f"{lower} or {upper}."
        )
    return [tuple(int(p // f) for p, f in zip(patch, fac)) for fac in factors]


#: state_dict names of version 0.1.0 (key/value projections, temperature/temperature2) -> current names
_RENAMED_AFTER_0_1 = [(re.compile(pattern), new) for pattern, new in (
    (r"\.attention\.k_proj\.", ".attention.e_proj."),
    (r"\.attention\.v_proj\.", ".attention.f_proj."),
    (r"\.attention\.temperature$", ".attention.channel_temperature"),
    (r"\.attention\.temperature2$", ".attention.spatial_temperature"),
)]


def current_state_dict_name(key: str) -> str:
    """The current name of a state_dict key that may come from a version 0.1.0 checkpoint."""
    for pattern, new in _RENAMED_AFTER_0_1:
        key = pattern.sub(new, key)
    return key


def _group_norm(groups: int, channels: int) -> nn.GroupNorm:
    """GroupNorm with the official group count (the conv's input channels) where it divides the
    channels; otherwise their gcd (e.g. 3 input channels, or a cascade's image + one-hot channels),
    which the official code cannot run at all."""
    return nn.GroupNorm(groups if channels % groups == 0 else math.gcd(groups, channels), channels)


class UpBlock(nn.Module):
    """Transposed conv (kernel = stride), add the skip, then `blocks`."""

    def __init__(self, upsample: nn.Module, blocks: nn.Sequential) -> None:
        super().__init__()
        self.upsample = upsample
        self.blocks = blocks

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.upsample(x) + skip)


class Encoder(nn.Module):
    """Patch embedding and three downsamplings, each followed by a stage of transformer blocks."""

    def __init__(self, stem: nn.Module, downsamples: nn.ModuleList, stages: nn.ModuleList) -> None:
        super().__init__()
        self.stem, self.downsamples, self.stages = stem, downsamples, stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stages[0](self.stem(x))]
        for down, stage in zip(self.downsamples, self.stages[1:]):
            features.append(stage(down(features[-1])))
        return features


class Decoder(nn.Module):
    """Up blocks from the deepest stage to full resolution, and the segmentation heads.

    `seg_layers` and `deep_supervision` carry nnU-Net's names, so its stock
    `set_deep_supervision_enabled` and `-pretrained_weights` (which skips '.seg_layers.') work.
    """

    def __init__(self, stages: nn.ModuleList, seg_layers: nn.ModuleList, deep_supervision: bool) -> None:
        super().__init__()
        self.stages, self.seg_layers, self.deep_supervision = stages, seg_layers, deep_supervision

    def forward(self, features: list[torch.Tensor], full_resolution: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        h = features[-1]
        decoded = []
        for stage, skip in zip(self.stages, [*features[-2::-1], full_resolution]):
            h = stage(h, skip)
            decoded.append(h)
        if not self.deep_supervision:
            return self.seg_layers[0](decoded[-1])
        # heads at full resolution, 1/stem and 1/(stem x first downsampling stride)
        return [head(f) for f, head in zip(decoded[:0:-1], self.seg_layers)]


class UNETRPP(AbstractDynamicNetworkArchitectures):
    """UNETR++ with general geometry.

    Args:
        input_channels, num_classes: as in nnU-Net.
        patch_size: the one input size the network accepts.
        conv_op: nn.Conv3d or nn.Conv2d; the other ops default to its matching ones.
        stem_stride: kernel = stride of the patch embedding, per axis (paper: (2,4,4), (1,4,4), (4,4,4)).
        strides: the three downsampling strides, per axis (paper: 2 everywhere); or, without stem_stride,
            nnU-Net's per-stage strides as plans hold them: [1s, stem, d1, d2, d3].
        feature_size: channels of the full-resolution branch; dims: channels of the 4 stages.
        depths: transformer blocks per encoder stage; decoder_depth: per decoder stage (3 of them).
        num_heads; proj_sizes: p of the 4 encoder stages; decoder_proj_size: p of the decoder.
        attn_drop, proj_drop: dropout on attention maps / before the 1x1 conv of each block.
        num_conv_blocks: residual conv blocks per transformer block (ACDC/Lung: 2).
        share_ef_projection, projection_bias, fusion, spatial_layout: see `EPA`.
        norm_op/norm_op_kwargs: the full-resolution conv blocks (InstanceNorm, affine=False);
        block_norm_op/block_norm_op_kwargs: the conv blocks inside transformer blocks (BatchNorm);
        nonlin/nonlin_kwargs: LeakyReLU(0.01); dropout_op: channel dropout before the 1x1 convs.
        deep_supervision: return logits at `output_strides` (full, 1/stem, 1/(stem x strides[0]))
            instead of full only.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        patch_size: Size,
        conv_op: Type[_ConvNd] = nn.Conv3d,
        stem_stride: Size | None = None,
        strides: Sequence[Size] | None = None,
        feature_size: int = 16,
        dims: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (3, 3, 3, 3),
        decoder_depth: int = 3,
        num_heads: int = 4,
        proj_sizes: Sequence[int] = (64, 64, 64, 32),
        decoder_proj_size: int = 64,
        attn_drop: float = 0.15,
        proj_drop: float = 0.1,
        num_conv_blocks: int = 1,
        share_ef_projection: bool = True,
        projection_bias: bool = True,
        fusion: str = "concat",
        spatial_layout: str = "corrected",
        norm_op: Type[nn.Module] | None = None,
        norm_op_kwargs: dict | None = None,
        block_norm_op: Type[nn.Module] | None = None,
        block_norm_op_kwargs: dict | None = None,
        nonlin: Type[nn.Module] = nn.LeakyReLU,
        nonlin_kwargs: dict | None = None,
        dropout_op: Type[nn.Module] | None = None,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        self.key_to_encoder = "encoder"
        self.key_to_stem = "encoder.stem"
        self.keys_to_in_proj = ("encoder.stem.0", "conv_branch.conv1.conv")
        self.key_to_lpe = None  # one positional embedding per block, sized by its stage's tokens
        ndim = convert_conv_op_to_dim(conv_op)
        if stem_stride is None and strides is not None and len(strides) == 5:  # nnU-Net's convention
            full_resolution, stem_stride, *strides = strides
            if any(s != 1 for s in full_resolution):
                raise ValueError(f"nnU-Net-convention strides start with the full-resolution stage (1s), got {strides}")
        stem_stride = tuple(stem_stride or (4,) * ndim)
        strides = [tuple(s) for s in (strides or [(2,) * ndim] * 3)]
        if len(dims) != 4 or len(depths) != 4 or len(proj_sizes) != 4 or len(strides) != 3:
            raise ValueError("UNETR++ has 4 encoder stages: dims, depths, proj_sizes need 4 entries, strides 3")
        if len(stem_stride) != ndim or any(len(s) != ndim for s in strides):
            raise ValueError(f"stem_stride and strides need {ndim} entries each for {conv_op.__name__}")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.grids = stage_grids(self.patch_size, stem_stride, strides)
        self.stem_stride, self.strides = stem_stride, strides
        self.input_channels, self.num_classes = input_channels, num_classes

        norm_op = norm_op or get_matching_instancenorm(conv_op)
        norm_op_kwargs = {"eps": 1e-5, "affine": False} if norm_op_kwargs is None else norm_op_kwargs
        block_norm_op = block_norm_op or get_matching_batchnorm(conv_op)
        block_norm_op_kwargs = {"eps": 1e-5, "momentum": 0.1} if block_norm_op_kwargs is None else block_norm_op_kwargs
        nonlin_kwargs = {"negative_slope": 1e-2, "inplace": True} if nonlin_kwargs is None else nonlin_kwargs
        dropout_op = dropout_op or get_matching_dropout(dimension=ndim)  # its conv_op= form ignores conv_op
        transp_op = get_matching_convtransp(conv_op)

        def transformer_stage(num_tokens: int, channels: int, proj_size: int, depth: int) -> nn.Sequential:
            return nn.Sequential(*[
                TransformerBlock(
                    num_tokens, channels, proj_size, num_heads, conv_op, block_norm_op, block_norm_op_kwargs,
                    nonlin, nonlin_kwargs, dropout_op, num_conv_blocks=num_conv_blocks, attn_drop=attn_drop,
                    proj_drop=proj_drop, share_ef_projection=share_ef_projection, projection_bias=projection_bias,
                    fusion=fusion, spatial_layout=spatial_layout,
                )
                for _ in range(depth)
            ])

        tokens = [int(np.prod(g)) for g in self.grids]
        # GroupNorm(num_groups = input channels of the conv) after each patch embedding, as officially.
        self.encoder = Encoder(
            stem=nn.Sequential(
                conv_op(input_channels, dims[0], kernel_size=stem_stride, stride=stem_stride, bias=False),
                _group_norm(input_channels, dims[0]),
            ),
            downsamples=nn.ModuleList([
                nn.Sequential(conv_op(dims[i], dims[i + 1], kernel_size=s, stride=s, bias=False),
                              _group_norm(dims[i], dims[i + 1]))
                for i, s in enumerate(strides)
            ]),
            stages=nn.ModuleList([transformer_stage(tokens[i], dims[i], proj_sizes[i], depths[i]) for i in range(4)]),
        )
        self.conv_branch = residual_conv_block(
            conv_op, input_channels, feature_size, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs
        )

        def up(c_in: int, c_out: int, stride: Size) -> nn.Module:
            return transp_op(c_in, c_out, kernel_size=stride, stride=stride, bias=False)

        self.decoder = Decoder(
            stages=nn.ModuleList([
                UpBlock(up(dims[i + 1], dims[i], strides[i]),
                        transformer_stage(tokens[i], dims[i], decoder_proj_size, decoder_depth))
                for i in (2, 1, 0)
            ] + [
                UpBlock(up(dims[0], feature_size, stem_stride), nn.Sequential(residual_conv_block(
                    conv_op, feature_size, feature_size, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs)))
            ]),
            seg_layers=nn.ModuleList([conv_op(c, num_classes, kernel_size=1) for c in (feature_size, dims[0], dims[1])]),
            deep_supervision=deep_supervision,
        )
        if not deep_supervision:
            # Unused auxiliary heads must not require gradients, or DistributedDataParallel (as
            # nnU-Net wraps it, without find_unused_parameters) fails on the first backward.
            self.decoder.seg_layers[1:].requires_grad_(False)
        self._init_encoder()

    def _init_encoder(self) -> None:
        """Official initialisation: truncated normal (std 0.02, bounds +-2) for the Linear layers
        of the encoder only (E/F with a bias count as Linear), zero biases, LayerNorm 1/0.
        Convolutions and decoder Linears keep PyTorch's defaults."""
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear) or (isinstance(m, TokenProjection) and m.bias is not None):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def output_strides(self) -> list[tuple[int, ...]]:
        """Downsampling factor of every deep-supervision output relative to the input."""
        return [(1,) * len(self.stem_stride), self.stem_stride,
                tuple(a * b for a, b in zip(self.stem_stride, self.strides[0]))]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != len(self.patch_size) + 2 or tuple(x.shape[2:]) != self.patch_size or x.shape[1] != self.input_channels:
            raise ValueError(
                f"UNETR++ was built for inputs (B, {self.input_channels}, {', '.join(map(str, self.patch_size))}) "
                f"and got {tuple(x.shape)}. Its positional embeddings and token projections are sized by the patch, "
                "so predict with the patch size of the plans it was trained with (nnU-Net's sliding window does)."
            )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but names of version 0.1.0 checkpoints are mapped to the current ones, and a
        checkpoint of another geometry gets a clear error first."""
        state_dict = {current_state_dict_name(k): v for k, v in state_dict.items()}
        own = self.state_dict()
        mismatched = [k for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if mismatched:
            raise ValueError(
                f"the weights do not fit this UNETR++ ({len(mismatched)} tensors differ, e.g. {mismatched[0]}: "
                f"{tuple(state_dict[mismatched[0]].shape)} vs {tuple(own[mismatched[0]].shape)}). This network is built "
                f"for patch {self.patch_size}, stem {self.stem_stride}, downsamplings {self.strides}, token grids "
                f"{self.grids}, {self.input_channels} input channels and {self.num_classes} classes; the weights come "
                "from another geometry. Use the plans.json saved next to the checkpoint (nnU-Net's results folder), "
                "or move the weights into this geometry with nnUNetv2_unetrpp_transfer_weights."
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def deep_supervision(self) -> bool:
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x)
        return self.decoder(self.encoder(x), self.conv_branch(x))
