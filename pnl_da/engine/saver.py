"""A run folder's checkpoints: which one a resume reads, whether it belongs to this run, and
writing the next (the file format is pnl_da/engine/checkpoint.py's).

The trainer hands over its whole state and takes it back; it never touches a path. The policy:
``--resume`` reads ``last.pt``, or ``prev.pt`` when a kill fell between the two renames of a
write; ``--resume-from prev`` reads ``prev.pt`` and sets ``last.pt`` aside (kept, never
deleted). A damaged file is refused, naming a whole ``prev.pt`` to go on from; a checkpoint
made with another configuration or other data is refused, naming what differs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pnl_da.config import first_difference, to_yaml
from pnl_da.engine.checkpoint import (
    LAST,
    PREVIOUS,
    CorruptCheckpoint,
    checkpoint_step,
    read_checkpoint,
    save_checkpoint,
)
from pnl_da.engine.tasks import comparable
from pnl_da.errors import DataError, UsageError

# the three streams of a run, as a checkpoint's data fingerprints name them
DATA_ROLES = {"source": "source", "target_train": "target (training)",
              "target_eval": "target (evaluation)"}


class CheckpointSaver:
    """Checkpoints of the run in ``run_dir``, made with ``cfg`` on ``data``. Only the main
    process (``writes``) changes files; every process reads."""

    def __init__(self, run_dir: Path, cfg, data, writes: bool = True):
        self.run_dir, self.cfg, self.data, self.writes = Path(run_dir), cfg, data, writes
        self.last, self.previous = self.run_dir / LAST, self.run_dir / PREVIOUS
        self._fingerprints: dict | None = None

    def fingerprints(self) -> dict:
        """What a checkpoint must have been made with to resume here: the configuration (as
        compared for reuse) and a digest of each data stream."""
        if self._fingerprints is None:
            digests: dict[int, str] = {}  # the target often trains and is scored on one split
            data = {}
            for role in DATA_ROLES:
                domain = getattr(self.data, role)
                if id(domain) not in digests:
                    digests[id(domain)] = domain.fingerprint()
                data[role] = digests[id(domain)]
            self._fingerprints = {"config": comparable(to_yaml(self.cfg)), "data": data}
        return self._fingerprints

    def check_identity(self, path: Path, header: dict) -> None:
        """Refuse a checkpoint made with another configuration or other data (checkpoints of
        earlier versions carry no fingerprints and are not checked)."""
        mine = self.fingerprints()
        config = header.get("config")
        if config is not None and config != mine["config"]:
            diff = first_difference(config, mine["config"]) or "the configuration"
            raise UsageError(f"checkpoint {path} was made with another configuration "
                             f"({diff.replace(' in the run,', ' in the checkpoint,')}); resume "
                             "with the run's own settings, or train in another --out")
        changed = [role for role, digest in (header.get("data") or {}).items()
                   if mine["data"].get(role) != digest]
        if changed:
            names = ", ".join(f"{DATA_ROLES.get(r, r)} {getattr(self.data, r).name} "
                              f"({getattr(self.data, r).split})" for r in changed)
            raise DataError(f"the data changed since checkpoint {path} was written: {names}; "
                            "its images, labels or list differ from the checkpoint's: restore "
                            "the data the run started with, or train afresh in another --out")

    def to_resume(self, from_previous: bool = False) -> Path | None:
        """The checkpoint a resume reads, or None when the run has none."""
        if from_previous:
            if not self.previous.is_file():
                raise UsageError(f"--resume-from prev: {self.previous} does not exist; "
                                 "continue with --resume")
            return self.previous
        return next((p for p in (self.last, self.previous) if p.is_file()), None)

    def read(self, path: Path) -> dict:
        """The state in ``path``, on the CPU (generator states must stay CPU tensors), once
        the file is whole and made by this run's configuration on its data."""
        try:
            header, state = read_checkpoint(path, map_location="cpu")
        except CorruptCheckpoint as exc:
            raise CorruptCheckpoint(exc.reason, self._offer(path)) from None
        self.check_identity(path, header)
        return state

    def _offer(self, damaged: Path) -> str:
        """What to do about a damaged checkpoint: go on from a whole previous one, if any."""
        step = checkpoint_step(self.previous) if damaged != self.previous else None
        if step is not None:
            return (f"the previous checkpoint {self.previous} (step {step}) is whole: continue "
                    "from it with --resume-from prev (the damaged file is set aside, not "
                    "deleted)")
        return "restore it, or train again in another --out"

    def set_last_aside(self) -> Path | None:
        """Move ``last.pt`` out of the way of a resume from ``prev.pt``; its new path."""
        if not (self.writes and self.last.exists()):
            return None
        aside = self.last.with_name(f"last-set-aside-{time.strftime('%Y%m%d-%H%M%S')}.pt")
        os.replace(self.last, aside)
        return aside

    def save(self, state: dict) -> None:
        """Write ``state`` as ``last.pt``, the one it replaces kept as ``prev.pt``."""
        if self.writes:
            save_checkpoint(state, self.last, self.fingerprints(), previous=self.previous)
