"""Checkpoints that can be trusted after a crash: checksummed, fingerprinted, kept in two.

A checkpoint is the file ``torch.save`` writes (a zip archive: ``torch.load`` reads it as
ever), with a header in the archive's comment: the step, the sha256 and length of the archive
as torch wrote it, and the fingerprints of the configuration and data it was made with. So a
file cut short, altered or made for another run is told apart from a good one before its state
is used, and a message can say which step a whole file holds.

A checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain values only, never
an object whose unpickling would run code. Run folders are shared; a crafted ``last.pt`` is
refused with one line before anything in it runs.

``last.pt`` is written through a temporary file; only once that is whole on disk does the old
``last.pt`` become ``prev.pt`` and the new one take its place. A kill at any moment leaves a
whole checkpoint: ``last.pt``, or (between the two renames) ``prev.pt``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path

import torch

from pnl_da.errors import DataError
from pnl_da.files import atomic_write

COMMENT_MAGIC = b"PNLDA-CHECKPOINT 2 "
END_OF_ARCHIVE = b"PK\x05\x06"  # the zip end-of-central-directory record: 22 bytes + comment
CHECKPOINTS = Path("checkpoints")
LAST = CHECKPOINTS / "last.pt"
PREVIOUS = CHECKPOINTS / "prev.pt"


class CorruptCheckpoint(DataError):
    """A checkpoint file that is not whole: cut short, altered, or not pnl-da's. ``reason`` is
    the message without its advice, for callers that know better what to offer."""

    def __init__(self, reason: str, advice: str = "restore it, or delete its run folder to "
                 "train again"):
        super().__init__(f"{reason}; {advice}")
        self.reason = reason


def save_checkpoint(state: dict, path: Path, fingerprints: dict | None = None,
                    previous: Path | None = None) -> None:
    """Write ``state`` to ``path``; with ``previous``, the file it replaces is kept there."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    archive = buffer.getbuffer()
    if bytes(archive[-22:-18]) != END_OF_ARCHIVE or bytes(archive[-2:]) != b"\0\0":
        raise RuntimeError("torch.save wrote no plain zip archive; pnl-da cannot checksum it")
    header = {"step": state.get("step"), "sha256": hashlib.sha256(archive).hexdigest(),
              "bytes": len(archive), **(fingerprints or {})}
    comment = COMMENT_MAGIC + json.dumps(header).encode()
    if len(comment) > 0xFFFF:
        raise RuntimeError("the checkpoint header does not fit in a zip comment")

    def write(handle):
        handle.write(archive[:-2])
        handle.write(struct.pack("<H", len(comment)))
        handle.write(comment)

    def rotate():
        if previous is not None and path.exists():
            os.replace(path, previous)

    atomic_write(path, write, before_replace=rotate)


def _unreadable(path: Path, reason: str) -> CorruptCheckpoint:
    reason = " ".join(reason.split()) or "unreadable"
    reason = reason if len(reason) <= 60 else reason[:57] + "..."
    return CorruptCheckpoint(f"checkpoint {path} is unreadable ({reason}): it was cut short, "
                             "altered, or is not a pnl-da checkpoint")


def _header(data: bytes) -> tuple[dict, int] | None:
    """(header, offset of the end record) of a pnl-da checkpoint; None without a header."""
    end = data.rfind(END_OF_ARCHIVE, max(0, len(data) - 22 - 0xFFFF))
    while end >= 0:
        (length,) = struct.unpack("<H", data[end + 20:end + 22] or b"\0\0")
        comment = data[end + 22:]
        if len(comment) == length and comment.startswith(COMMENT_MAGIC):
            try:
                return json.loads(comment[len(COMMENT_MAGIC):]), end
            except ValueError:
                return None
        end = data.rfind(END_OF_ARCHIVE, 0, end)
    return None


def read_checkpoint(path: Path, map_location="cpu", state: bool = True) -> tuple[dict, dict]:
    """(header, state) of a checkpoint, verified against its checksum; ``state=False`` reads
    and verifies the header only (state: {}). Checkpoints of earlier pnl-da versions (no
    header) load with a header of their step alone."""
    path = Path(path)
    data = path.read_bytes()
    found = _header(data)
    if found is None:
        if data[:4] != b"PK\x03\x04":
            raise _unreadable(path, "not a checkpoint file")
        return _legacy(path, data, map_location)
    header, end = found
    try:
        size, digest = int(header["bytes"]), header["sha256"]
    except (KeyError, TypeError, ValueError):
        raise _unreadable(path, "its header is damaged") from None
    view = memoryview(data)
    checksum = hashlib.sha256(view[:end + 20])
    checksum.update(b"\0\0")  # the comment length, as torch wrote it
    if end + 22 != size or checksum.hexdigest() != digest:
        raise _unreadable(path, "its checksum does not match")
    if not state:
        return header, {}
    try:
        loaded = safe_load(io.BytesIO(data), map_location)
    except CodeInFile as exc:
        raise _code_in(path, exc) from None
    except Exception as exc:  # a whole file whose archive torch cannot read (another version)
        raise _unreadable(path, str(exc) or type(exc).__name__) from None
    return header, _checked(path, loaded)


class CodeInFile(Exception):
    """A file torch would unpickle with objects beyond tensors and plain values."""


def _code_in(path: Path, exc: CodeInFile) -> CorruptCheckpoint:
    return CorruptCheckpoint(f"checkpoint {path} {exc}", "use run folders only from sources "
                             "you trust, or train the run again in another --out")


# Numpy arrays of numbers, as the random-number state of checkpoints of earlier pnl-da
# versions holds them: rebuilt from their bytes, no code of the file runs.
_NUMPY_ARRAYS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                 "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType")


def _numpy_globals() -> list:
    import importlib

    found = []
    for name in _NUMPY_ARRAYS:
        module, _, attribute = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError):
            continue
    return found


def safe_load(source, map_location="cpu"):
    """``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples, dicts (and
    numpy arrays of numbers). Anything else, a pickled object whose loading could run code,
    raises CodeInFile naming it, and nothing of it runs."""
    import pickle

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        what = found[0].split("GLOBAL", 1)[1].split()[0] if found else "an object"
        raise CodeInFile(f"holds {what}, which is not a tensor or a plain value: loading it "
                         "could run code, so pnl-da refuses it (nothing in it was run)") from None


def _legacy(path: Path, data: bytes, map_location) -> tuple[dict, dict]:
    try:
        loaded = safe_load(io.BytesIO(data), map_location)
    except CodeInFile as exc:
        raise _code_in(path, exc) from None
    except Exception as exc:  # cut short, most often: torch's reader names no cause we could
        raise _unreadable(path, "cut short: no end of archive"
                          if END_OF_ARCHIVE not in data[-0x10015:] else
                          str(exc) or type(exc).__name__) from None
    loaded = _checked(path, loaded)
    return {"step": loaded.get("step")}, loaded


def _checked(path: Path, state) -> dict:
    if not isinstance(state, dict) or "method" not in state:
        raise CorruptCheckpoint(f"{path} is not a pnl-da checkpoint (no model state in it)")
    return state


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The saved state; a file that is not a whole checkpoint is a data error naming it."""
    return read_checkpoint(path, map_location)[1]


def checkpoint_step(path: Path) -> int | None:
    """The step a whole checkpoint holds; None when the file is missing or not whole."""
    try:
        return read_checkpoint(path, state=False)[0].get("step")
    except (OSError, DataError):
        return None
