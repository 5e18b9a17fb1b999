"""The nnU-Net versions this plugin supports, checked before anything relies on them."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from nnunetv2_unetrpp.dependencies import NNUNET_REQUIREMENT

#: The first nnunetv2 release with `nnUNet_extTrainer` (external trainer lookup).
EXT_TRAINER_RELEASE = Version("2.8.0")


def check_nnunet_version(installed: str | None = None) -> str:
    """Return the installed nnunetv2 version; RuntimeError saying what to install if it is unsupported."""
    install = f"pip install '{NNUNET_REQUIREMENT}'"
    if installed is None:
        try:
            installed = version("nnunetv2")
        except PackageNotFoundError:
            raise RuntimeError(f"nnunetv2 is not installed: {install}") from None
    specifier = Requirement(NNUNET_REQUIREMENT).specifier
    try:
        parsed = Version(installed)
    except InvalidVersion:
        raise RuntimeError(f"cannot read the installed nnunetv2 version {installed!r}: {install}") from None
    if specifier.contains(parsed, prereleases=True):
        return installed
    why = ""
    if parsed < EXT_TRAINER_RELEASE:
        why = (f" nnunetv2 {EXT_TRAINER_RELEASE.base_version} is needed for nnUNet_extTrainer, the only way "
               "nnUNetv2_train and nnUNetv2_predict find trainers outside nnU-Net's own folder.")
    raise RuntimeError(
        f"nnunetv2_unetrpp supports {NNUNET_REQUIREMENT}, but nnunetv2 {installed} is installed.{why} "
        f"Install a supported version: {install}"
    )
