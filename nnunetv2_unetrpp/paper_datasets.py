"""The UNETR++ paper's four benchmarks as nnU-Net v2 datasets: conversion of the public downloads, and the
paper's split as fold 0 of ``splits_final.json``, so that ``nnUNetv2_train D CONFIG 0`` trains on exactly the
paper's training cases and validates on the cases the paper evaluates.

Commands (one per benchmark, the same arguments):

* ``nnUNetv2_unetrpp_convert_synapse -i DIR -d ID``: the BTCV abdomen download
  (``RawData/Training/img/img00XX.nii.gz``, ``label/label00XX.nii.gz``, 13 organs), converted here;
* ``nnUNetv2_unetrpp_convert_acdc -i DIR -d ID``: nnU-Net's own ACDC conversion
  (``nnunetv2.dataset_conversion.Dataset027_ACDC``; DIR holds ``training/`` and ``testing/``);
* ``nnUNetv2_unetrpp_convert_lung -i Task06_Lung -d ID`` and ``nnUNetv2_unetrpp_convert_brats -i
  Task01_BrainTumour -d ID``: nnU-Net's own Medical Segmentation Decathlon conversion (``convert_msd_dataset``;
  BraTS keeps its 4 modalities and the labels 1 edema, 2 non-enhancing tumour, 3 enhancing tumour).

``--split_only`` writes just the paper's split for a dataset converted before. Nothing the user has is replaced:
an existing dataset ID is an error, and so is an existing ``splits_final.json`` unless ``--replace_split``, which
keeps the old file beside the new one.

The case lists are facts copied from the authors' trainers (``do_split`` of
``unetr_pp/training/network_training/unetr_pp_trainer_{synapse,acdc,lung,tumor}.py`` in
github.com/Amshaker/unetr_plus_plus): fold 0 there is overwritten with these lists whatever the split file
holds. Their validation cases are the cases the paper evaluates (for Synapse, the 12 cases of ``labelsTs``
that ``unetr_pp/inference_synapse.py`` scores).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from nnunetv2_unetrpp.command_line import UserError, command

AUTHORS_REPO = "github.com/Amshaker/unetr_plus_plus"


@dataclass(frozen=True)
class PaperSplit:
    """Fold 0 of one benchmark: the authors' training and validation (= evaluated) case identifiers."""

    benchmark: str
    dataset_name: str  # the name part of Dataset{ID:03d}_{name} that the conversion writes
    train: tuple[str, ...]
    val: tuple[str, ...]
    source: str
    note: str = ""


def _names(prefix: str, numbers: Sequence[int], digits: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{n:0{digits}d}" for n in numbers)


# unetr_pp_trainer_synapse.py, do_split: 18 training and 12 validation cases of the 30 labelled BTCV cases
SYNAPSE = PaperSplit(
    "synapse", "Synapse",
    train=_names("img", (5, 6, 7, 9, 10, 21, 23, 24, 26, 27, 28, 30, 31, 33, 34, 37, 39, 40), 4),
    val=_names("img", (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38), 4),
    source=f"{AUTHORS_REPO}: unetr_pp/training/network_training/unetr_pp_trainer_synapse.py (do_split)")

#: unetr_pp_trainer_acdc.py, do_split: both frames (end-diastole, end-systole) of 80 training and of these 20
#: validation patients; the frame numbers differ per patient and are taken from the converted dataset.
ACDC_VAL_PATIENTS = (2, 3, 8, 9, 12, 14, 17, 24, 42, 48, 49, 53, 55, 64, 67, 79, 81, 88, 92, 95)
ACDC_PATIENTS = range(1, 101)

# unetr_pp_trainer_lung.py, do_split: 50 training and 13 validation cases of MSD Task06's 63
LUNG = PaperSplit(
    "lung", "Lung",
    train=_names("lung_", (4, 5, 6, 9, 10, 14, 15, 16, 18, 20, 22, 23, 26, 28, 29, 31, 33, 34, 36, 37, 38, 41, 42, 43,
                           45, 47, 49, 51, 53, 54, 55, 57, 59, 61, 64, 65, 66, 69, 71, 73, 74, 75, 78, 79, 80, 84, 86,
                           92, 95, 96), 3),
    val=_names("lung_", (1, 3, 25, 27, 44, 46, 48, 58, 62, 70, 81, 83, 93), 3),
    source=f"{AUTHORS_REPO}: unetr_pp/training/network_training/unetr_pp_trainer_lung.py (do_split)")

# unetr_pp_trainer_tumor.py, do_split: 387 training and 73 validation cases of MSD Task01's 484; the 24 below are
# in neither list
BRATS_VAL = (11, 12, 18, 20, 21, 28, 29, 32, 34, 36, 41, 47, 49, 53, 56, 57, 69, 71, 89, 90, 92, 95, 103, 105, 106,
             107, 109, 118, 145, 147, 156, 161, 172, 176, 181, 194, 196, 198, 204, 205, 209, 220, 221, 227, 234, 235,
             245, 250, 256, 257, 260, 269, 270, 271, 281, 282, 287, 289, 291, 292, 310, 314, 323, 327, 330, 333, 337,
             346, 350, 352, 361, 382, 397)
BRATS_UNUSED = (58, 59, 76, 77, 99, 113, 114, 124, 139, 151, 152, 157, 190, 240, 242, 295, 305, 325, 331, 362, 389,
                425, 432, 450)
BRATS = PaperSplit(
    "brats", "BrainTumour",
    train=_names("BRATS_", [n for n in range(1, 485) if n not in BRATS_VAL and n not in BRATS_UNUSED], 3),
    val=_names("BRATS_", BRATS_VAL, 3),
    source=f"{AUTHORS_REPO}: unetr_pp/training/network_training/unetr_pp_trainer_tumor.py (do_split)",
    note=f"{len(BRATS_UNUSED)} cases are in neither list of the authors' split and are left out of fold 0: "
         + ", ".join(_names("BRATS_", BRATS_UNUSED, 3)))

#: The 13 BTCV labels (the challenge's numbering, as in nnU-Net v1's Task017 conversion)
BTCV_LABELS = {"background": 0, "spleen": 1, "right kidney": 2, "left kidney": 3, "gallbladder": 4, "esophagus": 5,
               "liver": 6, "stomach": 7, "aorta": 8, "inferior vena cava": 9, "portal vein and splenic vein": 10,
               "pancreas": 11, "right adrenal gland": 12, "left adrenal gland": 13}


def acdc_split(case_ids: Sequence[str]) -> PaperSplit:
    """The paper's ACDC split over the cases of a converted dataset (``patientNNN_frameMM``): every patient of
    the paper's 100 must have exactly two labelled frames."""
    frames: dict[int, list[str]] = {}
    for case in case_ids:
        if case.startswith("patient") and case[7:10].isdigit():
            frames.setdefault(int(case[7:10]), []).append(case)
    wrong = [f"patient{p:03d} ({len(frames.get(p, []))})" for p in ACDC_PATIENTS if len(frames.get(p, [])) != 2]
    if wrong:
        raise UserError(f"the paper's ACDC split needs both labelled frames of patients 001-100, but these have "
                        f"another number of frames in labelsTr: {', '.join(wrong[:5])}"
                        f"{' ...' if len(wrong) > 5 else ''}; convert the full ACDC training set")
    def cases_of(patients) -> tuple[str, ...]:
        return tuple(sorted(c for p in patients for c in frames[p]))

    return PaperSplit("acdc", "ACDC", train=cases_of(p for p in ACDC_PATIENTS if p not in ACDC_VAL_PATIENTS),
                      val=cases_of(ACDC_VAL_PATIENTS),
                      source=f"{AUTHORS_REPO}: unetr_pp/training/network_training/unetr_pp_trainer_acdc.py (do_split)")


def _env_folder(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise UserError(f"{variable} is not set: export {variable}=<folder> as nnU-Net's path set-up describes")
    return Path(value)


def existing_datasets(dataset_id: int) -> list[Path]:
    """Folders of this dataset ID in nnUNet_raw, nnUNet_preprocessed and nnUNet_results (read at call time)."""
    found = []
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        base = os.environ.get(variable)
        if base and Path(base).is_dir():
            found += sorted(Path(base).glob(f"Dataset{dataset_id:03d}_*"))
    return found


def _raw_dataset(dataset_id: int) -> Path:
    matches = sorted(_env_folder("nnUNet_raw").glob(f"Dataset{dataset_id:03d}_*"))
    if len(matches) != 1:
        raise UserError(f"expected one dataset Dataset{dataset_id:03d}_* in nnUNet_raw, found "
                        f"{[m.name for m in matches] or 'none'}; convert it first (without --split_only)")
    return matches[0]


def _labelled_cases(raw_dataset: Path) -> list[str]:
    try:
        ending = json.loads((raw_dataset / "dataset.json").read_text())["file_ending"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot read file_ending from {raw_dataset / 'dataset.json'}: {e}") from None
    return sorted(f.name[:-len(ending)] for f in (raw_dataset / "labelsTr").glob(f"*{ending}"))


def write_paper_split(benchmark: str, dataset_id: int, replace: bool = False) -> Path:
    """Write the paper's split as fold 0 of ``splits_final.json`` of a converted dataset; returns its path.

    Every case of the split must be labelled in the dataset. An existing, different split file is an error, or,
    with ``replace``, is kept as ``splits_final.json.before_paper_split``.
    """
    raw = _raw_dataset(dataset_id)
    cases = _labelled_cases(raw)
    split = acdc_split(cases) if benchmark == "acdc" else PAPER_SPLITS[benchmark]
    missing = sorted(set(split.train + split.val) - set(cases))
    if missing:
        raise UserError(f"{len(missing)} cases of the paper's {benchmark} split are not in {raw / 'labelsTr'} "
                        f"(e.g. {', '.join(missing[:3])}); is this the {benchmark} dataset?")
    target = _env_folder("nnUNet_preprocessed") / raw.name / "splits_final.json"
    content = [{"train": list(split.train), "val": list(split.val)}]
    if target.exists():
        try:
            if json.loads(target.read_text())[:1] == content:
                return target
        except (ValueError, TypeError):
            pass
        backup = target.with_name(target.name + ".before_paper_split")
        if not replace:
            raise UserError(f"{target} exists and holds another split; pass --replace_split to keep it as "
                            f"{backup.name} and write the paper's split")
        if backup.exists():
            raise UserError(f"{backup} exists already; move it away, then rerun with --replace_split")
        target.rename(backup)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(content, indent=2))
    return target


def _btcv_training_folder(download: Path) -> Path:
    for folder in (download / "RawData" / "Training", download / "Training", download):
        if (folder / "img").is_dir() and (folder / "label").is_dir():
            return folder
    raise UserError(f"{download} is not the BTCV download: expected RawData/Training/img and "
                    "RawData/Training/label (img0001.nii.gz, label0001.nii.gz, ...)")


def _check_btcv_case(image: Path, label: Path) -> None:
    """Image and label must share size and spacing, and the label hold only the 13 organs' values."""
    import numpy as np
    import SimpleITK as sitk

    headers = []
    for file in (image, label):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(file))
        try:
            reader.ReadImageInformation()
        except RuntimeError as e:
            raise UserError(f"cannot read {file}: {str(e).strip().splitlines()[-1]}") from None
        headers.append((reader.GetSize(), reader.GetSpacing()))
    (size_i, spacing_i), (size_l, spacing_l) = headers
    if size_i != size_l or not np.allclose(spacing_i, spacing_l, rtol=1e-3):
        raise UserError(f"{label.name} does not match {image.name}: size {size_l} vs {size_i}, spacing "
                        f"{spacing_l} vs {spacing_i}")
    values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label)))).tolist())
    unknown = sorted(values - set(BTCV_LABELS.values()))
    if unknown:
        raise UserError(f"{label} holds values {unknown} that are not BTCV organ labels 0-13")


def convert_synapse(download: Path, dataset_id: int) -> Path:
    """The 30 labelled BTCV cases into ``Dataset{ID}_Synapse`` (imagesTr/labelsTr: all 30, identifiers
    ``img00XX`` as the authors name them; imagesTs/labelsTs: the 12 evaluated cases, for nnUNetv2_predict and
    the comparison). Files are copied byte for byte, so the geometry is the download's."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    source = _btcv_training_folder(download)
    cases = sorted(SYNAPSE.train + SYNAPSE.val)
    files = {c: (source / "img" / f"{c}.nii.gz", source / "label" / f"label{c[3:]}.nii.gz") for c in cases}
    missing = [str(f) for pair in files.values() for f in pair if not f.is_file()]
    if missing:
        raise UserError(f"{len(missing)} files of the 30 labelled BTCV cases are missing, e.g. {missing[0]}")
    for image, label in files.values():
        _check_btcv_case(image, label)
    target = _env_folder("nnUNet_raw") / f"Dataset{dataset_id:03d}_{SYNAPSE.dataset_name}"
    partial = target.with_name(target.name + ".incomplete")
    if partial.exists():
        raise UserError(f"{partial} exists (an interrupted conversion?); remove it and rerun")
    try:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (partial / sub).mkdir(parents=True)
        for case, (image, label) in files.items():
            shutil.copyfile(image, partial / "imagesTr" / f"{case}_0000.nii.gz")
            shutil.copyfile(label, partial / "labelsTr" / f"{case}.nii.gz")
            if case in SYNAPSE.val:
                shutil.copyfile(image, partial / "imagesTs" / f"{case}_0000.nii.gz")
                shutil.copyfile(label, partial / "labelsTs" / f"{case}.nii.gz")
        generate_dataset_json(str(partial), channel_names={0: "CT"}, labels=BTCV_LABELS,
                              num_training_cases=len(cases), file_ending=".nii.gz", dataset_name=target.name,
                              reference="https://www.synapse.org/#!Synapse:syn3193805/wiki/217789",
                              description="BTCV abdomen (Synapse multi-organ), 30 labelled cases; imagesTs/labelsTs: "
                                          "the 12 cases the UNETR++ paper evaluates")
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _convert_acdc(download: Path, dataset_id: int) -> None:
    """nnU-Net's ``Dataset027_ACDC.convert_acdc``, step by step: its ``make_out_dirs`` fails in nnunetv2 2.8.1
    (it calls ``str.replace`` on the lazy ``nnunetv2.paths.nnUNet_raw``), so the folders are made here and
    nnU-Net's ``copy_files`` and ``generate_dataset_json`` do the rest, with convert_acdc's channel and labels."""
    from nnunetv2.dataset_conversion.Dataset027_ACDC import copy_files
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    out = _env_folder("nnUNet_raw") / f"Dataset{dataset_id:03d}_ACDC"
    folders = [out / sub for sub in ("imagesTr", "labelsTr", "imagesTs")]
    for folder in folders:
        folder.mkdir(parents=True)
    num_training_cases = copy_files(download, *folders)
    generate_dataset_json(str(out), channel_names={0: "cineMRI"}, labels={"background": 0, "RV": 1, "MLV": 2, "LVC": 3},
                          file_ending=".nii.gz", num_training_cases=num_training_cases)


def _convert_with_nnunet(benchmark: str, download: Path, dataset_id: int, num_processes: int) -> None:
    if benchmark == "acdc":
        if not ((download / "training").is_dir() and (download / "testing").is_dir()):
            raise UserError(f"{download} is not the ACDC download: expected its 'training' and 'testing' folders")
        _convert_acdc(download, dataset_id)
        return
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

    expected = {"lung": "Task06_Lung", "brats": "Task01_BrainTumour"}[benchmark]
    if download.name != expected or not (download / "dataset.json").is_file():
        raise UserError(f"-i must be the Decathlon folder {expected} (with dataset.json, imagesTr, labelsTr, "
                        f"imagesTs), got {download}")
    convert_msd_dataset(str(download), overwrite_target_id=dataset_id, num_processes=num_processes)


#: The splits that are fixed lists (ACDC's depends on the frames of the converted dataset: ``acdc_split``)
PAPER_SPLITS = {s.benchmark: s for s in (SYNAPSE, LUNG, BRATS)}


def run(benchmark: str, argv: Optional[Sequence[str]] = None) -> None:
    """Convert one benchmark's download (unless --split_only) and write the paper's split."""
    p = argparse.ArgumentParser(prog=f"nnUNetv2_unetrpp_convert_{benchmark}", description=(
        f"Convert the {benchmark} download into an nnU-Net v2 raw dataset and write the UNETR++ paper's split as "
        "fold 0 of splits_final.json in nnUNet_preprocessed (nnUNet_raw and nnUNet_preprocessed must be set)."))
    p.add_argument("-i", type=Path, help="the download (required unless --split_only)")
    p.add_argument("-d", type=int, required=True, help="nnU-Net dataset ID to create")
    p.add_argument("-np", type=int, default=4, help="processes of nnU-Net's Decathlon conversion (lung, brats)")
    p.add_argument("--split_only", action="store_true", help="only write the paper's split for dataset -d")
    p.add_argument("--replace_split", action="store_true",
                   help="replace an existing splits_final.json (kept as splits_final.json.before_paper_split)")
    args = p.parse_args(argv)
    if not 0 < args.d < 1000:
        raise UserError(f"-d must be a dataset ID from 1 to 999, got {args.d}")
    if not args.split_only:
        if args.i is None or not args.i.is_dir():
            raise UserError(f"-i must be the downloaded {benchmark} folder, got {args.i}")
        _env_folder("nnUNet_preprocessed")
        taken = existing_datasets(args.d)
        if taken:
            raise UserError(f"dataset ID {args.d} is taken ({', '.join(map(str, taken))}); choose another -d, or "
                            "pass --split_only to add the paper's split to it")
        if benchmark == "synapse":
            convert_synapse(args.i.resolve(), args.d)
        else:
            _convert_with_nnunet(benchmark, args.i.resolve(), args.d, args.np)
        print(f"wrote {_raw_dataset(args.d)}")
    target = write_paper_split(benchmark, args.d, args.replace_split)
    split = json.loads(target.read_text())[0]
    print(f"wrote {target}: fold 0 = the paper's {len(split['train'])} training and {len(split['val'])} "
          f"evaluated cases")
    note = PAPER_SPLITS[benchmark].note if benchmark in PAPER_SPLITS else ""
    if note:
        print(f"note: {note}", file=sys.stderr)


def _command(benchmark: str) -> Callable[[Optional[Sequence[str]]], int]:
    @command
    def main(argv: Optional[Sequence[str]] = None) -> None:
        run(benchmark, argv)

    main.__doc__ = f"``nnUNetv2_unetrpp_convert_{benchmark}``."
    return main


main_synapse, main_acdc, main_lung, main_brats = map(_command, ("synapse", "acdc", "lung", "brats"))
