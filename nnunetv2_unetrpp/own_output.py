"""How this package recognises its own output: the one rule behind every `--overwrite`.

Whatever a command of this package writes carries its stamp, `{"written_by": "nnunetv2_unetrpp COMMAND"}`:
a folder (model folder, comparison, demo run) in the file `MARKER` at its top, a JSON file (report,
benchmark results) and a saved dict (converted or transferred weights) as a top-level entry. An
existing output is replaced only with `--overwrite` and only if the same command stamped it;
anything else (a user's trained model folder, their notes, another tool's weights, another command's
output) is refused with one line and kept, as is an output that is or holds one of the command's
inputs. An empty folder holds nothing to lose and is used as it is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from nnunetv2_unetrpp.command_line import UserError

PACKAGE = "nnunetv2_unetrpp"
STAMP_KEY = "written_by"
MARKER = "nnunetv2_unetrpp_output.json"


def stamp(command: str) -> dict[str, str]:
    """The entry that marks output of `command` (a console-script name)."""
    return {STAMP_KEY: f"{PACKAGE} {command}"}


def mark_folder(folder: Path, command: str, **details: Any) -> Path:
    """Write the folder's MARKER (the stamp plus `details`, e.g. the run's settings); returns its path."""
    marker = Path(folder) / MARKER
    marker.write_text(json.dumps({**stamp(command), **details}, indent=2))
    return marker


def is_own_output(path: Path, command: str) -> bool:
    """Whether `path` (folder, JSON file or saved dict) carries the stamp of `command`. A saved dict is
    read by the safe loader (no code runs); a file that cannot be read is not this package's."""
    from nnunetv2_unetrpp.safe_loading import load_checkpoint  # torch: only where a file must be read

    path = Path(path)
    try:
        if path.is_dir():
            content = json.loads((path / MARKER).read_text())
        elif path.suffix == ".json":
            content = json.loads(path.read_text())
        else:
            content = load_checkpoint(path)
        return isinstance(content, dict) and content.get(STAMP_KEY) == stamp(command)[STAMP_KEY]
    except (OSError, ValueError):  # no marker, not JSON, not a checkpoint, a refused pickle
        return False


def check_replaceable(path: Path, overwrite: bool, command: str, inputs: Iterable[Path] = (),
                      what: str = "output") -> None:
    """Raise a UserError unless `command` writing `path` loses nothing: it does not exist, is an empty
    folder, or (with `overwrite`) carries the stamp of `command`; never when it is or holds one of `inputs`."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    resolved = path.resolve()
    for source in inputs:
        source = Path(source).resolve()
        if resolved == source or resolved in source.parents:
            raise UserError(f"{what} {path} is or holds the input {source}; write the {what} elsewhere")
    if path.is_dir() and not any(path.iterdir()):
        return
    if not overwrite:
        raise UserError(f"{what} {path} exists; pass --overwrite to replace it (only output of {command} is replaced)")
    if not is_own_output(path, command):
        kind = f"its {MARKER}" if path.is_dir() else f"a '{STAMP_KEY}' entry"
        raise UserError(f"{what} {path} was not written by {command} (no stamp in {kind}); --overwrite replaces "
                        f"only that command's output, so nothing was changed: choose another {what}")
