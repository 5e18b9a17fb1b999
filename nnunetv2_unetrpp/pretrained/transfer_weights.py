"""`nnUNetv2_unetrpp_transfer_weights`: UNETR++ weights of any geometry -> the network that
`nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER -p PLANS` builds, for `-pretrained_weights`.

The source network is rebuilt from the checkpoint itself (the plans and configuration nnU-Net
recorded in it, or the official variant), the target from the dataset's plans through the
trainer, both on the meta device. Their architectures must agree in everything but geometry;
each geometry-dependent tensor is then moved by one rule of `geometry_adaptation`.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.network_architecture.attention import TokenProjection
from nnunetv2_unetrpp.network_architecture.geometry_adaptation import (
    adapt_input_channels,
    resample_positional_embedding,
    resample_token_projection,
    resize_patch_kernel,
)
from nnunetv2_unetrpp.network_architecture.official_checkpoint import (
    convert_official_state_dict,
    identify_official_variant,
    state_dict_aliases,
)
from nnunetv2_unetrpp.network_architecture.transformer_block import TransformerBlock
from nnunetv2_unetrpp.network_architecture.unetr_pp import UNETRPP, current_state_dict_name
from nnunetv2_unetrpp.own_output import STAMP_KEY, check_replaceable, stamp
from nnunetv2_unetrpp.safe_loading import TRUST_PICKLES_HELP, UnsafePickleError, load_checkpoint
from nnunetv2_unetrpp.trainers.plans_geometry import DEFAULT_ARCHITECTURE, hyperparameters, official_architecture

COMMAND = "nnUNetv2_unetrpp_transfer_weights"

#: UNETRPP hyperparameters that shape or define the weights apart from the geometry (all but the dropout
#: rates); they must agree.
HYPERPARAMETERS = tuple(k for k in DEFAULT_ARCHITECTURE if not k.endswith("_drop"))

COPIED, RESAMPLED, CHANNELS, HEADS = "copied", "resampled", "channel-adapted", "left to nnU-Net"


@dataclass
class SourceNetwork:
    """Weights and the UNETR++ they belong to, as recorded by whoever wrote the file."""

    state_dict: dict[str, torch.Tensor]
    network: UNETRPP
    architecture: dict
    description: str


def _hyperparameters(architecture: dict) -> dict:
    return {k: v for k, v in hyperparameters(architecture).items() if k in HYPERPARAMETERS}


def _build(block: dict, input_channels: int, num_classes: int) -> UNETRPP:
    """The network of an architecture block, on the meta device, by nnU-Net's builder."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    with torch.device("meta"):
        return get_network_from_plans(block["network_class_name"], block["arch_kwargs"], block["_kw_requires_import"],
                                      input_channels, num_classes)


def _channels_and_classes(state_dict: dict) -> tuple[int, int]:
    return state_dict["encoder.stem.0.weight"].shape[1], state_dict["decoder.seg_layers.0.weight"].shape[0]


def read_source(path: Path, trust_pickles: bool = False) -> SourceNetwork:
    """A checkpoint of any UNETR++ trainer, a file of nnUNetv2_unetrpp_convert_official, or an official
    checkpoint -> its weights and the network they fit. ValueError says what the file is instead."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_unetrpp.trainers.plans_geometry import unetrpp_architecture

    checkpoint = load_checkpoint(path, trust_pickles)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    if "network_weights" in checkpoint:
        state_dict = {current_state_dict_name(k): v for k, v in checkpoint["network_weights"].items()}
        if "encoder.stages.0.0.pos_embed" not in state_dict:
            trainer = checkpoint.get("trainer_name", "an unknown trainer")
            raise ValueError(f"{path} holds weights of {trainer}, not of a UNETR++ trainer of nnunetv2_unetrpp")
        if "init_args" in checkpoint:
            try:
                init = checkpoint["init_args"]
                configuration = PlansManager(init["plans"]).get_configuration(init["configuration"])
                block = unetrpp_architecture(configuration.configuration)
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise ValueError(f"{path}: the plans recorded in the checkpoint (init_args) cannot be read ({e!r})") from None
            description = (f"{checkpoint.get('trainer_name', 'a UNETR++ trainer')} on "
                           f"{init['plans'].get('dataset_name')}, {init['configuration']}")
        elif "variant" in checkpoint:
            block = official_architecture(checkpoint["variant"])
            description = f"official {checkpoint['variant']} weights"
        else:
            raise ValueError(f"{path} has network weights but neither nnU-Net's init_args nor a converted official "
                             "variant: its geometry is unknown")
    elif "state_dict" in checkpoint and any("unetr_pp_encoder." in k for k in checkpoint["state_dict"]):
        variant = identify_official_variant(checkpoint)
        state_dict = convert_official_state_dict(checkpoint, variant)
        block = official_architecture(variant)
        description = f"official {variant} checkpoint"
    else:
        raise ValueError(f"{path} is not a UNETR++ checkpoint: it has none of nnU-Net's 'network_weights' nor the "
                         f"official 'state_dict' (keys: {sorted(checkpoint)[:6]})")
    network = _build(block, *_channels_and_classes(state_dict))
    expected = network.state_dict()
    wrong = [k for k, v in expected.items() if k not in state_dict or state_dict[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: the weights do not fit the network that the file's own record (plans or variant) "
                         f"describes, e.g. {wrong[0]}")
    return SourceNetwork(state_dict, network, hyperparameters(block["arch_kwargs"]), description)


def _tensor_rules(network: UNETRPP) -> dict[str, tuple[str, tuple | None]]:
    """Canonical state_dict name -> (rule, token grid) for every geometry- or input-dependent tensor.
    Rules: "tokens", "projection", "kernel", "transposed kernel", "channels", "kernel+channels"."""
    tensors = network.state_dict(keep_vars=True)
    names = {id(tensors[canonical]): canonical for canonical in state_dict_aliases(network)}
    grids = {math.prod(g): g for g in network.grids}
    rules: dict[str, tuple[str, tuple | None]] = {}
    for module in network.modules():
        if isinstance(module, TransformerBlock):
            rules[names[id(module.pos_embed)]] = ("tokens", grids[module.pos_embed.shape[1]])
        elif isinstance(module, TokenProjection):
            rules[names[id(module.weight)]] = ("projection", grids[module.weight.shape[1]])
        elif isinstance(module, nn.modules.conv._ConvTransposeNd):
            rules[names[id(module.weight)]] = ("transposed kernel", None)
    for conv in [network.encoder.stem[0], *(down[0] for down in network.encoder.downsamples)]:
        rules[names[id(conv.weight)]] = ("kernel", None)
    for conv in [network.encoder.stem[0], network.conv_branch.conv1.conv, network.conv_branch.skip[0].conv]:
        rules[names[id(conv.weight)]] = ("kernel+channels" if conv is network.encoder.stem[0] else "channels", None)
    return rules


def transfer_state_dict(source: SourceNetwork, target: UNETRPP) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The state_dict of `target` from the source weights, and one record per canonical tensor:
    {"tensor", "action", "from", "to"}. Segmentation heads are kept where their shape fits and are
    otherwise left out: nnU-Net's -pretrained_weights never loads them."""
    rules = _tensor_rules(target)
    source_grids = {math.prod(g): g for g in source.network.grids}
    target_state = target.state_dict()
    out: dict[str, torch.Tensor] = {}
    records = []
    for canonical, aliases in state_dict_aliases(target).items():
        old = source.state_dict[canonical]
        shape = tuple(target_state[canonical].shape)
        rule, grid = rules.get(canonical, ("", None))
        value, actions = old, []
        if ".seg_layers." in canonical:
            value, actions = (old if tuple(old.shape) == shape else None), [HEADS]
        elif rule in ("tokens", "projection") and old.shape != shape:
            resample = resample_positional_embedding if rule == "tokens" else resample_token_projection
            value, actions = resample(old, source_grids[old.shape[1]], grid), [RESAMPLED]
        else:
            if "kernel" in rule and old.shape[2:] != shape[2:]:
                value = resize_patch_kernel(value, shape[2:], transposed=rule == "transposed kernel")
                actions.append(RESAMPLED)
            if "channels" in rule and value.shape[1] != shape[1]:
                value = adapt_input_channels(value, shape[1])
                actions.append(CHANNELS)
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"{canonical} is {tuple(old.shape)} in the source and {shape} in the target, and no "
                             "rule moves it: the architectures differ")
        if value is not None:
            for alias in aliases:
                out[alias] = value
        records.append({"tensor": canonical, "action": ", ".join(actions) or COPIED, "from": list(old.shape),
                        "to": list(shape)})
    return out, records


def check_compatible(source: SourceNetwork, target_architecture: dict, target_patch: Sequence[int],
                     target_trainer: str) -> None:
    """ValueError naming every hyperparameter that differs, and the trainers that match the source."""
    if len(source.network.patch_size) != len(target_patch):
        raise ValueError(f"the source is {len(source.network.patch_size)}D and {target_trainer} on this configuration "
                         f"is {len(target_patch)}D: UNETR++ weights do not move between 2D and 3D")
    ours, theirs = _hyperparameters(source.architecture), _hyperparameters(target_architecture)
    differences = [f"{k} {ours[k]} vs {theirs[k]}" for k in HYPERPARAMETERS if ours[k] != theirs[k]]
    if differences:
        raise ValueError(f"the source ({source.description}) and {target_trainer} differ in "
                         f"{'; '.join(differences)} (source vs target). {_matching_trainers(ours)}")


def _matching_trainers(hyperparameters: dict) -> str:
    from nnunetv2_unetrpp import trainers

    matches = [name for name in trainers.__all__ if isinstance(cls := getattr(trainers, name), type)
               and _hyperparameters(getattr(cls, "architecture_overrides", {})) == hyperparameters]
    if matches:
        return f"Trainers with the source's architecture: {', '.join(matches)}."
    return ("No trainer of nnunetv2_unetrpp has the source's architecture: write a variant of nnUNetTrainerUNETRPP "
            f"with architecture_overrides = {hyperparameters}.")


def target_network(dataset: str, configuration: str, trainer_name: str, plans_identifier: str,
                   device: str = "meta") -> tuple[UNETRPP, dict, str]:
    """The network nnUNetv2_train builds (on `device`; meta: shapes only), its UNETR++ architecture, and the
    dataset's name."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_unetrpp.trainers import nnUNetTrainerUNETRPP
    from nnunetv2_unetrpp.trainers.plans_geometry import names_unetrpp

    trainer = _find_trainer(trainer_name)
    if nnUNet_preprocessed is None:
        raise UserError("nnUNet_preprocessed is not set: export it as for nnUNetv2_train")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"dataset {dataset!r} is not planned: {e}") from None
    folder = Path(nnUNet_preprocessed) / name
    plans_file = folder / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise UserError(f"{plans_file} does not exist: plan and preprocess dataset {name} with "
                        f"nnUNetv2_plan_and_preprocess (plans {plans_identifier!r}) first")
    plans, dataset_json = load_json(str(plans_file)), load_json(str(folder / "dataset.json"))
    if configuration not in plans["configurations"]:
        raise UserError(f"{plans_file} has no configuration {configuration!r}; it has {sorted(plans['configurations'])}")
    manager = PlansManager(plans)
    data = folder / manager.get_configuration(configuration).data_identifier
    if not data.is_dir():
        raise UserError(f"{name} {configuration} is planned but not preprocessed ({data} is missing): run "
                        f"nnUNetv2_preprocess -d {dataset} -c {configuration} -plans_name {plans_identifier}")
    if not issubclass(trainer, nnUNetTrainerUNETRPP):  # a stock trainer builds what the plans name
        if not names_unetrpp(manager.get_configuration(configuration).configuration):
            raise UserError(f"{trainer_name} is not a UNETR++ trainer (a subclass of nnUNetTrainerUNETRPP) and "
                            f"{plans_identifier} {configuration} does not name UNETR++: plan with "
                            "nnUNetv2_unetrpp_plan_experiment or choose a UNETR++ trainer")
    else:
        try:
            trainer.prepare_plans(plans, configuration)
        except ValueError as e:
            raise UserError(str(e)) from None
    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)
    with torch.device(device):
        network = trainer.build_network_architecture(
            manager, config, determine_num_input_channels(manager, config, dataset_json),
            manager.get_label_manager(dataset_json).num_segmentation_heads, True)
    return network, hyperparameters(config.network_arch_init_kwargs), name


def _find_trainer(name: str) -> type:
    from nnunetv2_unetrpp import trainers
    from nnunetv2_unetrpp.env import find_trainer_class

    return getattr(trainers, name) if name in trainers.__all__ else find_trainer_class(name)


def summary_table(records: list[dict]) -> str:
    """Counts per action and, for the tensors that changed shape, from -> to (grouped by shape change)."""
    lines = ["| action | tensors | shapes |", "|---|---|---|"]
    for action in (COPIED, RESAMPLED, f"{RESAMPLED}, {CHANNELS}", CHANNELS, HEADS):
        group = [r for r in records if r["action"] == action]
        if not group:
            continue
        changes = sorted({(tuple(r["from"]), tuple(r["to"])) for r in group if r["from"] != r["to"]})
        shown = ", ".join(f"{list(a)} -> {list(b)}" for a, b in changes[:4]) + (" ..." if len(changes) > 4 else "")
        lines.append(f"| {action} | {len(group)} | {shown or 'unchanged'} |")
    return "\n".join(lines)


@command
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Move UNETR++ weights (a checkpoint of any UNETR++ trainer, or converted official weights) "
        "into the network nnUNetv2_train builds for another dataset's plan, for nnUNetv2_train -pretrained_weights. "
        "Positional embeddings and E/F projections are resampled over the new token grids, patch-embedding and "
        "up/downsampling kernels resized, input convolutions adapted to the channel count.")
    parser.add_argument("source", type=Path, help="checkpoint_final.pth of a UNETR++ trainer, or a file of "
                        "nnUNetv2_unetrpp_convert_official")
    parser.add_argument("output", type=Path, help="where to write the weights (.pth); a .transfer.json report goes "
                        "next to it")
    parser.add_argument("-d", dest="dataset", required=True, help="target dataset name or id")
    parser.add_argument("-c", dest="configuration", required=True, help="target configuration, e.g. 3d_fullres")
    parser.add_argument("-tr", dest="trainer", default="nnUNetTrainerUNETRPP", help="target trainer "
                        "(default nnUNetTrainerUNETRPP)")
    parser.add_argument("-p", dest="plans", default="nnUNetPlans", help="target plans identifier (default nnUNetPlans)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT and its report if this command wrote them")
    parser.add_argument("--trust_pickles", action="store_true", help=TRUST_PICKLES_HELP)
    args = parser.parse_args(argv)

    report_path = args.output.with_name(args.output.stem + ".transfer.json")
    if not args.source.is_file():
        raise UserError(f"{args.source} does not exist or is not a file")
    for path in (args.output, report_path):
        check_replaceable(path, args.overwrite, COMMAND, (args.source,))
    try:
        source = read_source(args.source, args.trust_pickles)
    except (UnsafePickleError, ValueError) as e:
        raise UserError(str(e)) from None
    target, architecture, dataset_name = target_network(args.dataset, args.configuration, args.trainer, args.plans)
    try:
        check_compatible(source, architecture, target.patch_size, args.trainer)
        state_dict, records = transfer_state_dict(source, target)
    except ValueError as e:
        raise UserError(str(e)) from None

    report = {
        **stamp(COMMAND), "source": str(args.source), "source_network": source.description,
        "source_geometry": _geometry(source.network), "target": {
            "dataset": dataset_name, "configuration": args.configuration, "trainer": args.trainer,
            "plans": args.plans, **_geometry(target)},
        "tensors": records,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": state_dict, **stamp(COMMAND),
                "transfer": {k: v for k, v in report.items() if k not in ("tensors", STAMP_KEY)}}, args.output)
    report_path.write_text(json.dumps(report, indent=1))
    print(f"{source.description} -> {args.trainer} on {dataset_name} {args.configuration}")
    print(f"patch {list(source.network.patch_size)} -> {list(target.patch_size)}, token grids "
          f"{source.network.grids} -> {target.grids}")
    print(summary_table(records))
    print(f"wrote {args.output} and {report_path}; use: nnUNetv2_train {args.dataset} {args.configuration} FOLD "
          f"-tr {args.trainer} -p {args.plans} -pretrained_weights {args.output}")


def _geometry(network: UNETRPP) -> dict:
    return {"patch_size": list(network.patch_size), "stem_stride": list(network.stem_stride),
            "strides": [list(s) for s in network.strides], "token_grids": [list(g) for g in network.grids],
            "input_channels": network.input_channels, "num_classes": network.num_classes}


if __name__ == "__main__":
    raise SystemExit(main())
