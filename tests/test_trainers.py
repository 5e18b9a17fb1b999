"""Trainer mechanics in-process: geometry from plans, deep-supervision scales and weights,
regions and the ignore label, and the errors users can run into."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2_unetrpp.compat import check_nnunet_version
from nnunetv2_unetrpp.network_architecture import build_official_variant, convert_official_state_dict
from nnunetv2_unetrpp.trainers import (
    DEEP_SUPERVISION_WEIGHTS,
    nnUNetTrainerUNETRPP,
    nnUNetTrainerUNETRPP_SynapseGeometry,
    nnUNetTrainerUNETRPPNoDeepSupervision,
)
from nnunetv2_unetrpp.network_architecture.unetr_pp import UNETRPP
from nnunetv2_unetrpp.trainers.plans_geometry import (
    LEGACY_PLANS_KEY, architecture_block, prepare_configuration, strides_from_pooling)
from reference_fixtures import load_reference, official_state_dict


@pytest.fixture
def plans_with(make_plans):
    """`plans_with(patch_size, strides)`: plans of Dataset777_Unit with a configuration "cfg" and a
    cascade configuration that inherits from it."""
    def make(patch_size, strides):
        plans = make_plans(patch_size, strides, configuration="cfg", dataset_name="Dataset777_Unit")
        plans["configurations"]["cascade"] = {"inherits_from": "cfg", "previous_stage": "cfg"}
        return plans
    return make


def make_trainer(cls, plans, dataset_json, configuration="cfg", tmp_path=None):
    return cls(plans, configuration, 0, dataset_json, torch.device("cpu"))


ROOT = Path(__file__).resolve().parents[1]
LABELS = {"channel_names": {"0": "CT", "1": "T1"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 2,
          "file_ending": ".nii.gz"}


@pytest.fixture(autouse=True)
def nnunet_folders(tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    data = tmp_path / "nnUNet_preprocessed" / "Dataset777_Unit" / "nnUNetPlans_cfg"
    data.mkdir(parents=True)
    (data / "case.b2nd").touch()  # initialize() infers the dataset class from the file endings


def test_stem_and_strides_from_nnunet_pooling():
    synapse_like = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert strides_from_pooling(synapse_like) == ([1, 4, 4], [[2, 2, 2], [2, 2, 2], [2, 2, 2]])
    isotropic = [[1, 1, 1]] + [[2, 2, 2]] * 5
    assert strides_from_pooling(isotropic) == ([4, 4, 4], [[2, 2, 2]] * 3)
    shallow_2d = [[1, 1], [2, 2], [2, 2], [2, 2]]
    assert strides_from_pooling(shallow_2d) == ([4, 4], [[2, 2], [1, 1], [1, 1]])


def test_plans_get_geometry_and_a_fitting_patch_before_nnunet_records_them(plans_with):
    plans = plans_with((20, 100, 100), [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    original = copy.deepcopy(plans)
    notes = prepare_configuration(plans, "cfg")
    config = plans["configurations"]["cfg"]
    assert "unetrpp" not in config
    assert config["architecture"]["network_class_name"] == "nnunetv2_unetrpp.network_architecture.unetr_pp.UNETRPP"
    # nnU-Net's convention: full resolution, stem, three downsamplings
    assert config["architecture"]["arch_kwargs"]["strides"] == [[1, 1, 1], [1, 4, 4], [2, 2, 2], [2, 2, 2], [1, 1, 1]]
    assert config["architecture"]["arch_kwargs"]["patch_size"] == [20, 96, 96]
    assert config["patch_size"] == [20, 96, 96]  # multiples of the total stride (4, 16, 16), rounded down
    assert any("changed to [20, 96, 96]" in n for n in notes)
    assert original["configurations"]["cfg"]["patch_size"] == [20, 100, 100]
    trainer = make_trainer(nnUNetTrainerUNETRPP, plans, LABELS)
    assert trainer.configuration_manager.patch_size == [20, 96, 96]
    assert trainer.my_init_kwargs["plans"]["configurations"]["cfg"]["patch_size"] == [20, 96, 96]


def test_tiny_patch_is_grown_to_one_token_never_zero(plans_with):
    plans = plans_with((2, 8, 8), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    prepare_configuration(plans, "cfg", {"stem_stride": [2, 4, 4], "strides": [[2, 2, 2]] * 3})
    assert plans["configurations"]["cfg"]["patch_size"] == [16, 32, 32]


def test_cascade_configuration_inherits_and_gets_its_own_geometry(plans_with):
    plans = plans_with((16, 32, 32), [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]])
    prepare_configuration(plans, "cascade")
    assert plans["configurations"]["cascade"]["architecture"]["arch_kwargs"]["strides"][1] == [4, 4, 4]
    assert "UNETRPP" not in plans["configurations"]["cfg"]["architecture"]["network_class_name"]


@pytest.mark.parametrize("trainer_cls", [nnUNetTrainerUNETRPP, nnUNetTrainerUNETRPPNoDeepSupervision])
@pytest.mark.parametrize("labels", [
    {"background": 0, "a": 1, "b": 2},
    {"background": 0, "whole": [1, 2], "core": 2},  # regions, BraTS style
    {"background": 0, "a": 1, "b": 2, "ignore": 3},  # ignore label
], ids=["labels", "regions", "ignore"])
def test_training_step_with_deep_supervision_at_the_network_scales(plans_with, trainer_cls, labels):
    plans = plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    dataset_json = {**LABELS, "labels": labels}
    if "whole" in labels:
        dataset_json["regions_class_order"] = [1, 2]
    trainer = make_trainer(trainer_cls, plans, dataset_json)
    trainer.initialize()
    network = trainer.network
    assert network.decoder.deep_supervision == trainer.enable_deep_supervision
    x = torch.randn(2, 2, 8, 32, 32)
    seg = torch.from_numpy(np.random.default_rng(0).integers(0, 4 if "ignore" in labels else 3, (2, 1, 8, 32, 32)))
    if trainer.enable_deep_supervision:
        scales = trainer._get_deep_supervision_scales()
        assert scales == [[1.0] * 3, [1 / s for s in network.stem_stride],
                          [1 / (s * t) for s, t in zip(network.stem_stride, network.strides[0])]]
        assert trainer.loss.weight_factors == DEEP_SUPERVISION_WEIGHTS
        targets = [torch.nn.functional.interpolate(seg.float(), scale_factor=s, mode="nearest").long() for s in scales]
        outputs = network(x)
        assert [o.shape[2:] for o in outputs] == [t.shape[2:] for t in targets]
        batch = {"data": x, "target": targets}
    else:
        assert trainer._get_deep_supervision_scales() is None
        batch = {"data": x, "target": seg}
    if trainer.label_manager.has_regions:  # nnU-Net converts labels to regions in its data loader
        regions = trainer.label_manager.foreground_regions
        to_regions = lambda t: torch.cat([torch.isin(t, torch.tensor(r if isinstance(r, (list, tuple)) else [r])).long()
                                          for r in regions], 1)
        batch["target"] = [to_regions(t) for t in batch["target"]] if isinstance(batch["target"], list) else to_regions(batch["target"])
    losses = []
    for _ in range(2):  # nnU-Net's step (SGD, clipping) on one batch, with the same dropout masks each time
        torch.manual_seed(0)
        losses.append(float(trainer.train_step(batch)["loss"]))
    assert np.isfinite(losses).all() and losses[0] > losses[1], losses  # it learns the batch
    trainer.set_deep_supervision_enabled(False)
    assert network.decoder.deep_supervision is False


def test_synapse_geometry_variant_accepts_converted_official_weights(plans_with):
    plans = plans_with((32, 64, 64), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    trainer = make_trainer(nnUNetTrainerUNETRPP_SynapseGeometry, plans, {**LABELS, "channel_names": {"0": "CT"}})
    assert trainer.configuration_manager.patch_size == [64, 128, 128]
    network = nnUNetTrainerUNETRPP_SynapseGeometry.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, 14, True)
    official = convert_official_state_dict(
        official_state_dict(load_reference("synapse")), "synapse")
    network.load_state_dict(official, strict=True)
    assert network.state_dict().keys() == build_official_variant("synapse").state_dict().keys()


def test_plans_of_version_0_1_0_rebuild_the_network(plans_with):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    # the private record of versions <= 0.2.0, next to the CNN's architecture block
    record = {
        "feature_size": 16, "dims": [32, 64, 128, 256], "depths": [3, 3, 3, 3], "decoder_depth": 3, "num_heads": 4,
        "proj_sizes": [64, 64, 64, 32], "decoder_proj_size": 64, "attn_drop": 0.15, "num_conv_blocks": 1,
        "projection_bias": True, "fusion": "concat", "spatial_layout": "corrected",
        "stem_stride": [2, 4, 4], "strides": [[2, 2, 2], [1, 1, 1], [1, 1, 1]]}

    def build(**sharing):
        legacy = copy.deepcopy(plans)
        legacy["configurations"]["cfg"][LEGACY_PLANS_KEY] = {**record, **sharing}
        manager = PlansManager(legacy)
        return nnUNetTrainerUNETRPP.build_network_architecture(manager, manager.get_configuration("cfg"), 2, 3, False)

    def shapes(network):
        return {k: v.shape for k, v in network.state_dict().items()}

    for shared in (False, True):  # the 0.1.0 name share_kv_projection means what share_ef_projection means now
        old, current = build(share_kv_projection=shared), build(share_ef_projection=shared)
        assert shapes(old) == shapes(current)
        assert (old.encoder.stages[0][0].attention.f_proj is None) == shared
        assert old.stem_stride == (2, 4, 4) and old.strides == [(2, 2, 2), (1, 1, 1), (1, 1, 1)]


def test_synapse_geometry_variant_refuses_a_2d_configuration(plans_with):
    plans = plans_with((64, 64), [[1, 1], [2, 2], [2, 2]])
    with pytest.raises(ValueError, match="is 2D but this UNETR.. variant needs a 3D patch"):
        make_trainer(nnUNetTrainerUNETRPP_SynapseGeometry, plans, LABELS)


def test_unknown_configuration_is_a_clear_error(plans_with):
    with pytest.raises(RuntimeError, match="configuration 3d_nope not found in plans"):
        make_trainer(nnUNetTrainerUNETRPP, plans_with((8, 32, 32), [[1, 1, 1], [2, 2, 2]]), LABELS, "3d_nope")


def test_checkpoint_of_another_geometry_is_a_clear_error(plans_with, tmp_path):
    plans = plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    trainer = make_trainer(nnUNetTrainerUNETRPP, plans, LABELS)
    trainer.initialize()
    other = plans_with((16, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    other_trainer = make_trainer(nnUNetTrainerUNETRPP, other, LABELS)
    other_trainer.initialize()
    checkpoint = {"network_weights": other_trainer.network.state_dict(), "init_args": {}, "current_epoch": 3,
                  "logging": trainer.logger.get_checkpoint(), "_best_ema": None,
                  "optimizer_state": other_trainer.optimizer.state_dict(), "grad_scaler_state": None}
    torch.save(checkpoint, tmp_path / "checkpoint_latest.pth")
    with pytest.raises(ValueError, match=r"do not fit this UNETR\+\+.*built for patch \(8, 32, 32\)"):
        trainer.load_checkpoint(str(tmp_path / "checkpoint_latest.pth"))


@pytest.mark.parametrize("installed", ["2.6.4", "2.7.2", "1.0"])
def test_nnunet_before_2_8_is_refused_because_external_trainers_need_2_8(installed):
    with pytest.raises(RuntimeError, match=rf"supports nnunetv2>=2\.8,<2\.9, but nnunetv2 {installed} is installed"
                                           r".* 2\.8\.0 is needed for nnUNet_extTrainer") as error:
        check_nnunet_version(installed)
    assert "pip install 'nnunetv2>=2.8,<2.9'" in str(error.value)


def test_nnunet_above_the_tested_range_warns_once_and_imports():
    import warnings
    from nnunetv2_unetrpp.compat import UntestedNnunetWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # "once" must come from check_nnunet_version, not the filters
        assert check_nnunet_version("2.8.0") == "2.8.0" and check_nnunet_version("2.8.1") == "2.8.1"
        assert not caught
        for installed in ("2.9.3", "2.9.3", "3.1"):
            assert check_nnunet_version(installed) == installed
    assert [str(w.message).split(";")[1].split(" is newer")[0] for w in caught] == [" nnunetv2 2.9.3", " nnunetv2 3.1"]
    assert all(w.category is UntestedNnunetWarning and w.filename == __file__ for w in caught)


def test_unreadable_nnunet_version_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cannot read the installed nnunetv2 version 'banana'"):
        check_nnunet_version("banana")


def _constraints() -> dict[str, str]:
    """constraints.txt as {canonical name: pinned version}."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (pin,) = requirement.specifier
            assert pin.operator == "==", line
            pins[canonicalize_name(requirement.name)] = pin.version
    return pins


def test_python_range_ranges_and_pins_agree():
    """setup.py's metadata (as installed) carries dependencies.py's ranges; every pin of constraints.txt lies in
    them and installs on the oldest Python that python_requires admits; the README names that Python."""
    import re
    from importlib.metadata import PackageNotFoundError, metadata, requires
    from importlib.metadata import version as installed_version

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version
    from nnunetv2_unetrpp.dependencies import INSTALL_REQUIRES, NNUNET_REQUIREMENT, PYTHON_REQUIRES

    def ranges(requirements) -> dict:
        return {canonicalize_name(r.name): r.specifier for r in map(Requirement, requirements) if r.marker is None}

    assert metadata("nnunetv2_unetrpp")["Requires-Python"] == PYTHON_REQUIRES, "reinstall: pip install -e ."
    assert ranges(requires("nnunetv2_unetrpp")) == ranges(INSTALL_REQUIRES)
    oldest_python = min(v for v in (Version(f"3.{minor}") for minor in range(30)) if v in SpecifierSet(PYTHON_REQUIRES))
    readme = (ROOT / "README.md").read_text()
    python_in_readme = re.search(r"Python (\d+\.\d+) or newer", readme)
    assert python_in_readme and Version(python_in_readme[1]) == oldest_python
    assert re.search(r"Supported: `([^`]+)`", readme)[1] == NNUNET_REQUIREMENT
    pins = _constraints()
    for name, specifier in ranges(INSTALL_REQUIRES).items():
        assert pins[name] in specifier, (name, pins[name], specifier)
    assert check_nnunet_version(pins["nnunetv2"]) == pins["nnunetv2"]
    checked = []
    for name, pinned in pins.items():
        try:
            if installed_version(name) != pinned:
                continue
            python = metadata(name)["Requires-Python"]
        except PackageNotFoundError:
            continue
        assert python is None or oldest_python in SpecifierSet(python), (name, pinned, python)
        checked.append(name)
    if not {"numpy", "scipy", "pandas"} <= set(checked):
        pytest.skip("this environment was not installed from constraints.txt")


def test_variants_declare_their_settings_as_class_attributes(plans_with):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP_50epochs, nnUNetTrainerUNETRPP_smoke
    from nnunetv2_unetrpp.trainers.settings import DeclaredSettings

    def budget(cls):
        t = make_trainer(cls, plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2]]), LABELS)
        assert set(t.my_init_kwargs) == {"plans", "configuration", "fold", "dataset_json", "device"}
        return t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch, t.enable_deep_supervision

    class StockShort(DeclaredSettings, nnUNetTrainer):  # the mechanism serves stock nnU-Net too
        num_epochs, num_iterations_per_epoch = 3, 4

    class UserStyle(nnUNetTrainerUNETRPP_smoke):  # a subclass in the README's style keeps the last word
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = 7

    assert budget(nnUNetTrainerUNETRPP) == (1000, 250, 50, True)
    assert budget(nnUNetTrainerUNETRPP_smoke) == (2, 5, 2, True)
    assert budget(nnUNetTrainerUNETRPP_50epochs) == (50, 250, 50, True)
    assert budget(nnUNetTrainerUNETRPPNoDeepSupervision) == (1000, 250, 50, False)
    assert budget(StockShort) == (3, 4, 50, True)
    assert budget(UserStyle) == (7, 5, 2, True)


def test_adamw_variant_warms_up_then_decays(plans_with):
    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP_AdamW
    plans = plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    trainer = make_trainer(nnUNetTrainerUNETRPP_AdamW, plans, LABELS)
    trainer.initialize()
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    lrs = []
    for epoch in (0, 24, 49, 50, 525, 999):
        trainer.lr_scheduler.step(epoch)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(3e-4 / 50) and lrs[1] == pytest.approx(3e-4 * 25 / 50)
    assert lrs[2] == pytest.approx(3e-4) and lrs[3] == pytest.approx(3e-4)
    assert lrs[4] == pytest.approx(3e-4 * 0.5 ** 0.9) and 0 < lrs[5] < 1e-5


#: a small UNETR++ for the tests of plans that name the network (the planner's arch_kwargs, smaller)
SMALL = dict(feature_size=8, dims=[8, 16, 16, 32], depths=[1, 1, 1, 1], decoder_depth=1, proj_sizes=[8, 8, 8, 8],
             decoder_proj_size=8)


def unetrpp_plans(plans: dict, configuration: str = "cfg") -> dict:
    """`plans` with `configuration` as the UNETR++ planner writes it: the architecture block names UNETRPP."""
    config = plans["configurations"][configuration]
    stem, strides = strides_from_pooling(config["architecture"]["arch_kwargs"]["strides"])
    config["architecture"] = architecture_block(config["patch_size"], stem, strides, **SMALL)
    return plans


def recorded_network(trainer, configuration: str, deep_supervision: bool = False):
    """nnU-Net's get_network_from_plans on the plans.json nnU-Net writes for `trainer` (its plans, through JSON)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(json.loads(json.dumps(trainer.plans_manager.plans)))
    config = manager.get_configuration(configuration)
    channels = determine_num_input_channels(manager, config, trainer.dataset_json)
    heads = manager.get_label_manager(trainer.dataset_json).num_segmentation_heads
    return get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                  config.network_arch_init_kwargs_req_import, channels, heads,
                                  deep_supervision=deep_supervision), config


@pytest.mark.parametrize("configuration", ["cfg", "cascade"])
@pytest.mark.parametrize("patch, pooling", [
    ((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    ((32, 48), [[1, 1], [2, 2], [2, 2], [2, 2], [2, 1]]),
], ids=["3d", "2d"])
@pytest.mark.parametrize("source", ["planner", "stock"])
def test_recorded_plans_build_the_trained_network(plans_with, source, patch, pooling, configuration):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    plans = plans_with(patch, pooling)
    trainers = [nnUNetTrainerUNETRPP]
    if source == "planner":
        unetrpp_plans(plans)
        trainers.append(nnUNetTrainer)  # nnU-Net's own trainer trains the planner's plans
    for trainer_cls in trainers:
        trainer = make_trainer(trainer_cls, copy.deepcopy(plans), LABELS, configuration)
        trainer.initialize()
        network, config = recorded_network(trainer, configuration)
        network.load_state_dict(trainer.network.state_dict(), strict=True)
        assert type(network) is type(trainer.network) is UNETRPP
        assert network.patch_size == tuple(config.patch_size) == tuple(trainer.configuration_manager.patch_size)
        assert "unetrpp" not in config.configuration
        if source == "planner":  # the planner's network and patch, nothing rounded at training time
            assert list(config.patch_size) == list(patch)
            assert network.encoder.stem[0].out_channels == SMALL["dims"][0]


def test_stock_trainer_supervises_the_network_scales_with_the_papers_weights(plans_with):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    plans = unetrpp_plans(plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]))
    trainer = make_trainer(nnUNetTrainer, plans, LABELS)
    trainer.initialize()
    network = trainer.network
    scales = trainer._get_deep_supervision_scales()
    assert scales[:3] == [[1 / s for s in stride] for stride in network.output_strides]
    weights = np.array(trainer.loss.weight_factors)
    np.testing.assert_allclose(weights[:3], DEEP_SUPERVISION_WEIGHTS)
    assert weights[3:].sum() == 0  # nnU-Net's fourth target has no head
    x = torch.randn(2, 2, 8, 32, 32)
    seg = torch.from_numpy(np.random.default_rng(0).integers(0, 3, (2, 1, 8, 32, 32)))
    targets = [torch.nn.functional.interpolate(seg.float(), scale_factor=s, mode="nearest").long() for s in scales]
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        losses.append(float(trainer.train_step({"data": x, "target": targets})["loss"]))
    assert np.isfinite(losses).all() and losses[0] > losses[1], losses


def test_planner_plans_keep_their_geometry_in_a_unetrpp_trainer(plans_with):
    plans = unetrpp_plans(plans_with((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]))
    before = copy.deepcopy(plans["configurations"]["cfg"]["architecture"])
    notes = prepare_configuration(plans, "cfg")
    assert plans["configurations"]["cfg"]["architecture"] == before
    assert not any("changed" in n for n in notes)
    prepare_configuration(plans, "cfg", {"spatial_layout": "official"})  # a variant changes one thing
    after = plans["configurations"]["cfg"]["architecture"]["arch_kwargs"]
    assert after["spatial_layout"] == "official" and after["dims"] == SMALL["dims"]
