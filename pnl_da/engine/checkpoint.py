"""Checkpoints and small run files, written atomically: a temporary file, then a rename, so an
interrupted write never leaves a broken file where a good one was."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path

import torch

from pnl_da.errors import DataError


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it; put it straight back
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode open() would, as
        # metrics.jsonl gets, so that results on a shared machine are readable by the group
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict, path: Path) -> None:
    _atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The saved state; a file that is not a whole checkpoint (cut short by a copy, or not
    written by pnl-da) is a data error naming it, not torch's unpickling message."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        words = " ".join(str(exc).split()) or type(exc).__name__
        reason = words if len(words) <= 60 else words[:57] + "..."
        raise DataError(f"checkpoint {path} is unreadable ({reason}); it was cut short or is "
                        "not a pnl-da checkpoint: restore it, or delete its run folder to train "
                        "again") from exc
    if not isinstance(state, dict) or "method" not in state:
        raise DataError(f"{path} is not a pnl-da checkpoint (no model state in it); restore "
                        "it, or delete its run folder to train again")
    return state


def write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    _atomic(path, lambda handle: handle.write(text.encode()))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda handle: handle.write(text.encode()))
