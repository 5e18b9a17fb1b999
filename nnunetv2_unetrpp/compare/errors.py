"""The one exception type for user errors: the CLI prints its message without a traceback and exits with 2."""


class CompareError(Exception):
    """A problem with the user's inputs (files, folders, arguments), described by file name."""
