"""UNETR++ at the paper's Synapse configuration against stock nnU-Net's PlainConvUNet, one run.

    python -m nnunetv2_unetrpp.benchmarking.synapse [--device cpu|cuda] [--threads 2] [--repeats 3] [--rounds 3]

Input 1x1x64x128x128, 14 classes. PlainConvUNet: 6 stages, features 32-320, strides
[1,1,1],[1,2,2],[2,2,2],[2,2,2],[2,2,2],[1,2,2], deep supervision. "UNETR++ (reference
attention)" runs the readable attention path, which computes as the authors' code does; it
stands in for the official implementation, which is not a dependency.
"""
from __future__ import annotations

import argparse
import json
import statistics
from typing import Callable

from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from nnunetv2_unetrpp.benchmarking.measure import MeasureSettings, measure
from nnunetv2_unetrpp.network_architecture import build_official_variant

INPUT = (1, 1, 64, 128, 128)


def plain_conv_unet() -> nn.Module:
    return PlainConvUNet(
        1, 6, (32, 64, 128, 256, 320, 320), nn.Conv3d, 3,
        [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]], 2, 14, 2, True,
        nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU, {"inplace": True},
        deep_supervision=True,
    )


def synapse_like_plan_unet(deep_supervision: bool = True) -> nn.Module:
    """The PlainConvUNet nnU-Net plans for Synapse-like data (64x128x128 patch at 3x0.9x0.9 mm,
    docs/BENCHMARKS.md section 4: 1x3x3 kernels in the first stage, strides [1,1,1], [1,2,2],
    [2,2,2] x 4, two convolutions per decoder stage), with Synapse's 14 classes."""
    return PlainConvUNet(
        1, 6, (32, 64, 128, 256, 320, 320), nn.Conv3d, [[1, 3, 3]] + [[3, 3, 3]] * 5,
        [[1, 1, 1], [1, 2, 2]] + [[2, 2, 2]] * 4, 2, 14, 2, True,
        nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU, {"inplace": True},
        deep_supervision=deep_supervision,
    )


def unetrpp_synapse(fused: bool = True, deep_supervision: bool = True) -> nn.Module:
    model = build_official_variant("synapse", deep_supervision=deep_supervision)
    model.set_fused_attention(fused)
    return model


#: The networks of this benchmark (issue 2's comparison): factory and keyword arguments.
NETWORKS = {
    "nnU-Net PlainConvUNet": (plain_conv_unet, {}),
    "UNETR++": (unetrpp_synapse, {"fused": True}),
    "UNETR++ (reference attention)": (unetrpp_synapse, {"fused": False}),
}


#: The networks the GPU check and the operation count compare at the Synapse geometry, each a
#: factory taking `deep_supervision`: PlainConvUNet as nnU-Net plans it for Synapse-like data.
UNETRPP_FUSED, UNETRPP_REFERENCE = "UNETR++", "UNETR++ (reference attention)"
NNUNET_PLAN = "nnU-Net PlainConvUNet (Synapse-like plan)"
PLAN_NETWORKS: dict[str, Callable[[bool], nn.Module]] = {
    UNETRPP_FUSED: lambda ds: unetrpp_synapse(fused=True, deep_supervision=ds),
    UNETRPP_REFERENCE: lambda ds: unetrpp_synapse(fused=False, deep_supervision=ds),
    NNUNET_PLAN: lambda ds: synapse_like_plan_unet(deep_supervision=ds),
}

def run(device: str = "cpu", threads: int = 2, repeats: int = 3, amp: bool = False, compile_: bool = False,
        input_shape: tuple[int, ...] = INPUT, rounds: int = 1) -> dict[str, dict]:
    """Measure every network `rounds` times, alternating between them, and report per network the
    median over rounds (each round's time is itself the median of `repeats` steps). Alternating
    makes a slow phase of a shared machine hit all networks alike instead of one."""
    per_round: dict[str, list[dict]] = {name: [] for name in NETWORKS}
    for _ in range(rounds):
        for name, (factory, kwargs) in NETWORKS.items():
            forward, train = (measure(name, factory, kwargs, input_shape,
                                      MeasureSettings(mode, device, repeats, threads, amp, compile_,
                                                      flops=mode == "forward"))
                              for mode in ("forward", "train"))
            per_round[name].append({**forward.as_dict(), "train_step_s": train.train_step_s,
                                    "forward_peak_memory_mb": forward.peak_memory_mb,
                                    "peak_memory_mb": train.peak_memory_mb})
    results = {}
    for name, samples in per_round.items():
        results[name] = {**samples[0], "rounds": samples}
        for key in ("forward_s", "train_step_s", "forward_peak_memory_mb", "peak_memory_mb"):
            results[name][key] = statistics.median(s[key] for s in samples)
    return results


def table(results: dict[str, dict], baseline: str = "nnU-Net PlainConvUNet") -> str:
    base = results[baseline]
    lines = ["| network | params (M) | GFLOPs fwd | forward (s) | fwd+bwd+SGD (s) | train peak mem (MB) | "
             "forward ratio | train ratio | memory ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f} | {r['gflops_forward']:.1f} | {r['forward_s']:.3f} | "
            f"{r['train_step_s']:.3f} | {r['peak_memory_mb']:.0f} | {r['forward_s'] / base['forward_s']:.3f} | "
            f"{r['train_step_s'] / base['train_step_s']:.3f} | {r['peak_memory_mb'] / base['peak_memory_mb']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (median)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the networks (median)")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast with a grad scaler (CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("-o", "--output", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = run(args.device, args.threads, args.repeats, args.amp, args.compile, rounds=args.rounds)
    print(table(results))
    ours, ref = results["UNETR++"], results["UNETR++ (reference attention)"]
    print(f"\nUNETR++ speed-up over the reference attention path: forward {ref['forward_s'] / ours['forward_s']:.2f}x, "
          f"fwd+bwd {ref['train_step_s'] / ours['train_step_s']:.2f}x")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
