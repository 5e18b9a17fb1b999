"""Efficient paired attention (EPA), the attention of UNETR++.

One module computes two attentions from shared queries and keys:

* channel attention: a (d x d) map per head between the channels of q and k, each
  L2-normalised over the tokens; cost O(N d^2);
* spatial attention: every token attends to p "projected tokens", keys and values projected
  along the token axis by learned (N -> p) maps E and F; cost O(N p).

Both are linear in the number of tokens N. Every weight is used by calling its module
(`qkvv`, `e_proj`/`f_proj`, `spatial_out`/`channel_out`), once per forward, so that forward hooks,
pruning, LoRA-style wrappers and dynamic quantisation of `nn.Linear` see them. The spatial branch is
one SDPA call on every device (flash/memory-efficient kernels on CUDA).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Spatial-attention output layouts. "official" reproduces the authors' code, which reshapes a
#: (B, d, h, N) buffer as (B, N, C) and so mixes token and channel axes (issue 62 of their GitHub repository); it is
#: needed to use published weights. "corrected" transposes to (B, N, h, d) as the paper means.
SPATIAL_LAYOUTS = ("official", "corrected")


class TokenProjection(nn.Module):
    """Learned projection along the token axis, N -> p: `x @ weight.T + bias` on (..., N).

    A dedicated module rather than `nn.Linear` so that the official variants' two
    initialisations (Linear-like with bias; bias-free uniform(+-1/sqrt(p)) matrix of the BraTS
    model) are explicit, and so that encoder-wide Linear initialisation can tell it apart.
    """

    def __init__(self, num_tokens: int, proj_size: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(proj_size, num_tokens))
        self.bias = nn.Parameter(torch.empty(proj_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.bias is not None:  # what nn.Linear(num_tokens, proj_size) does
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound)
        else:  # the official shared bias-free matrix
            bound = 1.0 / math.sqrt(self.weight.shape[0])
            nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"num_tokens={self.weight.shape[1]}, proj_size={self.weight.shape[0]}, bias={self.bias is not None}"


class EPA(nn.Module):
    """Efficient paired attention on tokens (B, N, C) -> (B, N, C).

    Args:
        num_tokens: N, fixed by the patch size (E and F are sized by it).
        channels: C, divisible by `num_heads`.
        proj_size: p, the number of projected tokens of the spatial branch.
        num_heads: h; every head has d = C / h channels.
        attn_drop: dropout on both attention maps (the spatial map's is SDPA's own).
        share_ef_projection: one projection serves E and F (Synapse, BraTS) or two (ACDC, Lung).
        projection_bias: E/F have a bias (Synapse, ACDC, Lung) or not (BraTS).
        fusion: "concat" of C/2 projections of both branches (spatial first) or "sum" (BraTS).
        spatial_layout: see `SPATIAL_LAYOUTS`; "corrected" by default, as in `UNETRPP`.
    """

    def __init__(
        self,
        num_tokens: int,
        channels: int,
        proj_size: int,
        num_heads: int = 4,
        attn_drop: float = 0.1,
        share_ef_projection: bool = True,
        projection_bias: bool = True,
        fusion: str = "concat",
        spatial_layout: str = "corrected",
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if fusion not in ("concat", "sum"):
            raise ValueError(f"fusion must be 'concat' or 'sum', got {fusion!r}")
        if fusion == "concat" and channels % 2:
            raise ValueError(f"fusion='concat' needs an even number of channels, got {channels}")
        if spatial_layout not in SPATIAL_LAYOUTS:
            raise ValueError(f"spatial_layout must be one of {SPATIAL_LAYOUTS}, got {spatial_layout!r}")
        self.num_heads = num_heads
        self.fusion = fusion
        self.spatial_layout = spatial_layout
        self.attn_drop = attn_drop

        self.qkvv = nn.Linear(channels, 4 * channels, bias=False)
        self.channel_temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.spatial_temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.e_proj = TokenProjection(num_tokens, proj_size, projection_bias)
        self.f_proj = None if share_ef_projection else TokenProjection(num_tokens, proj_size, projection_bias)
        if fusion == "concat":
            self.spatial_out = nn.Linear(channels, channels // 2)
            self.channel_out = nn.Linear(channels, channels // 2)
        self.channel_dropout = nn.Dropout(attn_drop)

    @property
    def num_tokens(self) -> int:
        return self.e_proj.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise ValueError(
                f"EPA was built for {self.num_tokens} tokens but got {x.shape[1]}: UNETR++ only accepts "
                "the patch size it was built for"
            )
        B, N, C = x.shape
        h, d = self.num_heads, C // self.num_heads
        # q, k, v_channel, v_spatial: (B, h, d, N) views of the one projection's output
        q, k, v_channel, v_spatial = self.qkvv(x).view(B, N, 4, h, d).permute(2, 0, 3, 4, 1).unbind(0)
        # E and F project the un-normalised keys and the spatial values along the tokens; a shared
        # E = F projects both in one call
        if self.f_proj is None:
            k_projected, v_projected = self.e_proj(torch.stack((k, v_spatial), 1)).unbind(1)  # (B, h, d, p)
        else:
            k_projected, v_projected = self.e_proj(k), self.f_proj(v_spatial)

        # q and k L2-normalised over the tokens. The norms accumulate in fp32 (a sum of N squares
        # overflows fp16); k's is folded into the small (d x d) logits instead of scaling k.
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        inv_q = torch.linalg.vector_norm(q, dim=-1, keepdim=True, dtype=acc).clamp_min(1e-12).reciprocal()
        inv_k = torch.linalg.vector_norm(k, dim=-1, keepdim=True, dtype=acc).clamp_min(1e-12).reciprocal()
        q_hat = q * inv_q.to(q.dtype)

        # channel branch: softmax(q_hat k_hat^T * t1) v_channel, (d x d) maps
        logits = q_hat @ k.transpose(-2, -1) * (inv_k.transpose(-2, -1) * self.channel_temperature).to(q.dtype)
        attn_channel = self.channel_dropout(logits.softmax(dim=-1))
        x_channel = (attn_channel @ v_channel).permute(0, 3, 1, 2).reshape(B, N, C)

        # spatial branch: softmax(q_hat^T (E k) * t2) (F v)^T, (N x p) maps, one SDPA call
        # SDPA's fused kernels (CPU flash, CUDA flash/memory-efficient) need contiguous (B, h, L, d)
        # operands; with strided views they fall back to the generic one, several times slower
        query = q_hat.transpose(-2, -1).contiguous()  # (B, h, N, d)
        key = (k_projected * self.spatial_temperature.to(q.dtype)).transpose(-2, -1).contiguous()  # (B, h, p, d)
        value = v_projected.transpose(-2, -1).contiguous()
        x_spatial = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.attn_drop if self.training else 0.0, scale=1.0)  # (B, h, N, d)
        if self.spatial_layout == "official":  # the (B, d, h, N) buffer read as tokens
            x_spatial = x_spatial.permute(0, 3, 1, 2).reshape(B, N, C)
        else:
            x_spatial = x_spatial.transpose(1, 2).reshape(B, N, C)

        if self.fusion == "sum":
            return x_spatial + x_channel
        return torch.cat((self.spatial_out(x_spatial), self.channel_out(x_channel)), dim=-1)
