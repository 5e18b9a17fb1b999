"""Every weight of UNETR++ is used by calling its module, so the tools of the field work on it:
forward hooks (every parameter-holding module runs once per forward, on CPU and on the meta device,
in training and inference), a Grad-CAM map from a hook on a head, a LoRA-style wrapper on an
attention projection, torch.nn.utils.prune through training steps, and dynamic int8 quantisation."""
from __future__ import annotations

import functools
from collections import Counter
from typing import Callable

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from conftest import TINY_UNETRPP
from nnunetv2_unetrpp.network_architecture import OFFICIAL_VARIANTS, UNETRPP
from nnunetv2_unetrpp.network_architecture.official_variants import official_network_kwargs

PATCH_2D = (64, 64)


def official_architecture_at_a_small_patch(variant: str) -> UNETRPP:
    """The official `variant` (channels, depths, E/F sharing, fusion, conv blocks, layout) at the
    smallest patch its strides allow, with two voxels in the deepest grid (BatchNorm trains)."""
    v = OFFICIAL_VARIANTS[variant]
    kwargs = official_network_kwargs(variant)
    kwargs["patch_size"] = (2 * kwargs["stem_stride"][0] * 8,) + tuple(8 * s for s in kwargs["stem_stride"][1:])
    return UNETRPP(v.input_channels, v.num_classes, **kwargs)


def _tiny_2d() -> UNETRPP:
    return UNETRPP(2, 3, PATCH_2D, conv_op=nn.Conv2d, stem_stride=(4, 4), **TINY_UNETRPP)


NETWORKS: dict[str, Callable[[], UNETRPP]] = {
    **{v: functools.partial(official_architecture_at_a_small_patch, v) for v in ("synapse", "acdc", "lung", "tumor")},
    "2d": _tiny_2d,
}


def count_forwards(model: nn.Module, x: torch.Tensor) -> tuple[Counter[str], list[str]]:
    """How often each module that holds parameters itself ran its forward during `model(x)`."""
    calls: Counter[str] = Counter()
    holders = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    handles = [model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: calls.update([name]))
               for name in holders]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls, holders


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("network", NETWORKS)
def test_every_parameter_holding_module_runs_its_forward_once(network, device):
    """In training (batch 2, dropout and BatchNorm statistics on) and in inference, with deep
    supervision and without it, as nnU-Net predicts; there the auxiliary heads are not computed."""
    with torch.device(device):
        model = NETWORKS[network]()
    for mode, batch, deep_supervision in (("train", 2, True), ("eval", 1, True), ("eval", 1, False)):
        model.train(mode == "train")
        model.deep_supervision = deep_supervision
        x = torch.randn(batch, model.input_channels, *model.patch_size, device=device)
        calls, holders = count_forwards(model, x)
        skipped = set() if deep_supervision else {"decoder.seg_layers.1", "decoder.seg_layers.2"}
        assert len(holders) > 50
        wrong = {name: calls[name] for name in holders if calls[name] != (0 if name in skipped else 1)}
        assert wrong == {}, (mode, deep_supervision)


def _tiny_3d(**kwargs) -> UNETRPP:
    """A tiny 3D UNETR++ whose attention matters (gamma 0.5 rather than 1e-6)."""
    model = UNETRPP(1, 3, (16, 32, 32), stem_stride=(2, 4, 4), **TINY_UNETRPP, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return model


def test_grad_cam_from_a_hook_on_the_head_explains_the_logit():
    """Grad-CAM on the full-resolution head: the gradient of a class's summed logit with respect to
    the head's input is that class's 1x1 weight at every voxel, so the map must equal
    relu(logit - bias) of that class."""
    model = _tiny_3d(deep_supervision=False).eval()
    head = model.decoder.seg_layers[0]
    captured = {}

    def keep_features(module, inputs, output):
        captured["features"] = inputs[0]
        inputs[0].register_hook(lambda g: captured.__setitem__("gradient", g))

    handle = head.register_forward_hook(keep_features)
    logits = model(torch.randn(1, 1, 16, 32, 32))
    handle.remove()
    target = 2
    logits[:, target].sum().backward()
    features, gradient = captured["features"], captured["gradient"]
    channel_weights = gradient.mean(dim=(2, 3, 4), keepdim=True)
    cam = torch.relu((channel_weights * features).sum(1))
    assert cam.shape == (1, 16, 32, 32) and cam.max() > 0
    expected = torch.relu(logits[:, target] - head.bias[target])
    torch.testing.assert_close(cam, expected.detach(), rtol=1e-4, atol=1e-5)


class LoRA(nn.Module):
    """base(x) + (alpha / rank) * up(down(x)), `up` zero at first (Hu et al., 2021), base frozen."""

    def __init__(self, base: nn.Linear, rank: int = 2, alpha: float = 4.0) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))


def _attention_blocks(model: UNETRPP) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if name.endswith(".attention")]


def test_lora_wrapper_on_the_attention_projections():
    torch.manual_seed(0)
    model = _tiny_3d(attn_drop=0.0, proj_drop=0.0).eval()
    x = torch.randn(2, 1, 16, 32, 32)
    with torch.no_grad():
        before = model(x)[0]
    for attention in _attention_blocks(model):
        attention.qkvv = LoRA(attention.qkvv)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], before, rtol=0, atol=0)  # a zero update changes nothing
        wrapped = _attention_blocks(model)[0].qkvv
        wrapped.up.weight.normal_()
        assert (model(x)[0] - before).abs().max() > 1e-3  # a non-zero one changes the output
        wrapped.up.weight.zero_()

    model.requires_grad_(False)
    lora = [p for a in _attention_blocks(model) for p in (*a.qkvv.down.parameters(), *a.qkvv.up.parameters())]
    for p in lora:
        p.requires_grad_(True)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam(lora, lr=1e-2)
    target = torch.randn_like(before)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = (model(x)[0] - target).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(p.abs().sum() > 0 for a in _attention_blocks(model) for p in a.qkvv.up.parameters())


def test_pruning_a_head_and_a_projection_holds_through_training_steps():
    torch.manual_seed(0)
    model = _tiny_3d(attn_drop=0.0, proj_drop=0.0).train()
    head, qkvv = model.decoder.seg_layers[0], model.encoder.stages[0][0].attention.qkvv
    prune.l1_unstructured(head, "weight", amount=0.5)
    prune.l1_unstructured(qkvv, "weight", amount=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 1, 16, 32, 32)
    for _ in range(2):
        optimizer.zero_grad()
        sum(o.square().mean() for o in model(x)).backward()
        optimizer.step()
    for module in (head, qkvv):
        assert module.weight_orig.grad is not None
        assert torch.equal(module.weight == 0, module.weight_mask == 0)  # pruned entries stay zero
        assert (module.weight_orig[module.weight_mask == 0] != 0).any()  # while their originals trained on
    # the pruned network computes what its masked weights compute, not what the originals would
    model.eval()
    originals = head.weight_orig.detach().clone()
    with torch.no_grad():
        pruned = model(x)[0]
        for module in (head, qkvv):
            prune.remove(module, "weight")
        torch.testing.assert_close(model(x)[0], pruned, rtol=0, atol=0)
        head.weight.copy_(originals)
        assert (model(x)[0] - pruned).abs().max() > 1e-4


def test_dynamic_int8_quantisation_of_every_linear_is_close_to_float():
    torch.manual_seed(0)
    model = _tiny_3d(deep_supervision=False).eval()
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    quantised = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    assert linears > 0 and sum(isinstance(m, dynamic_linear) for m in quantised.modules()) == linears
    assert not any(type(m) is nn.Linear for m in quantised.modules())
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        expected, out = model(x), quantised(x)
    assert not torch.equal(out, expected)  # the int8 layers did run
    error = (out - expected).norm() / expected.norm()
    assert error < 2e-2, f"relative error {error:.2e}"
