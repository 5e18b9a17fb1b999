"""The comparison's user error: the CLI prints its message without a traceback and exits with 2."""
from nnunetv2_unetrpp.command_line import UserError


class CompareError(UserError):
    """A problem with the user's inputs (files, folders, arguments), described by file name."""
