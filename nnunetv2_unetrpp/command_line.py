"""The convention every command of this package follows: a problem the user can fix is a
`UserError`, printed as one line `error: ...` on stderr with exit status 2, never a traceback."""
from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence

Main = Callable[[Sequence[str] | None], int | None]


class UserError(Exception):
    """Wrong input or environment that the user can fix; the message says what is wrong and what to do."""


def command(main: Main) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's `main(argv)`: its return value (default 0) is the exit status, a UserError
    becomes `error: <message>` on stderr and exit status 2."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        try:
            status = main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0 if status is None else status

    return run
