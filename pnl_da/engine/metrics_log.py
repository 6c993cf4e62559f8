"""metrics.jsonl: one JSON object per evaluation of a run, appended as training goes (and
mirrored as TensorBoard scalars)."""

from __future__ import annotations

import json
from pathlib import Path

from pnl_da.files import append_line, write_text

METRICS = "metrics.jsonl"


def metrics_records(path: Path) -> list[tuple[str, dict]]:
    """The records of a metrics.jsonl, each with its line (none if there is no file). Blank
    lines are skipped, and so is a line cut short by a process killed while appending it: the
    log is appended to, not written atomically."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append((line, record))
    return records


class RunLog:
    """Where a run's evaluation records go: appended to ``<run>/metrics.jsonl`` and, with
    ``tensorboard`` and the package installed (the extra 'tensorboard'), written as scalars
    under ``<run>/tensorboard/``. Only the main process (``writes``) writes."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = False, writes: bool = True):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = writes and self.run_dir is not None
        self.tensorboard = tensorboard
        self._board = None  # the SummaryWriter, made at the first record; False: none
        self._purge: int | None = None

    def resumed_at(self, step: int) -> None:
        """Drop the records after ``step``: a resumed run writes them again. TensorBoard's
        events after it are purged when its writer opens."""
        self._purge = step + 1 if step else None
        if not self.writes:  # writes implies a run folder
            return
        metrics = self.run_dir / METRICS
        if metrics.is_file():
            kept = [line for line, record in metrics_records(metrics)
                    if record.get("step", 0) <= step]
            write_text(metrics, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        """One record: its groups (dicts of numbers) as ``group/name`` scalars, its other
        numbers but the step as ``train/name``."""
        if not self.writes:
            return
        append_line(self.run_dir / METRICS, json.dumps(record))
        board = self._writer()
        if board is None:
            return
        step = record["step"]
        for key, value in record.items():
            if isinstance(value, dict):
                for name, number in value.items():
                    board.add_scalar(f"{key}/{name}", number, step)
            elif key != "step" and isinstance(value, (int, float)) and not isinstance(value,
                                                                                       bool):
                board.add_scalar(f"train/{key}", value, step)
        board.flush()

    def _writer(self):
        if self._board is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra is not installed
                self._board = False
            else:
                self._board = SummaryWriter(str(self.run_dir / "tensorboard"),
                                            purge_step=self._purge)
        return self._board or None

    def close(self) -> None:
        if self._board:
            self._board.close()
        self._board = None
