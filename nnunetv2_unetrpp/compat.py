"""The nnU-Net versions this plugin is tested with, checked before anything relies on them."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: Inclusive lower, exclusive upper bound. nnU-Net changed `build_network_architecture` in 2.3 and
#: 2.7; these trainers use the >= 2.7 signature.
SUPPORTED_NNUNET = ((2, 7), (2, 9))


def _parse(v: str) -> tuple[int, ...]:
    parts = []
    for token in v.split(".")[:3]:
        digits = "".join(ch for ch in token if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_nnunet_version(installed: str | None = None) -> str:
    """Return the installed nnunetv2 version; RuntimeError saying what to do if it is unsupported."""
    if installed is None:
        try:
            installed = version("nnunetv2")
        except PackageNotFoundError:
            raise RuntimeError("nnunetv2 is not installed: pip install 'nnunetv2>=2.7,<2.9'") from None
    low, high = SUPPORTED_NNUNET
    if not low <= _parse(installed)[:2] < high:
        raise RuntimeError(
            f"nnunetv2_unetrpp supports nnunetv2 >= {'.'.join(map(str, low))} and < {'.'.join(map(str, high))}, "
            f"but {installed} is installed. Install a supported version: pip install 'nnunetv2>=2.7,<2.9'"
        )
    return installed
