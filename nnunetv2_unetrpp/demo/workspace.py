"""The demo's output folder: its layout, the rule for reusing it, and the environment of every child.

Everything the demo and nnU-Net write goes below this folder (nnU-Net's three data folders, caches
of matplotlib and torch included), so a demo run never touches the user's nnU-Net set-up. Without
-o, each run gets a new folder (`nnunetv2_unetrpp_demo`, then `nnunetv2_unetrpp_demo_2`, ...), so
earlier results are kept. A non-empty folder named with -o is only reused with --overwrite, and only
if it is an earlier demo run (`own_output.py`'s rule): the demo never deletes anything it did not create.
"""
from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_unetrpp.command_line import UserError
from nnunetv2_unetrpp.env import ext_trainer_value
from nnunetv2_unetrpp.own_output import MARKER, check_replaceable, mark_folder

COMMAND = "nnUNetv2_unetrpp_demo"
#: The output folder of the first run without -o; later runs append _2, _3, ...
DEFAULT_OUTPUT = Path("nnunetv2_unetrpp_demo")
DATASET_ID = 901
DATASET_NAME = f"Dataset{DATASET_ID:03d}_SyntheticAbdomenCT"
#: Environment variables that place caches (matplotlib's, torch's) in the output folder.
#: Cache variables of the libraries the run uses -> their folder inside the run's `.cache`.
CACHES = {"XDG_CACHE_HOME": "", "MPLCONFIGDIR": "matplotlib", "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
          "TRITON_CACHE_DIR": "triton"}


class OutputFolderError(UserError):
    """The output folder cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Workspace:
    """Paths of one demo run."""

    root: Path

    @property
    def raw_dataset(self) -> Path:
        return self.root / "nnUNet_raw" / DATASET_NAME

    @property
    def trainers(self) -> Path:
        return self.root / "trainers"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def comparison(self) -> Path:
        return self.root / "comparison"

    def predictions(self, method: str) -> Path:
        return self.root / "predictions" / method

    def results(self, trainer: str, plans: str = "nnUNetPlans") -> Path:
        return self.root / "nnUNet_results" / DATASET_NAME / f"{trainer}__{plans}__3d_fullres"


def new_run_folder(base: Path = DEFAULT_OUTPUT) -> Path:
    """Create and return the first of `base`, `base_2`, `base_3`, ... that does not exist yet.

    Creating it claims it, so two runs started at once never share a folder."""
    for number in itertools.count(1):
        folder = base if number == 1 else base.with_name(f"{base.name}_{number}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder


def prepare(root: Path, overwrite: bool, settings: dict) -> Workspace:
    """Create (or, with `overwrite`, empty an earlier demo run's) output folder and mark it as the demo's."""
    root = root.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise OutputFolderError(f"output path {root} exists and is not a folder")
    try:
        check_replaceable(root, overwrite, COMMAND, what="output folder")
    except UserError as e:
        raise OutputFolderError(str(e)) from None
    if root.is_dir() and any(root.iterdir()):
        shutil.rmtree(root)
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "logs", ".cache"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    mark_folder(root, COMMAND, settings=settings)
    return Workspace(root)


def child_environment(workspace: Workspace, num_processes: int) -> dict[str, str]:
    """Environment of nnU-Net's commands: data folders, trainer lookup, worker counts and caches in the run."""
    root, cache = workspace.root, workspace.root / ".cache"
    env = dict(os.environ)
    env.update({
        "nnUNet_raw": str(root / "nnUNet_raw"),
        "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
        "nnUNet_results": str(root / "nnUNet_results"),
        "nnUNet_extTrainer": os.pathsep.join([ext_trainer_value(), str(workspace.trainers)]),
        # 0 would break planning (torch.set_num_threads(0)); nnU-Net's default of 8 export workers
        # costs minutes of start-up on a small CPU machine
        "nnUNet_n_proc_DA": str(max(1, num_processes)),
        "nnUNet_def_n_proc": str(max(1, num_processes)),
        "PYTHONUNBUFFERED": "1",
        **{name: str(cache / folder) for name, folder in CACHES.items()},
    })
    return env
