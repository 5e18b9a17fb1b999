"""``nnUNetv2_unetrpp_compare``: compare segmentation methods against references (metrics, tests, figures, cost).

User errors raise ``CompareError``; ``main`` prints ``error: <message>`` to stderr and returns 2, without a
traceback. Run as ``python -m nnunetv2_unetrpp.compare.cli`` or through the console script.
"""
import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from nnunetv2_unetrpp.command_line import command
from nnunetv2_unetrpp.compare.errors import CompareError
from nnunetv2_unetrpp.compare.inputs import (attach_model_folders, check_output_folder, detect_file_ending,
                                             file_ending_from_dataset_json, image_files, list_cases, load_method,
                                             reader_class, select_cases)
from nnunetv2_unetrpp.compare.labels import labels_from_dataset_json, labels_from_values
from nnunetv2_unetrpp.compare.protocols import PROTOCOLS
from nnunetv2_unetrpp.own_output import check_replaceable, mark_folder
from nnunetv2_unetrpp.safe_loading import TRUST_PICKLES_HELP

COMMAND = "nnUNetv2_unetrpp_compare"

#: Where summary.json's numbers are defined: written once, in the metrics and cost modules' docstrings.
METRIC_DEFINITIONS = "nnunetv2_unetrpp/compare/metrics.py (module docstring); see also docs/COMPARE.md"
COST_DEFINITIONS = "nnunetv2_unetrpp/compare/cost.py and benchmarking/network_cost.py (docstrings)"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog=COMMAND, description=(
        "Compare segmentations of several methods against references: per-case Dice, HD95 (mm and voxels) and "
        "NSD, statistics, paired Wilcoxon tests against the first method, Markdown tables, box plots and, for "
        "trained nnU-Net model folders, model cost."))
    p.add_argument("-ref", required=True, type=Path, help="folder of reference segmentations (e.g. labelsTr)")
    p.add_argument("-pred", required=True, nargs="+", metavar="NAME=DIR",
                   help="prediction folders; DIR may be an nnU-Net model folder or fold_X folder (its validation "
                        "predictions are used). The first method is the baseline of the Wilcoxon tests")
    p.add_argument("-o", required=True, type=Path, help="output folder (new or empty; must not be an input folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder that this command wrote earlier")
    p.add_argument("-models", nargs="+", default=[], metavar="NAME=DIR",
                   help="trained nnU-Net model folders (TRAINER__PLANS__CONFIGURATION or fold_X) of methods whose "
                        "-pred is a plain prediction folder: for model cost and learning curves")
    p.add_argument("-images", type=Path,
                   help="folder of the images (nnU-Net raw format, CASE_0000<file_ending>) for the montage of "
                        "representative slices")
    p.add_argument("-dataset_json", type=Path, help="dataset.json giving labels/regions, ignore label, file ending")
    p.add_argument("-np", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (default min(4, CPUs))")
    p.add_argument("--nsd_tolerance_mm", type=float, default=1.0, help="NSD tolerance in mm (default 1)")
    p.add_argument("--subset", action="store_true",
                   help="-ref may hold more cases than the predictions: compare the first method's cases")
    p.add_argument("--allow_extra", action="store_true",
                   help="skip prediction cases that have no reference (with a warning) instead of failing")
    p.add_argument("--no_cost", action="store_true", help="do not compute model cost for model folders")
    p.add_argument("--trust_pickles", action="store_true", help=TRUST_PICKLES_HELP)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS),
                   help="also score as the UNETR++ paper did: its structures (synapse: 8 of the 13 organs; brats: "
                        "WT, TC, ET), its HD95 (medpy's, 0 when a mask is empty; in voxels and in mm) and its "
                        "published numbers beside yours (docs/COMPARE.md)")
    return p.parse_args(argv)


def _settings(args: argparse.Namespace, file_ending: str, reader: type, ignore_label: Optional[int]) -> dict:
    """Everything needed to reproduce and to interpret the numbers."""
    return {
        "reference_folder": str(args.ref), "dataset_json": str(args.dataset_json) if args.dataset_json else None,
        "file_ending": file_ending, "reader": reader.__name__, "ignore_label": ignore_label,
        "nsd_tolerance_mm": args.nsd_tolerance_mm, "metric_definitions": METRIC_DEFINITIONS,
        "std": "sample standard deviation (ddof=1)",
        "wilcoxon": "scipy.stats.wilcoxon, two-sided, paired per case against the first method; "
                    "p = 1 when all differences are 0",
        "cost_definitions": COST_DEFINITIONS,
        "case_selection": "first method's cases (--subset)" if args.subset else "all reference cases",
        "allow_extra": args.allow_extra,
        "protocol": args.protocol,
    }


def run(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """Validate inputs, evaluate every case, and write the report; returns the written files and warnings."""
    if not (math.isfinite(args.nsd_tolerance_mm) and args.nsd_tolerance_mm >= 0):
        raise CompareError(f"--nsd_tolerance_mm must be a finite number >= 0, got {args.nsd_tolerance_mm}")
    if not args.ref.is_dir():
        raise CompareError(f"reference folder {args.ref} does not exist")
    if args.dataset_json is not None and not args.dataset_json.is_file():
        raise CompareError(f"dataset.json {args.dataset_json} does not exist")
    if args.dataset_json is not None:
        labels = labels_from_dataset_json(args.dataset_json)
        file_ending = file_ending_from_dataset_json(args.dataset_json)
    else:
        labels, file_ending = None, detect_file_ending(args.ref)
    if args.protocol is not None:
        labels = PROTOCOLS[args.protocol].labels
    reader = reader_class(file_ending, args.dataset_json)
    references = list_cases(args.ref, file_ending)
    methods = [load_method(a, file_ending) for a in args.pred]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise CompareError(f"method names must be unique, got {names}")
    methods = attach_model_folders(methods, args.models)
    if args.images is not None and not args.images.is_dir():
        raise CompareError(f"image folder {args.images} does not exist")
    check_output_folder(args.o, [args.ref] + [m.argument for m in methods]
                        + [f for m in methods for f in m.prediction_folders]
                        + [m.model_folder for m in methods if m.model_folder is not None]
                        + ([args.images] if args.images is not None else []))
    check_replaceable(args.o, args.overwrite, COMMAND, what="output folder")
    cases, warnings = select_cases(references, methods, args.subset, args.allow_extra)
    images = image_files(args.images, cases, file_ending) if args.images is not None else None

    # Imported here: MONAI, torch and matplotlib take seconds to load, and input errors should come instantly.
    from nnunetv2_unetrpp.compare.cost import compute_model_cost
    from nnunetv2_unetrpp.compare.evaluate import CaseTask, evaluate_case, run_parallel, unique_values
    from nnunetv2_unetrpp.compare.learning_curves import learning_curves_figure
    from nnunetv2_unetrpp.compare.montage import montage_figure
    from nnunetv2_unetrpp.compare.plots import write_box_plots
    from nnunetv2_unetrpp.compare.report import build_summary, write_summary_json, write_summary_markdown

    if labels is None:
        found = run_parallel(unique_values, [(str(references[c]), reader) for c in cases], args.np, "scanning labels")
        labels = labels_from_values(set().union(*found))
    tasks = [CaseTask(str(references[c]), tuple((m.name, str(m.files[c])) for m in methods), reader, labels,
                      args.nsd_tolerance_mm, args.protocol is not None) for c in cases]
    results = run_parallel(evaluate_case, tasks, args.np, "evaluating")

    info = {m.name: {"input": str(m.argument), "prediction_folders": [str(f) for f in m.prediction_folders],
                     "model_folder": str(m.model_folder) if m.model_folder else None} for m in methods}
    for m in methods:
        if m.model_folder is not None and not args.no_cost:
            try:
                info[m.name]["cost"] = compute_model_cost(m.model_folder, m.folds, trust_pickles=args.trust_pickles)
            except Exception as e:  # cost is an extra: any failure becomes a warning in the report
                warnings.append(f"model cost of {m.name} ({m.model_folder}) not computed: {type(e).__name__}: {e}")

    summary = build_summary(cases, names, results, labels, _settings(args, file_ending, reader, labels.ignore_label),
                            info, warnings)
    try:
        if args.o.is_dir() and any(args.o.iterdir()):  # an earlier comparison (check_replaceable above)
            shutil.rmtree(args.o)
        args.o.mkdir(parents=True, exist_ok=True)
        mark_folder(args.o, COMMAND)
    except OSError as e:
        raise CompareError(f"cannot create output folder {args.o}: {e}") from None
    figures = write_box_plots(summary, args.o)
    models = {m.name: (m.model_folder, m.folds) for m in methods if m.model_folder is not None}
    for figure in (learning_curves_figure(models, args.o, warnings, args.trust_pickles),
                   montage_figure(summary, images, references, {m.name: m.files for m in methods}, labels, reader,
                                  args.o)
                   if images is not None else None):
        if figure is not None:
            figures.append(figure)
    summary["figures"] = [f.name for f in figures]
    written = [write_summary_json(summary, args.o), write_summary_markdown(summary, args.o), *figures]
    return written, warnings


@command
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (2 for user errors)."""
    args = parse_args(argv)
    written, warnings = run(args)
    if args.protocol is not None:
        from nnunetv2_unetrpp.compare.report import protocol_table

        summary = next(p for p in written if p.name == "summary.json")
        print("\n".join(protocol_table(json.loads(summary.read_text()))))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print("\n".join(f"wrote {p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
