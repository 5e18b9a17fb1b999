"""`nnUNetv2_unetrpp_import_official`: a published UNETR++ model (nnU-Net v1 checkpoint + its v1 plans)
-> an nnU-Net v2 model folder that stock `nnUNetv2_predict(_from_modelfolder)` runs.

The folder holds the official network of the checkpoint's variant (converted weights, official
layout, the variant's patch size) behind the trainer of that published architecture, and v1's
preprocessing mapped to v2 (`v1_plans.py`). It is written to a temporary sibling and renamed into
place, so a failure leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nnunetv2_unetrpp.pretrained import v1_plans
from nnunetv2_unetrpp.command_line import UserError, command
from nnunetv2_unetrpp.network_architecture.official_checkpoint import (
    convert_official_state_dict,
    identify_official_variant,
)
from nnunetv2_unetrpp.own_output import check_replaceable, mark_folder
from nnunetv2_unetrpp.safe_loading import TRUST_PICKLES_HELP, UnsafePickleError, load_checkpoint, load_pickle

FOLD = 0
COMMAND = "nnUNetv2_unetrpp_import_official"


def _published_trainer(variant: str) -> str:
    # imported here: the trainers pull in nnU-Net's training stack, which `--help` does not need
    from nnunetv2_unetrpp.trainers.variants import PUBLISHED_ARCHITECTURE_TRAINERS

    return PUBLISHED_ARCHITECTURE_TRAINERS[variant].__name__


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Turn a published UNETR++ model (nnU-Net v1 model_final_checkpoint.model and its v1 plans) into "
        "an nnU-Net v2 model folder for nnUNetv2_predict_from_modelfolder (-o) or nnUNetv2_predict (-d/-name).",
    )
    parser.add_argument("-checkpoint", type=Path, required=True, help="the official model_final_checkpoint.model")
    parser.add_argument("-preprocessed", type=Path,
                        help="the v1 task folder of the preprocessed-data download (holds *plans_3D.pkl, dataset.json)")
    parser.add_argument("-plans", type=Path, help="the v1 plans pickle (instead of -preprocessed)")
    parser.add_argument("-dataset_json", type=Path, help="the v1 dataset.json (instead of -preprocessed)")
    parser.add_argument("-o", type=Path, help="write the model folder here (for nnUNetv2_predict_from_modelfolder -m)")
    parser.add_argument("-d", type=int, help="install into $nnUNet_results as DatasetID_NAME (with -name)")
    parser.add_argument("-name", help="dataset name for -d (letters, digits, -)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model folder that this command wrote earlier")
    parser.add_argument("--trust_pickles", action="store_true", help=TRUST_PICKLES_HELP)
    args = parser.parse_args(argv)
    if (args.preprocessed is None) == (args.plans is None and args.dataset_json is None):
        raise UserError("give either -preprocessed V1_TASK_FOLDER or both -plans and -dataset_json")
    if args.preprocessed is None and (args.plans is None or args.dataset_json is None):
        raise UserError("-plans and -dataset_json go together")
    if (args.o is None) == (args.d is None):
        raise UserError("give either -o OUTPUT or -d ID -name NAME")
    if args.d is not None and (args.name is None or not re.fullmatch(r"[A-Za-z0-9-]+", args.name) or args.d < 0):
        raise UserError("-d needs a non-negative ID and -name NAME of letters, digits and '-' (no '_')")
    return args


def _input_files(args: argparse.Namespace) -> tuple[Path, Path]:
    """(plans pickle, dataset.json), found in the v1 task folder if one was given; each must exist."""
    if args.preprocessed is not None:
        if not args.preprocessed.is_dir():
            raise UserError(f"{args.preprocessed} is not a folder")
        plans = sorted(args.preprocessed.glob("*plans_3D.pkl"))
        if len(plans) != 1:
            found = ", ".join(p.name for p in plans) or "none"
            raise UserError(f"{args.preprocessed} should hold one v1 3D plans file (*plans_3D.pkl), found {found}; "
                            "name it with -plans and -dataset_json")
        files = plans[0], args.preprocessed / "dataset.json"
    else:
        files = args.plans, args.dataset_json
    for path in (args.checkpoint, *files):
        if not path.is_file():
            raise UserError(f"{path} does not exist or is not a file")
    return files


def _output_folder(args: argparse.Namespace, trainer: str, v1_name: str) -> tuple[Path, str]:
    """(model folder, dataset name); -d installs where nnUNetv2_predict -d looks."""
    if args.o is not None:
        return args.o, f"Dataset000_{re.sub(r'[^A-Za-z0-9-]', '', v1_name) or 'UNETRPP'}"
    results = os.environ.get("nnUNet_results")
    if not results:
        raise UserError("-d installs into $nnUNet_results, which is not set")
    name = f"Dataset{args.d:03d}_{args.name}"
    others = [p.name for p in Path(results).glob(f"Dataset{args.d:03d}_*") if p.name != name]
    if others:
        raise UserError(f"dataset ID {args.d} is already {others[0]} in {results}; choose another -d")
    return Path(results) / name / f"{trainer}__{v1_plans.PLANS_NAME}__{v1_plans.CONFIGURATION}", name


def _load(loader, path: Path, trust: bool):
    """`loader(path, trust)` (a safe_loading function); a refused or unreadable file is a UserError."""
    try:
        return loader(path, trust)
    except (UnsafePickleError, ValueError) as e:
        raise UserError(str(e)) from None


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} holds no JSON object")
    return content


def _check_same_dataset(plans: dict, dataset_json: dict, state_dict: dict, variant: str) -> None:
    """Plans, dataset.json and checkpoint must describe the same channels and classes."""
    in_channels = state_dict["encoder.stem.0.weight"].shape[1]
    classes = state_dict["decoder.seg_layers.0.weight"].shape[0]
    if v1_plans.num_channels(plans) != in_channels:
        raise UserError(f"the plans are for {v1_plans.num_channels(plans)} input channel(s), the {variant!r} checkpoint "
                        f"takes {in_channels}: plans and checkpoint come from different datasets")
    if v1_plans.num_classes(plans) != classes:
        raise UserError(f"the plans have {v1_plans.num_classes(plans)} classes (with background), the {variant!r} "
                        f"checkpoint predicts {classes}: plans and checkpoint come from different datasets")
    labels = v1_plans.labels(dataset_json)
    if len(labels) != classes:
        raise UserError(f"dataset.json names {len(labels)} labels, the checkpoint predicts {classes} classes")


def _checkpoint(state_dict: dict, v1_checkpoint: dict, trainer: str, plans: dict, dataset_json: dict) -> dict:
    """What nnU-Net v2 saves as checkpoint_final.pth, with the imported weights; plain types only."""
    return {
        "network_weights": state_dict, "optimizer_state": None, "grad_scaler_state": None, "logging": {},
        "_best_ema": None, "current_epoch": int(v1_checkpoint.get("epoch", 0)) if isinstance(v1_checkpoint, dict) else 0,
        "init_args": {"plans": plans, "configuration": v1_plans.CONFIGURATION, "fold": FOLD,
                      "dataset_json": dataset_json, "device": "cpu"},
        "trainer_name": trainer,
        # the authors' v1 trainers mirror along all three axes, in training and at test time
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def _write_folder(folder: Path, plans: dict, dataset_json: dict, fingerprint: dict, checkpoint: dict,
                  v1_checkpoint: dict, source: Path) -> None:
    """The model folder, including what nnUNetv2_export_model_to_zip packs."""
    (folder / f"fold_{FOLD}" / "validation").mkdir(parents=True)
    for name, content in [("plans", plans), ("dataset", dataset_json), ("dataset_fingerprint", fingerprint)]:
        (folder / f"{name}.json").write_text(json.dumps(content, indent=2))
    torch.save(checkpoint, folder / f"fold_{FOLD}" / "checkpoint_final.pth")
    note = f"imported from the nnU-Net v1 checkpoint {source.name}; no nnU-Net v2 training or validation was run"
    (folder / f"fold_{FOLD}" / "validation" / "summary.json").write_text(json.dumps({"note": note}, indent=2))
    _plot_v1_progress(v1_checkpoint, note, folder / f"fold_{FOLD}" / "progress.png")
    mark_folder(folder, COMMAND, source=str(source))


def _plot_v1_progress(v1_checkpoint: dict, note: str, path: Path) -> None:
    """progress.png from the v1 checkpoint's learning curves (`plot_stuff`), if it has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    curves = v1_checkpoint.get("plot_stuff") if isinstance(v1_checkpoint, dict) else None
    try:
        for values, label in zip(curves or (), ("train loss (v1)", "validation loss (v1)")):
            ax.plot(np.asarray(values, dtype=float), label=label)
            ax.legend()
    except (TypeError, ValueError):  # not v1's lists of numbers: the note alone
        ax.clear()
    ax.set_title(note, fontsize=8)
    ax.set_xlabel("epoch")
    fig.savefig(path, dpi=60)
    plt.close(fig)


@command
def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    plans_file, dataset_json_file = _input_files(args)
    v1_checkpoint = _load(load_checkpoint, args.checkpoint, args.trust_pickles)
    try:
        variant = identify_official_variant(v1_checkpoint)
        state_dict = convert_official_state_dict(v1_checkpoint, variant)
    except (ValueError, KeyError, AttributeError) as e:
        raise UserError(f"{args.checkpoint}: {e}") from None
    plans = _load(load_pickle, plans_file, args.trust_pickles)
    dataset_json = _read_json(dataset_json_file)
    trainer = _published_trainer(variant)
    folder, dataset_name = _output_folder(args, trainer, str(dataset_json.get("name", "")))
    try:
        _check_same_dataset(plans, dataset_json, state_dict, variant)
        v2_plans = v1_plans.v2_plans(plans, variant, dataset_name)
        v2_dataset_json = v1_plans.v2_dataset_json(plans, dataset_json)
        fingerprint = v1_plans.fingerprint(plans)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise UserError(f"{plans_file} cannot be imported: {detail}") from None

    check_replaceable(folder, args.overwrite, COMMAND, (args.checkpoint, plans_file, dataset_json_file), "model folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        checkpoint = _checkpoint(state_dict, v1_checkpoint, trainer, v2_plans, v2_dataset_json)
        _write_folder(staging, v2_plans, v2_dataset_json, fingerprint, checkpoint, v1_checkpoint, args.checkpoint)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"imported the official {variant!r} UNETR++ ({trainer}, patch {v2_plans['configurations']['3d_fullres']['patch_size']}) "
          f"into {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
