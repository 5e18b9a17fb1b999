"""Command-line inputs: NAME=DIR arguments, nnU-Net model folders, case files, and which cases are compared.

A method's DIR is resolved like this:

* ``DIR/validation`` exists (DIR is a ``fold_X`` folder): its predictions are ``DIR/validation``;
* ``DIR/fold_*/validation`` exist (DIR is a trained model folder): the validation predictions of all those
  folds are gathered (a case found in two folds is an error);
* otherwise DIR itself holds the predictions.

A case is a file ``CASE<file_ending>``; other files (``summary.json``, ``.npz``, ``.pkl``) are ignored.
Cases compared: by default every reference case, and each prediction folder must hold exactly those
(a missing or an extra case is an error). ``subset``: the reference folder may hold more cases (e.g.
``labelsTr`` against one fold's validation); the cases are then those of the first method, and every
method must still hold exactly them. ``allow_extra``: prediction cases without a reference are skipped
with a warning instead of being an error.
"""
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.imageio.reader_writer_registry import (LIST_OF_IO_CLASSES, determine_reader_writer_from_dataset_json,
                                                     determine_reader_writer_from_file_ending)

from nnunetv2_unetrpp.compare.errors import CompareError


@dataclass(frozen=True)
class Method:
    """One compared method: where its predictions are, and the trained model folder behind them, if any."""

    name: str
    argument: Path
    prediction_folders: tuple[Path, ...]
    files: dict[str, Path]
    model_folder: Optional[Path]
    folds: tuple[str, ...]


def parse_method_argument(argument: str) -> tuple[str, Path]:
    """Split ``NAME=DIR``; both parts must be non-empty."""
    name, sep, folder = argument.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise CompareError(f"malformed -pred argument '{argument}': expected NAME=DIR, e.g. UNETRPP=/path/to/preds")
    return name.strip(), Path(folder.strip())


def is_model_folder(folder: Path) -> bool:
    """True for a trained nnU-Net results folder: plans, dataset.json, a fold with a checkpoint and a log."""
    if not ((folder / "plans.json").is_file() and (folder / "dataset.json").is_file()):
        return False
    return any(_is_trained_fold(f) for f in folder.glob("fold_*"))


def _is_trained_fold(fold: Path) -> bool:
    has_checkpoint = (fold / "checkpoint_final.pth").is_file() or (fold / "checkpoint_best.pth").is_file()
    return has_checkpoint and any(fold.glob("training_log_*.txt"))


def _resolve(folder: Path) -> tuple[tuple[Path, ...], Optional[Path], tuple[str, ...]]:
    """Prediction folders, model folder and folds behind a NAME=DIR folder (see the module docstring)."""
    if (folder / "validation").is_dir():
        model = folder.parent if is_model_folder(folder.parent) and _is_trained_fold(folder) else None
        return (folder / "validation",), model, (folder.name,)
    folds = sorted(f for f in folder.glob("fold_*") if (f / "validation").is_dir())
    if folds:
        model = folder if is_model_folder(folder) else None
        trained = tuple(f.name for f in folds if _is_trained_fold(f))
        return tuple(f / "validation" for f in folds), model, trained
    return (folder,), None, ()


def known_file_endings() -> list[str]:
    """Every file ending an nnU-Net reader/writer supports, longest first."""
    endings = {e for io in LIST_OF_IO_CLASSES for e in io.supported_file_endings}
    return sorted(endings, key=len, reverse=True)


def detect_file_ending(folder: Path) -> str:
    """The single image file ending used in ``folder``."""
    found, endings = set(), known_file_endings()
    for f in folder.iterdir():
        ending = next((e for e in endings if f.name.lower().endswith(e)), None)
        if ending is not None and f.is_file():
            found.add(ending)
    if not found:
        raise CompareError(f"{folder} contains no images (file endings {', '.join(endings)})")
    if len(found) > 1:
        raise CompareError(f"{folder} mixes file endings {sorted(found)}; pass -dataset_json to choose one")
    return found.pop()


def reader_class(file_ending: str, dataset_json: Optional[Path]) -> type[BaseReaderWriter]:
    """nnU-Net's reader/writer class for the data (dataset.json's choice when given, else by file ending)."""
    try:
        if dataset_json is not None:
            return determine_reader_writer_from_dataset_json(json.loads(dataset_json.read_text()), verbose=False)
        return determine_reader_writer_from_file_ending(file_ending, verbose=False)
    except RuntimeError as e:
        raise CompareError(str(e)) from None


def file_ending_from_dataset_json(dataset_json: Path) -> str:
    """The ``file_ending`` entry of dataset.json."""
    try:
        return json.loads(dataset_json.read_text())["file_ending"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CompareError(f"cannot read 'file_ending' from {dataset_json}: {e!r}") from None


def list_cases(folder: Path, file_ending: str) -> dict[str, Path]:
    """Case identifier -> file for every ``CASE<file_ending>`` file in ``folder``."""
    if not folder.is_dir():
        raise CompareError(f"folder {folder} does not exist")
    cases = {f.name[:-len(file_ending)]: f for f in sorted(folder.iterdir())
             if f.is_file() and f.name.endswith(file_ending) and len(f.name) > len(file_ending)}
    if not cases:
        raise CompareError(f"{folder} contains no {file_ending} images")
    return cases


def load_method(argument: str, file_ending: str) -> Method:
    """Parse one NAME=DIR argument and list its prediction files."""
    name, folder = parse_method_argument(argument)
    if not folder.is_dir():
        raise CompareError(f"prediction folder {folder} (method {name}) does not exist")
    prediction_folders, model, folds = _resolve(folder)
    files: dict[str, Path] = {}
    for pf in prediction_folders:
        for case, f in list_cases(pf, file_ending).items():
            if case in files:
                raise CompareError(f"method {name}: case {case} is predicted twice: {files[case]} and {f}")
            files[case] = f
    return Method(name, folder, prediction_folders, files, model, folds)


def select_cases(references: dict[str, Path], methods: list[Method], subset: bool,
                 allow_extra: bool) -> tuple[list[str], list[str]]:
    """The compared cases and warnings; raises on a missing or an (unless ``allow_extra``) extra case."""
    warnings = []
    for m in methods:
        extra = sorted(set(m.files) - set(references))
        if extra and not allow_extra:
            raise CompareError(f"method {m.name}: {m.files[extra[0]]} has no reference in the -ref folder "
                               f"({len(extra)} such case(s); --allow_extra skips them)")
        if extra:
            warnings.append(f"method {m.name}: skipped {len(extra)} case(s) without reference: {', '.join(extra)}")
    cases = sorted(set(methods[0].files) & set(references)) if subset else sorted(references)
    for m in methods:
        missing = [c for c in cases if c not in m.files]
        if missing:
            expected = references[missing[0]].name
            raise CompareError(f"method {m.name}: case {missing[0]} is missing: no {expected} in "
                               f"{', '.join(map(str, m.prediction_folders))} (reference {references[missing[0]]}; "
                               f"{len(missing)} case(s) missing)")
        if subset:
            unused = sorted(set(m.files) & set(references) - set(cases))
            if unused:
                raise CompareError(f"method {m.name}: {m.files[unused[0]]} is not predicted by the first method "
                                   f"{methods[0].name}; with --subset every method must hold the same cases")
    return cases, warnings


def check_output_folder(output: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is, or lies inside, an input folder: inputs are never written to."""
    out = output.resolve()
    for folder in inputs:
        f = folder.resolve()
        if out == f or f in out.parents:
            raise CompareError(f"output folder {output} is inside input folder {folder}; choose another -o")


def attach_model_folders(methods: list[Method], arguments: list[str]) -> list[Method]:
    """Methods with the trained model folders given as NAME=DIR (``-models``): a model folder or a fold_X folder."""
    by_name = {m.name: m for m in methods}
    for argument in arguments:
        name, folder = parse_method_argument(argument)
        if name not in by_name:
            raise CompareError(f"-models {argument}: no -pred method is called {name} (methods: {', '.join(by_name)})")
        if _is_trained_fold(folder) and is_model_folder(folder.parent):
            model, folds = folder.parent, (folder.name,)
        elif is_model_folder(folder):
            model, folds = folder, tuple(f.name for f in sorted(folder.glob("fold_*")) if _is_trained_fold(f))
        else:
            raise CompareError(f"-models {argument}: {folder} is not a trained nnU-Net model folder (plans.json, "
                               "dataset.json and a fold_X with a checkpoint and a training log) or one of its folds")
        by_name[name] = replace(by_name[name], model_folder=model, folds=folds)
    return [by_name[m.name] for m in methods]


def image_files(folder: Path, cases: list[str], file_ending: str) -> dict[str, Path]:
    """Case -> first-channel image ``CASE_0000<file_ending>`` in ``folder`` (nnU-Net raw format), for every case."""
    files = {c: folder / f"{c}_0000{file_ending}" for c in cases}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise CompareError(f"-images {folder}: {len(missing)} image(s) missing, e.g. {missing[0]} (expected "
                           f"CASE_0000{file_ending} for every compared case)")
    return files
