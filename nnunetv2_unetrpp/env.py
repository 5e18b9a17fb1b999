"""`nnUNetv2_unetrpp_env`: the shell line that lets nnU-Net's commands find the UNETR++ trainers."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from nnunetv2_unetrpp.command_line import UserError, command

EXT_TRAINER_DIR = Path(__file__).resolve().parent / "nnunet_ext"


def ext_trainer_value(current: str | None = None) -> str:
    """nnUNet_extTrainer with the shim folder first, keeping other folders already listed."""
    current = os.environ.get("nnUNet_extTrainer", "") if current is None else current
    others = [p for p in current.split(os.pathsep) if p and Path(p).resolve() != EXT_TRAINER_DIR]
    return os.pathsep.join([str(EXT_TRAINER_DIR), *others])


def find_trainer_class(trainer: str) -> type:
    """The class nnUNetv2_train uses for the trainer named `trainer` (nnU-Net's search messages
    silenced); UserError with the remedy if nnU-Net cannot find it."""
    import io
    from contextlib import redirect_stdout

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        with redirect_stdout(io.StringIO()):
            return recursive_find_trainer_class_by_name(trainer)
    except RuntimeError:
        raise UserError(
            f"nnU-Net cannot find the trainer {trainer!r}. External trainers need their folder in "
            f"nnUNet_extTrainer (now {os.environ.get('nnUNet_extTrainer', '')!r}); for this package's trainers "
            f"that is {EXT_TRAINER_DIR}: run eval \"$(nnUNetv2_unetrpp_env)\"") from None


@command
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_unetrpp_env",
        description="Print the shell line that adds the UNETR++ trainers to nnU-Net's external trainer lookup. "
        'Use it as: eval "$(nnUNetv2_unetrpp_env)"')
    parser.add_argument("--check", action="store_true",
                        help="instead, check that the current environment lets nnUNetv2_train find the trainers")
    args = parser.parse_args(argv)
    if not (EXT_TRAINER_DIR / "unetrpp_trainers.py").is_file():
        raise UserError(f"the trainer shim {EXT_TRAINER_DIR / 'unetrpp_trainers.py'} is missing: reinstall "
                        "nnunetv2_unetrpp")
    if args.check:
        cls = find_trainer_class("nnUNetTrainerUNETRPP")
        print(f"ok: nnUNetTrainerUNETRPP resolves to {cls.__module__}.{cls.__name__}")
        return
    print(f"export nnUNet_extTrainer={shlex.quote(ext_trainer_value())}")


if __name__ == "__main__":
    sys.exit(main())
