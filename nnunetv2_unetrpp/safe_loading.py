"""Reading pickled files (checkpoints, nnU-Net v1 plans) without running code they may carry.

Unpickling calls whatever global a file names, so a downloaded `.model`, `.pth` or `.pkl` can run
code on load. Checkpoints go through `torch.load(weights_only=True)`, which only builds tensors,
containers and the globals allowed below; plans pickles go through a restricted unpickler that
allows containers, numpy arrays and numpy scalars. A file that needs anything else is refused with
an `UnsafePickleError` naming the global it asked for; `trust=True` loads it with plain pickle,
which the caller should only allow for files they trust (the CLIs spell that `--trust_pickles`).
"""
from __future__ import annotations

import collections
import importlib
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: What `--trust_pickles` risks, for the CLIs' help texts.
TRUST_PICKLES_HELP = ("load pickles that need globals outside the safe list with plain pickle: this runs any code "
                      "the file carries, so use it only for files you made or fully trust")

# numpy writes its private module names into pickles; numpy 1.x wrote `numpy.core`, numpy 2 writes
# `numpy._core`. Both names resolve to the same objects, taken from the module this numpy has under
# its own name (numpy 2 warns on `numpy.core`; numpy 1.26 has no `numpy._core.multiarray`).
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_multiarray = importlib.import_module("numpy._core.multiarray" if int(np.__version__.split(".")[0]) >= 2
                                      else "numpy.core.multiarray")
_NUMPY_PICKLE_GLOBALS = {"_reconstruct": _multiarray._reconstruct, "scalar": _multiarray.scalar}


def _numpy_dtype_classes() -> dict[str, type]:
    """The concrete dtype classes (`numpy.dtypes.Float64DType`, ...) that numpy >= 2 names in dtype pickles."""
    return {name: cls for name in dir(np.dtypes) if isinstance(cls := getattr(np.dtypes, name), type)
            and issubclass(cls, np.dtype)}


def _allowed_plain_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for everything a v1 plans pickle or a checkpoint may name."""
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "complex"): complex,
    }
    for module in _NUMPY_MODULES:
        for name, obj in _NUMPY_PICKLE_GLOBALS.items():
            allowed[(module, name)] = obj
    for name, cls in _numpy_dtype_classes().items():
        allowed[("numpy.dtypes", name)] = cls
    return allowed


_ALLOWED = _allowed_plain_globals()


class UnsafePickleError(ValueError):
    """A pickle needs a global outside the safe list; the message names it and the way out."""

    def __init__(self, path: Path | str, global_name: str) -> None:
        self.global_name = global_name
        super().__init__(
            f"{path} asks to load {global_name!r}, which is not on the safe list (containers, tensors, numpy "
            "arrays and scalars), so it was not loaded: unpickling it could run code. If you made this file or "
            "fully trust it, pass --trust_pickles.")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(self._path, f"{module}.{name}") from None


def load_pickle(path: Path | str, trust: bool = False) -> Any:
    """A plain pickle (e.g. nnU-Net v1's plans `.pkl`) with only containers and numpy data allowed.

    Raises UnsafePickleError for any other global, ValueError for a file that is not a readable pickle.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return pickle.load(f) if trust else _RestrictedUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated, corrupt or not a pickle at all
            raise ValueError(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from None


def _torch_safe_globals() -> list:
    """The globals above in the form `torch.serialization.safe_globals` takes: (object, pickled name)."""
    return [(obj, f"{module}.{name}") for (module, name), obj in _ALLOWED.items()
            if module != "builtins" and module != "collections"]


_UNSUPPORTED_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)")


def load_checkpoint(path: Path | str, trust: bool = False) -> Any:
    """A torch-saved file (nnU-Net v1/v2 checkpoint, converted weights) loaded on the CPU with
    `weights_only=True` plus the numpy globals that nnU-Net's logs put into checkpoints.

    Raises UnsafePickleError naming a global outside that list, ValueError for a file torch cannot read.
    """
    path = Path(path)
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _UNSUPPORTED_GLOBAL.search(str(e))
        if found:
            raise UnsafePickleError(path, found[1]) from None
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({_first_line(e)})") from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
