"""The UNETR++ transformer block: positional embedding, EPA, residual conv blocks, 1x1 conv."""
from __future__ import annotations

from typing import Type

import torch
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from nnunetv2_unetrpp.network_architecture.attention import EPA


def residual_conv_block(
    conv_op: Type[_ConvNd],
    in_channels: int,
    out_channels: int,
    norm_op: Type[nn.Module],
    norm_op_kwargs: dict,
    nonlin: Type[nn.Module],
    nonlin_kwargs: dict,
) -> BasicBlockD:
    """conv3-norm-act-conv3-norm + residual (1x1 conv + norm if channels change), then act.

    dynamic-network-architectures' BasicBlockD at stride 1 is exactly MONAI's UnetResBlock, the
    block of the official code, so the weights map one to one.
    """
    return BasicBlockD(
        conv_op, in_channels, out_channels, kernel_size=3, stride=1, conv_bias=False,
        norm_op=norm_op, norm_op_kwargs=norm_op_kwargs, nonlin=nonlin, nonlin_kwargs=nonlin_kwargs,
    )


class TransformerBlock(nn.Module):
    """One EPA stage element on a feature map (B, C, *spatial) of a fixed spatial size.

    tokens = flatten(x) + pos_embed;  t = tokens + gamma * EPA(LayerNorm(tokens));
    skip = t as a feature map;  out = skip + Conv1x1(Dropout(ResBlocks(skip))).  There is no MLP.
    """

    def __init__(
        self,
        num_tokens: int,
        channels: int,
        proj_size: int,
        num_heads: int,
        conv_op: Type[_ConvNd],
        norm_op: Type[nn.Module],
        norm_op_kwargs: dict,
        nonlin: Type[nn.Module],
        nonlin_kwargs: dict,
        dropout_op: Type[_DropoutNd],
        num_conv_blocks: int = 1,
        attn_drop: float = 0.1,
        proj_drop: float = 0.1,
        **epa_kwargs,
    ) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, channels))
        self.norm = nn.LayerNorm(channels)
        self.gamma = nn.Parameter(1e-6 * torch.ones(channels))
        self.attention = EPA(num_tokens, channels, proj_size, num_heads, attn_drop=attn_drop, **epa_kwargs)
        self.conv_blocks = nn.Sequential(*[
            residual_conv_block(conv_op, channels, channels, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs)
            for _ in range(num_conv_blocks)
        ])
        self.proj = nn.Sequential(dropout_op(proj_drop), conv_op(channels, channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, *spatial = x.shape
        # Channel-major residual stream: (B, N, C) is a transposed view of the (B, C, N) map, so
        # flattening to tokens and reshaping back to a volume never copies.
        tokens = (x.flatten(2) + self.pos_embed.transpose(1, 2)).transpose(1, 2)
        tokens = torch.addcmul(tokens, self.gamma, self.attention(self.norm(tokens)))
        skip = tokens.transpose(1, 2).reshape(B, C, *spatial)
        return skip + self.proj(self.conv_blocks(skip))
