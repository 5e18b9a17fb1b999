"""The official variants: parameter counts, and outputs of converted official weights against the
authors' implementation (tests/data, rebuilt by reference_fixtures.py)."""
from __future__ import annotations

import hashlib

import pytest
import torch

from reference_fixtures import (
    entry_value,
    hashed_uniform,
    load_reference,
    official_state_dict,
    reference_input,
    sample_indices,
)
from nnunetv2_unetrpp.benchmarking.network_cost import count_parameters
from nnunetv2_unetrpp.network_architecture.official_checkpoint import _rename
from nnunetv2_unetrpp.network_architecture import (
    OFFICIAL_VARIANTS,
    build_official_variant,
    convert_official_state_dict,
    identify_official_variant,
)


def _splitmix64_scalar(label: str, i: int) -> float:
    """One value of the fixture generator in plain Python integers, independent of numpy's uint64."""
    mask = (1 << 64) - 1
    x = (i * 0x9E3779B97F4A7C15 + int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return ((x ^ (x >> 31)) >> 11) / 2 ** 53


@pytest.mark.parametrize("label", ["input:synapse", "unetr_pp_encoder.stages.0.0.epa_block.E.weight"])
def test_fixture_generator_matches_plain_integer_arithmetic(label):
    values = hashed_uniform(label, 1000)
    assert values.dtype.name == "float64" and 0.0 <= values.min() and values.max() < 1.0
    assert [float(v) for v in values[[0, 1, 2, 511, 999]]] == [_splitmix64_scalar(label, i) for i in (0, 1, 2, 511, 999)]


def test_reference_data_is_part_of_the_repository():
    for variant in ("synapse", "acdc"):
        fx = load_reference(variant)
        assert fx["variant"] == variant and len(fx["deep_supervision_outputs"]) == 3
        assert all(len(o["sample_values"]) == 4096 for o in fx["deep_supervision_outputs"])


@pytest.mark.parametrize("variant", ["synapse", "btcv", "acdc", "lung", "tumor"])
def test_unique_parameter_count_equals_official(variant):
    with torch.device("meta"):
        model = build_official_variant(variant)
    assert count_parameters(model) == OFFICIAL_VARIANTS[variant].unique_parameters


@pytest.fixture(scope="module", params=["synapse", "acdc"])
def converted(request):
    fx = load_reference(request.param)
    official = official_state_dict(fx)
    model = build_official_variant(request.param)
    assert count_parameters(model) == fx["official_unique_parameters"]
    model.load_state_dict(convert_official_state_dict(official, request.param), strict=True)
    return request.param, fx, official, model.eval()


def test_converted_weights_reproduce_official_outputs(converted):
    variant, fx, _, model = converted
    with torch.no_grad():
        outputs = model(reference_input(fx))
    assert len(outputs) == 3
    for i, (out, ref) in enumerate(zip(outputs, fx["deep_supervision_outputs"])):
        assert list(out.shape) == ref["shape"]
        sample = out.reshape(-1)[sample_indices(fx, i)].double()
        expected = torch.tensor(ref["sample_values"], dtype=torch.float64)
        rel = (sample - expected).abs().max() / expected.abs().max()
        assert rel < 1e-4, f"{variant} output {i}: relative error {rel:.2e}"
        means = out.double().mean(dim=(0, *range(2, out.ndim)))
        torch.testing.assert_close(means, torch.tensor(ref["channel_mean"], dtype=torch.float64), rtol=1e-4, atol=1e-4)


def test_converter_accepts_checkpoint_dict_and_module_prefix(converted):
    variant, _, official, _ = converted
    checkpoint = {"epoch": 1000, "state_dict": {"module." + k: v for k, v in official.items()}, "optimizer_state_dict": None}
    plain = convert_official_state_dict(official, variant)
    wrapped = convert_official_state_dict(checkpoint, variant)
    assert plain.keys() == wrapped.keys()
    assert all(torch.equal(plain[k], wrapped[k]) for k in plain)


def test_converter_names_the_variant_a_checkpoint_belongs_to(converted):
    variant, _, official, _ = converted
    assert identify_official_variant(official) == variant
    other = "acdc" if variant == "synapse" else "synapse"
    with pytest.raises(ValueError, match=f"looks like the official '{variant}' variant, not '{other}'"):
        convert_official_state_dict(official, other)


def test_converter_rejects_non_unetrpp_checkpoints():
    with pytest.raises(ValueError, match="does not look like an official UNETR"):
        convert_official_state_dict({"encoder.weight": torch.zeros(1)}, "synapse")


def test_converter_refuses_unshared_projections_for_a_shared_variant():
    official = official_state_dict(load_reference("synapse"))
    key = "unetr_pp_encoder.stages.0.0.epa_block.F.weight"
    official[key] = official[key] + 1.0
    with pytest.raises(ValueError, match="shares E and F"):
        convert_official_state_dict(official, "synapse")


def _official_like(variant: str) -> dict:
    """An official-layout state_dict for a variant without a reference file, derived from the key
    layout of the reference files as the authors' code names them: Lung is ACDC's layout,
    BraTS ("tumor") is Synapse's with one bias-free (N, p) `EF` matrix and no output projections."""
    source = "acdc" if variant == "lung" else "synapse"
    with torch.device("meta"):
        target = build_official_variant(variant).state_dict()
    keys = []
    for key, _, _ in load_reference(source)["state_dict_keys"]:
        if variant == "tumor":
            if ".epa_block.out_proj" in key or ".epa_block.F." in key or key.endswith(".epa_block.E.bias"):
                continue
            key = key.replace(".epa_block.E.weight", ".epa_block.EF")
        keys.append(key)
    official = {}
    for key in keys:  # this variant's shapes, read off the converted model under the converted name
        shape = tuple(target[_rename(key)].shape)
        shape = shape[::-1] if key.endswith(".EF") else shape
        dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        official[key] = entry_value(key, shape, dtype)
    return official


@pytest.mark.parametrize("variant", ["lung", "tumor"])
def test_converter_handles_variants_without_reference_outputs(variant):
    official = _official_like(variant)
    assert identify_official_variant(official) == variant
    model = build_official_variant(variant)
    model.load_state_dict(convert_official_state_dict(official, variant), strict=True)
    if variant == "tumor":  # the (N, p) matrix is stored transposed, as a (p, N) token projection
        ef = official["unetr_pp_encoder.stages.0.0.epa_block.EF"]
        assert torch.equal(model.encoder.stages[0][0].attention.e_proj.weight, ef.t())
        assert model.encoder.stages[0][0].attention.f_proj is None
