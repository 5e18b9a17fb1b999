"""Measure one network in a fresh child process: parameters, FLOPs, forward / training-step time,
peak memory.

A child per measurement keeps timings independent and makes peak memory observable on CPU,
where PyTorch keeps no allocator statistics: there we report the growth of the process's peak
resident set size (ru_maxrss) over its size before the first step. On CUDA we report
torch.cuda.max_memory_allocated. The parent waits on the child's result and on the child itself,
so a child that dies without a result (the OOM killer's SIGKILL, a crash) is reported, not waited
for.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import multiprocessing.connection
import resource
import signal
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from nnunetv2_unetrpp.benchmarking.network_cost import count_parameters, forward_flops, median_seconds
from nnunetv2_unetrpp.benchmarking.sliding_window import nnunet_predictor
from nnunetv2_unetrpp.benchmarking.training_step import TrainingStep
from nnunetv2_unetrpp.command_line import UserError

MODES = ("forward", "train", "sliding_window")


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """--threads, --repeats and --rounds, as the timing benchmarks take them."""
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up (median)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds alternating over what is compared (median)")


@dataclass(frozen=True)
class MeasureSettings:
    """How one network is measured.

    mode: "forward" (no grad), "train" (`training_step.TrainingStep`: nnU-Net's step) or "sliding_window"
    (nnU-Net's predictor; needs `predictor`: plans, dataset_json, configuration, image_shape, mirroring).
    amp: fp16 autocast, with a grad scaler in training (CUDA only, as nnU-Net); compile: torch.compile.
    flops: count the FLOPs of a forward pass first (one more forward; off where they are not reported).
    """

    mode: str = "train"
    device: str = "cpu"
    repeats: int = 3
    threads: int = 2
    amp: bool = False
    compile: bool = False
    predictor: dict | None = None
    flops: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "sliding_window" and self.predictor is None:
            raise ValueError("mode 'sliding_window' needs the predictor settings")


class MeasurementFailed(UserError):
    """A measuring child failed or died (e.g. out of memory); the message names the network."""


@dataclass
class Measurement:
    name: str
    network: str  # class name of the network measured
    parameters: int
    gflops_forward: float | None  # FlopCounterMode: 2 per multiply-add; None where not counted
    forward_s: float | None = None
    train_step_s: float | None = None
    sliding_window_s: float | None = None
    peak_memory_mb: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _sliding_window_step(network, predictor_config: dict, device: torch.device):
    """nnU-Net's own sliding-window inference (step 0.5, Gaussian weighting, mirroring) on a
    random case of `predictor_config["image_shape"]` (channels first)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(predictor_config["plans"])
    configuration = plans_manager.get_configuration(predictor_config["configuration"])
    axes = tuple(range(len(configuration.patch_size))) if predictor_config["mirroring"] else ()
    predictor = nnunet_predictor(network, plans_manager, configuration, predictor_config["dataset_json"], device, axes)
    image = torch.randn(predictor_config["image_shape"])

    def step():
        predictor.predict_sliding_window_return_logits(image)
    return step


def _child(name: str, factory: Callable[..., torch.nn.Module], kwargs: dict, input_shape: tuple[int, ...],
           settings: MeasureSettings, connection) -> None:
    try:
        torch.set_num_threads(settings.threads)
        torch.manual_seed(0)
        dev = torch.device(settings.device)
        network = factory(**kwargs).to(dev)
        x = torch.randn(input_shape, device=dev)
        gflops = forward_flops(network.eval(), x[:1]) / 1e9 * input_shape[0] if settings.flops else None
        autocast = torch.autocast(dev.type, dtype=torch.float16) if settings.amp else nullcontext()
        run_network = torch.compile(network) if settings.compile else network
        result = Measurement(name, type(network).__name__, count_parameters(network), gflops)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base_rss = _rss_mb()
        if settings.mode == "sliding_window":
            network.eval()
            step = _sliding_window_step(run_network, settings.predictor, dev)
            result.sliding_window_s = median_seconds(step, settings.repeats, dev)
        elif settings.mode == "forward":
            network.eval()

            def step():
                with torch.no_grad(), autocast:
                    run_network(x)
            result.forward_s = median_seconds(step, settings.repeats, dev)
        else:
            step = TrainingStep(network, dev, settings.amp, "inductor" if settings.compile else None)
            result.train_step_s = median_seconds(lambda: step(x), settings.repeats, dev)
        if dev.type == "cuda":
            result.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            result.peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
        connection.send(("ok", result.as_dict()))
    except Exception as e:  # reported by the parent with the network's name
        connection.send(("error", f"{type(e).__name__}: {e}"))


def death(exitcode: int) -> str:
    """How a child process without a result ended, from its exit code (negative: the signal)."""
    if exitcode >= 0:
        return f"exited with status {exitcode} without a result"
    sig = signal.Signals(-exitcode)
    return f"killed by signal {-exitcode} ({sig.name})" + (": out of memory?" if sig == signal.SIGKILL else "")


def measure(name: str, factory: Callable[..., torch.nn.Module], kwargs: dict, input_shape: tuple[int, ...],
            settings: MeasureSettings) -> Measurement:
    """Build `factory(**kwargs)` in a child process and measure it as `settings` say, on an input
    of `input_shape`. MeasurementFailed naming the network if the child fails or dies."""
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(name, factory, kwargs, input_shape, settings, sender))
    proc.start()
    sender.close()  # the child holds its own end: the pipe reads EOF once the child is gone
    try:
        multiprocessing.connection.wait([receiver, proc.sentinel])
        try:  # EOF, or nothing to read once the sentinel fired (a grandchild may hold the pipe): no result
            status, payload = receiver.recv() if receiver.poll() else ("died", None)
        except EOFError:
            status, payload = "died", None
        proc.join(timeout=None if status == "died" else 60)
        if status == "died":
            payload = death(proc.exitcode)
    finally:
        if proc.is_alive():
            proc.kill()
    if status != "ok":
        raise MeasurementFailed(f"measuring {name} ({settings.mode}) failed: {payload}")
    return Measurement(**payload)
