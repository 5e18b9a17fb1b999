"""UNETR++ with general geometry: shapes, errors, gradients, state_dict round trips, init."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnunetv2_unetrpp.network_architecture import EPA, UNETRPP, TokenProjection, stage_grids

GEOMETRIES = {
    "isotropic": dict(patch=(32, 32, 32), stem_stride=(4, 4, 4), strides=[(2, 2, 2)] * 3),
    "anisotropic_stem": dict(patch=(16, 64, 64), stem_stride=(1, 4, 4), strides=[(2, 2, 2)] * 3),
    "odd_grid": dict(patch=(24, 80, 80), stem_stride=(2, 4, 4), strides=[(2, 2, 2), (2, 2, 2), (1, 1, 1)]),
    "odd_grid_last_1x2x2": dict(patch=(24, 80, 96), stem_stride=(2, 4, 4), strides=[(2, 2, 2), (2, 1, 2), (1, 2, 2)]),
    "2d": dict(patch=(64, 96), stem_stride=(4, 4), strides=[(2, 2)] * 3, conv_op=nn.Conv2d),
}


@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("channels", [1, 4])
def test_deep_supervision_shapes(tiny_unetrpp, name, channels):
    g = dict(GEOMETRIES[name])
    patch = g.pop("patch")
    model = tiny_unetrpp(patch, input_channels=channels, **g).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, channels, *patch))
    expected = [tuple(p // s for p, s in zip(patch, stride)) for stride in model.output_strides]
    assert [tuple(o.shape) for o in outputs] == [(2, 3, *e) for e in expected]
    assert expected[1] == tuple(p // s for p, s in zip(patch, g["stem_stride"]))


def test_stage_grids_of_odd_geometry():
    grids = stage_grids((24, 80, 96), (2, 4, 4), [(2, 2, 2), (2, 1, 2), (1, 2, 2)])
    assert grids == [(12, 20, 24), (6, 10, 12), (3, 10, 6), (3, 5, 3)]


def test_patch_that_does_not_fit_names_sizes_that_work():
    with pytest.raises(ValueError) as e:
        stage_grids((24, 80, 80), (2, 4, 4), [(2, 2, 2), (2, 2, 2), (1, 2, 2)])
    message = str(e.value)
    assert "(24, 80, 80)" in message and "total stride (8, 32, 32)" in message
    assert "(24, 64, 64) or (24, 96, 96)" in message
    with pytest.raises(ValueError, match=r"\(4, 32, 32\) or \(4, 32, 32\)"):
        stage_grids((2, 8, 8), (1, 4, 4), [(2, 2, 2), (1, 2, 2), (2, 2, 2)])


def test_wrong_input_size_is_a_clear_error(tiny_unetrpp):
    model = tiny_unetrpp((32, 32, 32))
    with pytest.raises(ValueError, match=r"built for inputs \(B, 1, 32, 32, 32\) and got \(1, 1, 32, 32, 48\)"):
        model(torch.randn(1, 1, 32, 32, 48))
    with pytest.raises(ValueError, match="built for inputs"):
        model(torch.randn(1, 2, 32, 32, 32))


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_every_parameter_gets_a_gradient(tiny_unetrpp, deep_supervision):
    model = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4), deep_supervision=deep_supervision).train()
    out = model(torch.randn(2, 1, 16, 32, 32))
    loss = sum(o.square().mean() for o in out) if deep_supervision else out.square().mean()
    loss.backward()
    unused = {f"decoder.seg_layers.{i}.{w}" for i in (1, 2) for w in ("weight", "bias")}
    for name, p in model.named_parameters():
        if not deep_supervision and name in unused:
            assert p.grad is None and not p.requires_grad  # frozen, so that DDP sees no unused parameter
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_state_dict_round_trip_with_and_without_deep_supervision(tiny_unetrpp):
    kw = dict(stem_stride=(2, 4, 4))
    with_ds = tiny_unetrpp((16, 32, 32), deep_supervision=True, **kw).eval()
    without_ds = tiny_unetrpp((16, 32, 32), deep_supervision=False, **kw).eval()
    without_ds.load_state_dict(with_ds.state_dict(), strict=True)
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(without_ds(x), with_ds(x)[0])
        with_ds.load_state_dict(without_ds.state_dict(), strict=True)


def epa_by_the_equations(epa: EPA, x: torch.Tensor) -> torch.Tensor:
    """EPA's output written out from the paper's equations (eval mode), tokens (B, N, C) throughout:
    the oracle for the layouts and fusions that the authors' recorded outputs do not cover."""
    B, N, C = x.shape
    h, d = epa.num_heads, C // epa.num_heads
    W = epa.qkvv.weight
    q, k, v_channel, v_spatial = ((x @ W[i * C:(i + 1) * C].T).reshape(B, N, h, d).permute(0, 2, 3, 1) for i in range(4))
    E = epa.e_proj
    F_ = epa.f_proj or epa.e_proj
    project = lambda P, t: t @ P.weight.T + (0 if P.bias is None else P.bias)  # noqa: E731  (B, h, d, p)
    k_projected, v_projected = project(E, k), project(F_, v_spatial)
    q_hat, k_hat = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    attn_channel = (q_hat @ k_hat.transpose(-2, -1) * epa.channel_temperature).softmax(-1)  # (B, h, d, d)
    x_channel = (attn_channel @ v_channel).permute(0, 3, 1, 2).reshape(B, N, C)
    attn_spatial = (q_hat.transpose(-2, -1) @ k_projected * epa.spatial_temperature).softmax(-1)  # (B, h, N, p)
    x_spatial = attn_spatial @ v_projected.transpose(-2, -1)  # (B, h, N, d)
    if epa.spatial_layout == "official":  # the authors' reshape of a (B, d, h, N) buffer
        x_spatial = x_spatial.permute(0, 3, 1, 2).reshape(B, N, C)
    else:
        x_spatial = x_spatial.transpose(1, 2).reshape(B, N, C)
    if epa.fusion == "sum":
        return x_spatial + x_channel
    linear = lambda m, t: t @ m.weight.T + m.bias  # noqa: E731
    return torch.cat((linear(epa.spatial_out, x_spatial), linear(epa.channel_out, x_channel)), dim=-1)


@pytest.mark.parametrize("layout", ["official", "corrected"])
@pytest.mark.parametrize("variant", [
    dict(share_ef_projection=True, projection_bias=True, fusion="concat"),
    dict(share_ef_projection=False, projection_bias=True, fusion="concat"),
    dict(share_ef_projection=True, projection_bias=False, fusion="sum"),
], ids=["synapse", "acdc", "tumor"])
def test_attention_computes_the_equations(layout, variant):
    torch.manual_seed(0)
    epa = EPA(num_tokens=96, channels=16, proj_size=8, num_heads=2, spatial_layout=layout, **variant).double().eval()
    with torch.no_grad():
        for p in epa.parameters():  # temperatures away from 1, biases away from 0
            p.normal_(0, 0.5)
    x = 3 * torch.randn(2, 96, 16, dtype=torch.float64) + 1
    with torch.no_grad():
        torch.testing.assert_close(epa(x), epa_by_the_equations(epa, x), rtol=1e-10, atol=1e-10)


def test_official_and_corrected_layouts_differ(tiny_unetrpp):
    x = torch.randn(1, 1, 16, 32, 32)
    outs = []
    for layout in ("official", "corrected"):
        torch.manual_seed(0)
        model = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4), spatial_layout=layout).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("gamma"):
                    p.fill_(1.0)
            outs.append(model(x)[0])
    assert (outs[0] - outs[1]).abs().max() > 1e-3


def test_official_initialisation():
    torch.manual_seed(0)
    model = UNETRPP(1, 3, (32, 64, 64), stem_stride=(2, 4, 4))
    block = model.encoder.stages[0][0]
    qkvv = block.attention.qkvv.weight
    assert abs(qkvv.std().item() - 0.02) < 0.002 and qkvv.abs().max() <= 2.0
    assert abs(block.attention.e_proj.weight.std().item() - 0.02) < 0.002
    assert torch.all(block.attention.e_proj.bias == 0) and torch.all(block.attention.spatial_out.bias == 0)
    assert torch.all(block.gamma == 1e-6) and torch.all(block.pos_embed == 0)
    assert torch.all(block.attention.channel_temperature == 1) and torch.all(block.attention.spatial_temperature == 1)
    # decoder Linears keep PyTorch's default: uniform(+-1/sqrt(fan_in))
    dec = model.decoder.stages[0].blocks[0].attention
    fan_in = dec.qkvv.weight.shape[1]
    assert dec.qkvv.weight.abs().max() <= 1 / math.sqrt(fan_in)
    assert dec.qkvv.weight.std() > 0.1 / math.sqrt(fan_in) * 3  # far wider than std 0.02 would be
    tumor_like = TokenProjection(num_tokens=512, proj_size=32, bias=False)
    bound = 1 / math.sqrt(32)
    assert tumor_like.weight.abs().max() <= bound and tumor_like.weight.abs().max() > 0.9 * bound


def test_invalid_configuration_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        EPA(num_tokens=64, channels=30, proj_size=8, num_heads=4)
    with pytest.raises(ValueError, match="spatial_layout"):
        UNETRPP(1, 2, (32, 32, 32), spatial_layout="transposed")
    with pytest.raises(ValueError, match="need 3 entries"):
        UNETRPP(1, 2, (32, 32, 32), stem_stride=(4, 4))


def test_attention_dropout_is_unbiased_and_drops_at_rate_p():
    epa = EPA(num_tokens=64, channels=16, proj_size=8, num_heads=2, attn_drop=0.3, fusion="sum")
    x = torch.randn(1, 64, 16)
    with torch.no_grad():
        expected = epa.eval()(x)
        epa.train()
        samples = torch.stack([epa(x) for _ in range(400)])
    assert not torch.allclose(samples[0], samples[1])  # dropout is active in training
    error = (samples.mean(0) - expected).norm() / expected.norm()
    assert error < 0.05, f"mean over 400 dropout draws deviates by {error:.3f}"


def test_state_dict_of_version_0_1_0_loads(tiny_unetrpp):
    """Version 0.1.0 named E/F `k_proj`/`v_proj` and the temperatures `temperature`/`temperature2`."""
    import re
    source = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4), share_ef_projection=False).eval()
    old_names = {}
    for key, value in source.state_dict().items():
        old = re.sub(r"\.attention\.e_proj\.", ".attention.k_proj.", key)
        old = re.sub(r"\.attention\.f_proj\.", ".attention.v_proj.", old)
        old = re.sub(r"\.attention\.channel_temperature$", ".attention.temperature", old)
        old = re.sub(r"\.attention\.spatial_temperature$", ".attention.temperature2", old)
        old_names[old] = value
    assert any(".attention.v_proj." in k for k in old_names) and any(k.endswith(".temperature2") for k in old_names)
    target = tiny_unetrpp((16, 32, 32), stem_stride=(2, 4, 4), share_ef_projection=False).eval()
    target.load_state_dict(old_names, strict=True)
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
