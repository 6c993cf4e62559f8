"""Errors that the command line turns into one line on stderr and an exit code.

Exit codes follow the interface contract: 2 usage or configuration, 3 data, 1 anything else.
"""


def first_line(exc: BaseException, limit: int | None = 80) -> str:
    """The first line of an exception's message, cut to ``limit`` characters ("..." marks a
    cut; None: uncut); "" when the message is empty. Library messages can run to pages, and an
    error here is one line."""
    lines = str(exc).strip().splitlines()
    line = lines[0].strip() if lines else ""
    return line if limit is None or len(line) <= limit else line[:limit - 3] + "..."


class PnlError(Exception):
    """An error whose message is already fit for a user: what went wrong and how to fix it."""

    exit_code = 1


class UsageError(PnlError):
    """Unknown benchmark, task, method, key; a bad value; an unusable output folder."""

    exit_code = 2


class DataError(PnlError):
    """Dataset missing, file missing or unreadable, bad image list."""

    exit_code = 3


class Stopped(KeyboardInterrupt):
    """A SIGINT or SIGTERM that stops the process where it is (pnl_da/engine/signals.py)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal: the folder, the step it stopped at, the step of the
    checkpoint it keeps (None: none to resume) and the signal (exit code 128 + signal);
    ``during``: an error raised while the signal unwound the process, if one was."""

    def __init__(self, out_dir, checkpoint_step: int | None, signum: int,
                 step: int | None = None, during: BaseException | None = None):
        super().__init__(str(out_dir))
        self.out_dir, self.checkpoint_step, self.signum = out_dir, checkpoint_step, signum
        self.step, self.during = step, during

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_step is not None
