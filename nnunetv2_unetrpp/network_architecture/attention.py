"""Efficient paired attention (EPA), the attention of UNETR++.

One module computes two attentions from shared queries and keys:

* channel attention: a (d x d) map per head between the channels of q and k, each
  L2-normalised over the tokens; cost O(N d^2);
* spatial attention: every token attends to p "projected tokens", keys and values projected
  along the token axis by learned (N -> p) maps E and F; cost O(N p).

Both are linear in the number of tokens N. `EPA.fused` selects the fast path (SDPA for the
spatial branch, normalisation and temperatures folded into small tensors, a channel-major
layout that avoids copies of token-sized tensors); the reference path is a literal transcription
of the paper's equations that tests compare against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_unetrpp.network_architecture.execution import use_cpu_fast_paths
from nnunetv2_unetrpp.network_architecture.functional import channel_linear

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
        attn_drop: dropout on both attention maps.
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
        self.fused = True

        self.qkvv = nn.Linear(channels, 4 * channels, bias=False)
        self.channel_temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.spatial_temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.e_proj = TokenProjection(num_tokens, proj_size, projection_bias)
        self.f_proj = None if share_ef_projection else TokenProjection(num_tokens, proj_size, projection_bias)
        if fusion == "concat":
            self.spatial_out = nn.Linear(channels, channels // 2)
            self.channel_out = nn.Linear(channels, channels // 2)
        self.channel_dropout = nn.Dropout(attn_drop)
        self.spatial_dropout = nn.Dropout(attn_drop)

    @property
    def num_tokens(self) -> int:
        return self.e_proj.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise ValueError(
                f"EPA was built for {self.num_tokens} tokens but got {x.shape[1]}: UNETR++ only accepts "
                "the patch size it was built for"
            )
        return self._forward_fused(x) if self.fused else self._forward_reference(x)

    # ------------------------------------------------------------------------------------------
    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The equations as written: tokens (B, N, C) throughout."""
        B, N, C = x.shape
        h, d = self.num_heads, C // self.num_heads
        qkvv = self.qkvv(x).reshape(B, N, 4, h, d).permute(2, 0, 3, 4, 1)  # 4 x (B, h, d, N)
        q, k, v_channel, v_spatial = qkvv.unbind(0)
        k_projected = self.e_proj(k)  # (B, h, d, p), from the un-normalised keys
        v_projected = (self.f_proj or self.e_proj)(v_spatial)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)

        attn_channel = (q @ k.transpose(-2, -1)) * self.channel_temperature  # (B, h, d, d)
        attn_channel = self.channel_dropout(attn_channel.softmax(dim=-1))
        x_channel = (attn_channel @ v_channel).permute(0, 3, 1, 2).reshape(B, N, C)

        attn_spatial = (q.transpose(-2, -1) @ k_projected) * self.spatial_temperature  # (B, h, N, p)
        attn_spatial = self.spatial_dropout(attn_spatial.softmax(dim=-1))
        x_spatial = attn_spatial @ v_projected.transpose(-2, -1)  # (B, h, N, d)
        if self.spatial_layout == "official":
            x_spatial = x_spatial.permute(0, 3, 1, 2).reshape(B, N, C)
        else:
            x_spatial = x_spatial.transpose(1, 2).reshape(B, N, C)

        if self.fusion == "sum":
            return x_spatial + x_channel
        return torch.cat((self.spatial_out(x_spatial), self.channel_out(x_channel)), dim=-1)

    # ------------------------------------------------------------------------------------------
    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """Same maths, channel-major: q, k, v are (B, h, d, N) views of one matmul output, the
        L2 norms and temperatures scale (d x d) and (d x p) tensors instead of (d x N) ones, and
        the spatial branch is one SDPA call. The result is a (B, N, C) view of a channel-major
        buffer, so the caller's residual add and reshape to a volume stay copy-free. Operations
        that can serve q and k (the norms) or k and v (a shared E = F) at once do, which halves
        their kernel launches."""
        B, N, C = x.shape
        h, d = self.num_heads, C // self.num_heads
        qkvv = torch.bmm(self.qkvv.weight.expand(B, -1, -1), x.transpose(1, 2))  # (B, 4C, N), no copy
        # (q, k) and (v_channel, v_spatial) by unbind, not by slicing: an unbind's backward is one
        # stack, a slice's writes into a zero-filled copy of the whole buffer
        qk, vv = qkvv.view(B, 2, 2, h, d, N).unbind(1)
        q, k = qk.unbind(1)  # (B, h, d, N) each
        v_channel, v_spatial = vv.unbind(1)

        # 1/||.|| over the tokens of q and k, accumulated in fp32: a sum of N squares overflows fp16.
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        inv_q, inv_k = (torch.linalg.vector_norm(qk, dim=-1, keepdim=True, dtype=acc)
                        .clamp_min(1e-12).reciprocal().unbind(1))

        # Channel branch: logits = diag(1/|q|) (q k^T) diag(1/|k|) * t. q is normalised before the
        # product so that the reduction over N stays within +-|k| even in fp16.
        q_hat = q * inv_q.to(q.dtype)
        logits = torch.matmul(q_hat, k.transpose(-2, -1)) * (inv_k.transpose(-2, -1) * self.channel_temperature).to(q.dtype)
        attn_channel = self.channel_dropout(logits.softmax(dim=-1))
        x_channel = torch.matmul(attn_channel, v_channel).view(B, C, N)

        # Spatial branch: q_hat^T k_p = q^T (diag(1/|q|) k_p); fold 1/|q| and t2 into the p keys.
        if self.f_proj is None:  # E = F: one projection of k and v_spatial together
            k_projected, v_projected = self.e_proj(torch.stack((k, v_spatial), 1)).unbind(1)  # (B, h, d, p) each
        else:
            k_projected, v_projected = self.e_proj(k), self.f_proj(v_spatial)
        k_projected = k_projected * (inv_q * self.spatial_temperature).to(q.dtype)
        # SDPA's fused CPU kernel needs unit-stride last dimensions; with transposed views it fell back
        # to the much slower generic path. Copying q is one pass.
        # CUDA's flash and memory-efficient kernels require unit-stride last dimensions as well.
        query, key, value = (t.transpose(-2, -1).contiguous() for t in (q, k_projected, v_projected))
        x_spatial = spatial_attention(query, key, value, self.attn_drop if self.training else 0.0)  # (B, h, N, d)
        if self.spatial_layout == "official":
            # tokens = reshape of the (B, d, h, N) buffer; its transpose is the channel-major view
            x_spatial = x_spatial.permute(0, 3, 1, 2).reshape(B, N, C).transpose(1, 2)
        else:
            x_spatial = x_spatial.permute(0, 1, 3, 2).reshape(B, C, N)

        if self.fusion == "sum":
            out = x_spatial + x_channel
        else:
            out = torch.cat((
                channel_linear(x_spatial, self.spatial_out.weight, self.spatial_out.bias),
                channel_linear(x_channel, self.channel_out.weight, self.channel_out.bias),
            ), dim=1)
        return out.transpose(1, 2)


def spatial_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """softmax(query key^T) value, the attention map dropped out with probability `dropout_p`: one
    SDPA call, or with dropout on the CPU path (`execution.py`) `_cpu_attention_with_dropout`."""
    if dropout_p > 0 and use_cpu_fast_paths(query):
        return _cpu_attention_with_dropout(query, key, value, dropout_p)
    return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=1.0)


def _cpu_attention_with_dropout(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, p: float) -> torch.Tensor:
    """softmax(query key^T) with dropout, times value, in query chunks whose (chunk x p) maps fit
    in a core's L2 cache.

    Written out because PyTorch's CPU SDPA with dropout takes a generic path, and unchunked the (N x p)
    maps are memory-bound. At stage 1 of Synapse, training at batch 2, the call ran 2.0x as fast as SDPA
    with dropout on 2 quiet cores (docs/BENCHMARKS.md, section 6: python -m
    nnunetv2_unetrpp.benchmarking.cpu_fast_paths). Autograd still keeps one map and one mask per chunk.
    """
    rows = max(1, (1 << 19) // (query.shape[:-2].numel() * key.shape[-2]))  # 2**19 fp32 = 2 MB per map
    key_t, value = key.transpose(-2, -1), value / (1 - p)
    outputs = []
    for chunk in query.split(rows, dim=-2):
        attn = torch.matmul(chunk, key_t).softmax(dim=-1)
        keep = torch.rand_like(attn).ge_(p)  # 0./1. in place: no bool-to-float copy
        outputs.append(torch.matmul(attn * keep, value))
    return torch.cat(outputs, dim=-2)
