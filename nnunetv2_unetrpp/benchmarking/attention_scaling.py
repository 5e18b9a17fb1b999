"""How EPA's time and memory grow with the number of tokens, against standard self-attention.

    python -m nnunetv2_unetrpp.benchmarking.attention_scaling [--device cpu|cuda] [--tokens 4096 8192 ...]

Both modules see tokens (1, N, 32) with 4 heads; EPA projects keys/values to p = 64 (stage 1 of
the paper's model). Each point is a training step (forward, backward, SGD) in a fresh process.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_unetrpp.benchmarking.measure import MeasureSettings, measure
from nnunetv2_unetrpp.network_architecture import EPA

CHANNELS, HEADS, PROJ = 32, 4, 64


class FullAttention(nn.Module):
    """Multi-head softmax attention over all N tokens (O(N^2)), for comparison."""

    def __init__(self, channels: int = CHANNELS, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


def epa(num_tokens: int) -> nn.Module:
    return EPA(num_tokens, CHANNELS, PROJ, HEADS, attn_drop=0.0)


def full_attention(num_tokens: int) -> nn.Module:
    return FullAttention()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 8192, 16384, 32768, 65536])
    parser.add_argument("--full-attention-max-tokens", type=int, default=16384,
                        help="skip standard attention above this N (its N x N maps exhaust memory)")
    args = parser.parse_args(argv)
    print("| tokens N | EPA step (s) | EPA peak (MB) | EPA MB per 1k tokens | full attention step (s) | "
          "full attention peak (MB) |\n|---|---|---|---|---|---|")
    settings = MeasureSettings("train", args.device, repeats=3, threads=args.threads, flops=False)
    for n in args.tokens:
        shape = (1, n, CHANNELS)
        ours = measure("EPA", epa, {"num_tokens": n}, shape, settings)
        row = (f"| {n} | {ours.train_step_s:.4f} | {ours.peak_memory_mb:.1f} | "
               f"{ours.peak_memory_mb / n * 1000:.2f} |")
        if n <= args.full_attention_max_tokens:
            full = measure("full attention", full_attention, {"num_tokens": n}, shape, settings)
            row += f" {full.train_step_s:.4f} | {full.peak_memory_mb:.1f} |"
        else:
            row += " - | - |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
