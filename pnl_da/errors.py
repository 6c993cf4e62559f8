"""Errors that the command line turns into one line on stderr and an exit code.

Exit codes follow the interface contract: 2 usage or configuration, 3 data, 1 anything else.
"""


class PnlError(Exception):
    """An error whose message is already fit for a user: what went wrong and how to fix it."""

    exit_code = 1


class UsageError(PnlError):
    """Unknown benchmark, task, method, key; a bad value; an unusable output folder."""

    exit_code = 2


class DataError(PnlError):
    """Dataset missing, file missing or unreadable, bad image list."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: which folder it hit and whether it has a checkpoint to resume."""

    def __init__(self, out_dir, has_checkpoint: bool):
        super().__init__(str(out_dir))
        self.out_dir, self.has_checkpoint = out_dir, has_checkpoint
