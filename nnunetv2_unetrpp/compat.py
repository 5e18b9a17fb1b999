"""The nnU-Net versions this plugin supports, checked before anything relies on them.

Below 2.8 the plugin cannot work (no `nnUNet_extTrainer`), so that is an error. A release above the
tested range only gets a warning: pip's range in setup.py keeps installs within it, and a user who
chose a newer nnU-Net should be able to try it.
"""
from __future__ import annotations

import functools
import warnings
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from nnunetv2_unetrpp.dependencies import NNUNET_REQUIREMENT

#: The first nnunetv2 release with `nnUNet_extTrainer` (external trainer lookup).
EXT_TRAINER_RELEASE = Version("2.8.0")


class UntestedNnunetWarning(UserWarning):
    """The installed nnunetv2 is newer than the versions this plugin was tested with."""


def check_nnunet_version(installed: str | None = None) -> str:
    """Return the installed nnunetv2 version. RuntimeError saying what to install if it is older than
    2.8 or unreadable; one UntestedNnunetWarning per version if it is newer than the tested range."""
    install = f"pip install '{NNUNET_REQUIREMENT}'"
    if installed is None:
        try:
            installed = version("nnunetv2")
        except PackageNotFoundError:
            raise RuntimeError(f"nnunetv2 is not installed: {install}") from None
    try:
        parsed = Version(installed)
    except InvalidVersion:
        raise RuntimeError(f"cannot read the installed nnunetv2 version {installed!r}: {install}") from None
    if Requirement(NNUNET_REQUIREMENT).specifier.contains(parsed, prereleases=True):
        return installed
    if parsed < EXT_TRAINER_RELEASE:
        raise RuntimeError(
            f"nnunetv2_unetrpp supports {NNUNET_REQUIREMENT}, but nnunetv2 {installed} is installed. nnunetv2 "
            f"{EXT_TRAINER_RELEASE.base_version} is needed for nnUNet_extTrainer, the only way nnUNetv2_train and "
            f"nnUNetv2_predict find trainers outside nnU-Net's own folder. Install a supported version: {install}")
    _warn_untested(installed)
    return installed


@functools.cache
def _warn_untested(installed: str) -> None:
    warnings.warn(f"nnunetv2_unetrpp is tested with {NNUNET_REQUIREMENT}; nnunetv2 {installed} is newer and "
                  f"untested. If something fails, install a tested version: pip install '{NNUNET_REQUIREMENT}'",
                  UntestedNnunetWarning, stacklevel=3)
