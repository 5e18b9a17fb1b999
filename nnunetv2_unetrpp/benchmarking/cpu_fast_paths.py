"""The CPU fast paths against the stock PyTorch operations they replace, in one process.

    python -m nnunetv2_unetrpp.benchmarking.cpu_fast_paths [--threads 2] [--repeats 3] [-o out.json]

Every case is a module or function of the paper's Synapse network (`build_network(SYNAPSE, "UNETR++")`)
at the size where that network runs it, timed under `execution_policy("cpu")` (the fast path) and
`execution_policy("device")` (the stock operations a GPU runs, here on CPU tensors), each fed the
layout the network feeds it on that path. The forward pass alone is timed at batch 1, without
autograd, as nnU-Net predicts; forward + backward (autograd, into a fixed random output gradient) at
every batch. The timings of a case alternate, one of each per repetition
(`alternating_median_seconds`), and the speed-up is stock time over fast time from the same
repetitions. The cases:

1. the full-resolution residual block of the decoder, channels-last with `ChannelsLastInstanceNorm3d`
   (`channels_last.py`), at batch 1 (prediction) and the plan's batch 2 (training);
2. the full-resolution segmentation head through `channel_linear` (`functional.py`): matrix
   products against the 1x1 convolution, fed as the network does (channels-last on the fast path,
   channel-first on the stock one) and, to isolate the operation, both fed channels-last;
3. the spatial attention with dropout of EPA in stage 1, training (`attention.py`): the chunked
   `_cpu_attention_with_dropout` against SDPA with dropout, the call alone and the whole EPA (whose
   two 1x1 output maps switch to `channel_linear`'s paths as well);
4. the 3x3x3 convolutions of the transformer stages that batch folding (`batch_folding.py`) folds
   at batch 1.

The accuracy table compares, on a full-resolution-sized tensor, the instance norm's output with a
float64 reference: PyTorch's channel-first kernel (the stock path), PyTorch's channels-last
batch-norm kernel (what keeps the layout with stock operations: instance norm of a batch of one)
and `ChannelsLastInstanceNorm3d`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from nnunetv2_unetrpp.benchmarking.gpu_check import format_or_dash
from nnunetv2_unetrpp.benchmarking.network_cost import alternating_median_seconds
from nnunetv2_unetrpp.benchmarking.synapse import SYNAPSE, UNETRPP_FUSED, Geometry, build_network
from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.network_architecture.attention import spatial_attention
from nnunetv2_unetrpp.network_architecture.batch_folding import fold_is_worthwhile
from nnunetv2_unetrpp.network_architecture.channels_last import ChannelsLastInstanceNorm3d, to_channels_last
from nnunetv2_unetrpp.network_architecture.execution import execution_policy
from nnunetv2_unetrpp.network_architecture.functional import channel_linear

FAST, STOCK = "cpu", "device"  # the execution policies of the fast and the stock path


@dataclass
class Case:
    """One fast path at one size: `fn(*inputs[policy])` is timed under each policy; `parameters`
    are the weights whose gradients the backward pass computes."""

    path: str
    what: str
    batch: int
    fn: Callable[..., torch.Tensor]
    parameters: list[torch.Tensor]
    inputs: dict[str, tuple[torch.Tensor, ...]]


def _same(*tensors: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    return {FAST: tensors, STOCK: tensors}


def _by_path(x: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """`x` as UNETR++ feeds the full-resolution branch: channels-last on the fast path."""
    return {FAST: (to_channels_last(x),), STOCK: (x.contiguous(),)}


def cases(geometry: Geometry = SYNAPSE) -> list[Case]:
    """The cases of the module docstring, taken from UNETR++ at `geometry`."""
    torch.manual_seed(0)
    net = build_network(geometry, UNETRPP_FUSED)
    patch, batches = net.patch_size, sorted({1, geometry.batch})
    block, head = net.decoder.stages[-1].blocks[0], net.decoder.seg_layers[0]
    features = block.conv1.conv.in_channels
    size = "x".join(map(str, patch))
    out: list[Case] = []
    for b in batches:
        out.append(Case("channels-last residual block", f"decoder block, {features} ch at {size}", b, block,
                        list(block.parameters()), _by_path(torch.randn(b, features, *patch))))
    for b in batches:
        x = torch.randn(b, features, *patch)
        head_fn = lambda x: channel_linear(x, head.weight, head.bias)  # noqa: E731 (as Decoder calls it)
        out.append(Case("channel_linear as matrix products", f"head {features}->{head.out_channels} ch at {size}", b,
                        head_fn, list(head.parameters()), _by_path(x)))
        out.append(Case("channel_linear as matrix products", f"head {features}->{head.out_channels} ch at {size}, "
                        "both channels-last", b, head_fn, list(head.parameters()), _same(to_channels_last(x))))
    epa = net.encoder.stages[0][0].attention.train()
    n, c, h, p = epa.num_tokens, epa.qkvv.in_features, epa.num_heads, epa.e_proj.weight.shape[0]
    b = geometry.batch
    q, k, v = torch.randn(b, h, n, c // h), torch.randn(b, h, p, c // h), torch.randn(b, h, p, c // h)
    shape = f"N={n}, C={c}, p={p}, {h} heads, dropout {epa.attn_drop}"
    out.append(Case("chunked attention dropout", f"spatial attention call, stage 1 ({shape})", b,
                    lambda q, k, v: spatial_attention(q, k, v, epa.attn_drop), [], _same(q, k, v)))
    out.append(Case("chunked attention dropout", f"EPA, stage 1, training ({shape})", b, epa,
                    list(epa.parameters()), _same(torch.randn(b, n, c))))
    for stage, grid in zip(net.encoder.stages, net.grids):
        conv = stage[0].conv_blocks[0].conv1.conv
        x = torch.randn(1, conv.in_channels, *grid)
        with execution_policy(FAST):
            if not fold_is_worthwhile(conv, x):
                continue
        out.append(Case("batch folding", f"stage conv 3x3x3, {conv.in_channels} ch at {'x'.join(map(str, grid))}",
                        1, conv, list(conv.parameters()), _same(x)))
    return out


def _timed_calls(case: Case, policy: str) -> dict[str, Callable[[], None]]:
    """The forward (at batch 1) and the forward + backward call of `case` under `policy`."""
    inputs = case.inputs[policy]
    leaves = [x.detach().requires_grad_() for x in inputs]
    with execution_policy(policy), torch.no_grad():
        grad = torch.randn_like(case.fn(*inputs))

    def forward() -> None:
        with execution_policy(policy), torch.no_grad():
            case.fn(*inputs)

    def train() -> None:
        with execution_policy(policy):
            case.fn(*leaves).backward(grad)
        for t in leaves + case.parameters:
            t.grad = None
    calls = {f"train_{policy}": train}
    if case.batch == 1:
        calls[f"forward_{policy}"] = forward
    return calls


def time_case(case: Case, repeats: int) -> dict:
    """Median seconds of the calls of `_timed_calls` on both paths and the speed-ups (None where not timed)."""
    seconds = alternating_median_seconds({**_timed_calls(case, FAST), **_timed_calls(case, STOCK)}, repeats)
    result = {"path": case.path, "what": case.what, "batch": case.batch}
    for mode in ("forward", "train"):
        fast, stock = seconds.get(f"{mode}_{FAST}"), seconds.get(f"{mode}_{STOCK}")
        result.update({f"{mode}_fast_s": fast, f"{mode}_stock_s": stock,
                       f"{mode}_speedup": None if fast is None else stock / fast})
    return result


def norm_accuracy(geometry: Geometry = SYNAPSE) -> list[dict]:
    """Max abs error of the normalised output of a tensor the size of the full-resolution block's
    input at batch 1 against float64, per instance-norm implementation, for a centred and an offset
    input."""
    block = build_network(geometry, UNETRPP_FUSED).decoder.stages[-1].blocks[0]
    features = block.conv1.conv.in_channels
    norm = ChannelsLastInstanceNorm3d(features)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for mean, std in ((0.0, 1.0), (10.0, 3.0)):
        x = torch.randn(1, features, *geometry.patch, generator=generator) * std + mean
        reference = F.instance_norm(x.double())
        x_cl = to_channels_last(x)
        with torch.no_grad(), execution_policy(FAST):
            outputs = {
                "PyTorch instance norm, channel-first (stock path)": F.instance_norm(x),
                "PyTorch batch-norm kernel, channels-last (batch of one)": F.batch_norm(x_cl, None, None, training=True),
                "ChannelsLastInstanceNorm3d (fast path)": norm(x_cl),
            }
        for name, y in outputs.items():
            rows.append({"input": f"N({mean:g}, {std:g}^2), {tuple(x.shape)}", "implementation": name,
                         "max_abs_error": (y.double() - reference).abs().max().item()})
    return rows


def markdown(timings: list[dict], accuracy: list[dict]) -> str:
    """The timing table (speed-up = stock / fast) and the accuracy table."""
    lines = ["| fast path | what | batch | forward fast (s) | forward stock (s) | forward speed-up | "
             "fwd+bwd fast (s) | fwd+bwd stock (s) | fwd+bwd speed-up |", "|---" * 9 + "|"]
    for r in timings:
        cells = [format_or_dash(r[f"{mode}_{key}"], spec) for mode in ("forward", "train")
                 for key, spec in (("fast_s", ".4f"), ("stock_s", ".4f"), ("speedup", ".2f"))]
        lines.append(f"| {r['path']} | {r['what']} | {r['batch']} | " + " | ".join(cells) + " |")
    lines += ["", "| instance norm | input | max abs error vs float64 |", "|---|---|---|"]
    lines += [f"| {r['implementation']} | {r['input']} | {r['max_abs_error']:.1e} |" for r in accuracy]
    return "\n".join(lines)


def run(geometry: Geometry = SYNAPSE, repeats: int = 3) -> dict:
    """Every case timed, then the accuracy rows; with the load average around the run."""
    load_before = os.getloadavg()
    timings = [time_case(case, repeats) for case in cases(geometry)]
    accuracy = norm_accuracy(geometry)
    return {"load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
            "timings": timings, "accuracy": accuracy}


@command
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_unetrpp.benchmarking.cpu_fast_paths",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (median)")
    parser.add_argument("-o", "--output", type=Path, help="also write the results as JSON (not overwritten)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        raise UserError("--threads and --repeats must be at least 1")
    if args.output and args.output.exists():
        raise UserError(f"{args.output} exists; choose another file")
    torch.set_num_threads(args.threads)
    results = run(SYNAPSE, args.repeats)
    print(markdown(results["timings"], results["accuracy"]))
    if args.output:
        settings = {"command": " ".join([parser.prog, *argv]), "torch": torch.__version__, "machine": platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": args.threads, "repeats": args.repeats}
        args.output.write_text(json.dumps({**settings, **results}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
