"""SIGTERM and SIGINT during a run: finish the step, checkpoint it, exit 143 / 130.

A cluster preempts a job with SIGTERM (Slurm, Kubernetes) and a person stops one with Ctrl-C.
While the training loop runs, the first signal is only recorded; the loop finishes its step,
writes a checkpoint of that step and stops (``Trainer.fit``). Outside the loop (loading data,
writing the result) and for a second signal, the signal stops the process at once, as a
``Stopped`` exception that unwinds through the atomic writers (they leave no half file).

An exception raised at an arbitrary point can leave a library it passed through inconsistent,
and its unwinding can then raise another error (as Python's documentation of KeyboardInterrupt
warns). Such an error is still the signal's doing: ``stopped_by`` names the signal, and the
command reports the stop (exit 128 + the signal) with that error in its line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from pnl_da.errors import Stopped

HANDLED = (signal.SIGINT, signal.SIGTERM)
_state = {"defer": 0, "received": None, "stopped": None, "depth": 0, "previous": {},
          "chained": {}}


def received() -> int | None:
    """The signal recorded while deferring, if any."""
    return _state["received"]


def stopped_by() -> int | None:
    """The first signal the last command got (recorded in the loop or raised outside it), if
    any; kept after the handlers are taken down, for the error paths that report the stop."""
    return _state["stopped"]


def _handler(signum, frame):
    _state["stopped"] = _state["stopped"] or signum
    if _state["defer"] and _state["received"] is None:
        _state["received"] = signum
        return
    raise Stopped(signum)


def _job_system_signals() -> list[int]:
    """The preemption signal of a job system that handles it in this process: submitit (Hydra's
    submitit launcher) requeues its job on SIGUSR2, or the signal SUBMITIT_PREEMPT_SIGNAL
    names. pnl-da checkpoints first, then hands the signal to that handler (``pass_on``)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    number = getattr(signal, f"SIG{name}", None)
    if number is None or number in HANDLED:
        return []
    handler = signal.getsignal(number)
    return [number] if callable(handler) and handler is not signal.default_int_handler else []


@contextlib.contextmanager
def handled():
    """Install the handlers for the duration of a command (main thread only: elsewhere Python
    cannot install them, and the signals go to the main thread anyway). Nested calls keep the
    outer installation."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["depth"]:
        _state["depth"] += 1
        try:
            yield
        finally:
            _state["depth"] -= 1
        return
    # a signal the process was started to ignore (SIGINT of a shell's background job) stays
    # ignored
    previous = {s: signal.getsignal(s) for s in HANDLED
                if signal.getsignal(s) is not signal.SIG_IGN}
    chained = {s: signal.getsignal(s) for s in _job_system_signals()}
    _state.update(received=None, stopped=None, depth=1, previous={**previous, **chained},
                  chained=chained)
    for s in _state["previous"]:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in _state["previous"].items():
            signal.signal(s, handler)
        _state.update(received=None, depth=0, previous={}, chained={})


def pass_on(signum: int) -> None:
    """Run the job system's own handler of ``signum`` (after the checkpoint): submitit's
    requeues the job and exits."""
    handler = _state["chained"].get(signum)
    if handler is not None:
        # what it raises or exits with is its word to the job system (submitit: requeued, or
        # not), never an error on the way out of the stop
        _state["stopped"] = None
        handler(signum, None)
@contextlib.contextmanager
def deferred():
    """Signals are recorded, not raised, inside this block (the training loop)."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1


def ignore_in_worker() -> None:
    """DataLoader workers leave the signals to the main process: Ctrl-C reaches the whole
    process group and a cluster signals every process of a job, and a worker that died of it
    would fail the batch the main process still needs to finish its step. They end when the
    main process shuts them down, or when it dies."""
    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)
