"""The execution policy: the CPU fast paths run for CPU tensors only, every other device takes
stock PyTorch operations; both paths compute the same function from the same state_dict, also
under autocast, and the non-CPU path is lean (autocast of the attention and tracing on both paths:
test_numerics_and_compile.py)."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nnunetv2_unetrpp.benchmarking.op_count import OpCounter, count_training_step
from nnunetv2_unetrpp.benchmarking.synapse import SYNAPSE, UNETRPP_FUSED, build_network
from nnunetv2_unetrpp.network_architecture import UNETRPP, attention, batch_folding, channels_last, functional, unetr_pp
from nnunetv2_unetrpp.network_architecture.execution import POLICIES, execution_policy, use_cpu_fast_paths

# the full resolution of "3d" spans several chunks of the CPU instance norm; the deepest grids
# hold more than one voxel, so that BatchNorm trains at batch 1
GEOMETRIES = {
    "3d": dict(patch=(32, 32, 32), stem_stride=(2, 4, 4)),
    "2d": dict(patch=(64, 64), stem_stride=(4, 4), conv_op=nn.Conv2d),
}
PATCH_3D = GEOMETRIES["3d"]["patch"]


@pytest.fixture
def tiny(tiny_unetrpp):
    """`tiny(geometry, channels=1, **overrides)`: the tiny UNETR++ at one of GEOMETRIES."""
    def make(geometry: str, channels: int = 1, **kw) -> UNETRPP:
        g = dict(GEOMETRIES[geometry])
        return tiny_unetrpp(g.pop("patch"), input_channels=channels, **g, **kw)
    return make


def test_policy_follows_the_device_and_can_be_forced():
    cpu, meta = torch.zeros(1), torch.zeros(1, device="meta")
    assert use_cpu_fast_paths(cpu) and not use_cpu_fast_paths(meta)
    with execution_policy("device"):
        assert not use_cpu_fast_paths(cpu)
        with execution_policy("cpu"):
            assert use_cpu_fast_paths(meta)
        assert not use_cpu_fast_paths(cpu)
    assert use_cpu_fast_paths(cpu) and not use_cpu_fast_paths(meta)
    with pytest.raises(ValueError, match="policy must be one of"):
        with execution_policy("cuda"):
            pass


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("variant", [
    dict(share_ef_projection=True, projection_bias=True, fusion="concat", spatial_layout="official"),
    dict(share_ef_projection=False, projection_bias=True, fusion="concat", num_conv_blocks=2),
    dict(share_ef_projection=True, projection_bias=False, fusion="sum"),
], ids=["synapse", "acdc", "tumor"])
def test_both_policies_compute_the_same_outputs_and_gradients(tiny, geometry, batch, variant):
    torch.manual_seed(0)
    model = tiny(geometry, channels=2, attn_drop=0.0, proj_drop=0.0, **variant).double().train()
    with torch.no_grad():  # make the attention matter: gamma 1e-6 would hide it
        for name, p in model.named_parameters():
            if name.endswith("gamma") or name.endswith("pos_embed"):
                p.normal_()
    x = 3 * torch.randn(batch, 2, *GEOMETRIES[geometry]["patch"], dtype=torch.float64) + 1
    layouts = []
    model.conv_branch.register_forward_hook(lambda m, i, o: layouts.append(channels_last.is_channels_last(o)))
    results = {}
    for policy in ("cpu", "device"):
        model.zero_grad()
        with execution_policy(policy):
            out = model(x)
            sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in out).backward()
        results[policy] = [o.detach() for o in out], {n: p.grad.clone() for n, p in model.named_parameters()}
    assert layouts == [True, False]  # the policies did take different paths
    (out_cpu, grad_cpu), (out_device, grad_device) = results["cpu"], results["device"]
    for a, b in zip(out_cpu, out_device):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for name, g in grad_cpu.items():
        torch.testing.assert_close(grad_device[name], g, rtol=1e-9, atol=1e-9, msg=name)


class _LayoutAndPrecisionWatch(TorchDispatchMode):
    """Records operations whose output is channels-last or float64: the CPU fast paths' marks."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if not isinstance(t, torch.Tensor):
                continue
            if t.dtype == torch.float64:
                self.seen[f"float64 {func}"] += 1
            if t.ndim in (4, 5) and t.shape[1] > 1 and t[0, :, 0].numel() > t.shape[1] and not t.is_contiguous() \
                    and t.is_contiguous(memory_format=channels_last.channels_last_format(t.ndim)):
                self.seen[f"channels-last {func}"] += 1
        return out


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_cpu_only_operations_run_for_cpu_tensors_only(tiny, device, monkeypatch):
    calls: Counter[str] = Counter()

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(channels_last._InstanceNormFunction, "apply",
                        spy("channels-last instance norm", channels_last._InstanceNormFunction.apply))
    monkeypatch.setattr(attention, "_cpu_attention_with_dropout",
                        spy("chunked attention dropout", attention._cpu_attention_with_dropout))
    monkeypatch.setattr(functional, "_cpu_channel_linear", spy("per-sample mm", functional._cpu_channel_linear))
    monkeypatch.setattr(unetr_pp, "to_channels_last", spy("to channels-last", unetr_pp.to_channels_last))
    monkeypatch.setattr(batch_folding, "folded_convolution", spy("batch folding", batch_folding.folded_convolution))
    with torch.device(device):
        model = tiny("3d").train()  # attention and channel dropout on, deep supervision on
        x = torch.randn(1, 1, *PATCH_3D)  # a batch of one, which the stage convolutions fold on CPU
    with _LayoutAndPrecisionWatch() as watch:
        out = model(x)
        sum(o.square().mean() for o in out).backward()
    if device == "cpu":  # the spies and the watch see the fast paths where they belong
        assert set(calls) == {"channels-last instance norm", "chunked attention dropout", "per-sample mm",
                              "to channels-last", "batch folding"}
        assert any(k.startswith("channels-last") for k in watch.seen)
    else:
        assert not calls, calls
        assert not watch.seen, watch.seen


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_bf16_autocast_is_finite_and_close_to_fp32_on_both_paths(tiny, geometry, policy):
    torch.manual_seed(0)
    model = tiny(geometry, channels=2).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    x = torch.randn(1, 2, *GEOMETRIES[geometry]["patch"])
    with torch.no_grad(), execution_policy(policy):
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    for a, b in zip(out, expected):
        assert torch.isfinite(a).all()
        assert (a.float() - b).norm() / b.norm() < 5e-2


def test_op_counter_counts_kernels_not_views():
    x = torch.empty(4, 3, device="meta")
    with OpCounter() as counter:
        (x.t().unsqueeze(0) * 2).sum()
    assert counter.counts == {"mul": 1, "sum": 1}


def test_synapse_training_step_on_a_non_cpu_device_is_lean():
    """At most 3,700 aten operations per Synapse training step at batch 2 on a non-CPU device."""
    shape = (SYNAPSE.batch, 1, *SYNAPSE.patch)
    ours = sum(count_training_step(lambda: build_network(SYNAPSE, UNETRPP_FUSED), shape).values())
    cpu_path = count_training_step(lambda: build_network(SYNAPSE, UNETRPP_FUSED), shape, policy="cpu")
    assert ours <= 3700, ours
    assert sum(cpu_path.values()) > ours  # the counter sees the CPU path's chunk loops when forced
