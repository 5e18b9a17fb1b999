"""Small functional helpers shared by the UNETR++ modules."""
from __future__ import annotations

import torch


def channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A linear map over the channels of a channel-major (B, C, *spatial) tensor.

    Equals a 1x1(x1) convolution with `weight` (C_out, C_in, 1, ...), but runs as one batched
    matmul: on CPU, oneDNN's 1x1 convolutions were 2.4x slower forward+backward for the
    full-resolution head (16 -> 14 channels at 64x128x128, 2 threads).
    """
    B, _, *spatial = x.shape
    w = weight.reshape(weight.shape[0], -1).to(x.dtype).expand(B, -1, -1)
    flat = x.flatten(2)
    out = torch.bmm(w, flat) if bias is None else torch.baddbmm(bias.to(x.dtype)[:, None], w, flat)
    return out.view(B, -1, *spatial)
