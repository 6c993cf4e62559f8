"""metrics.jsonl: one JSON object per evaluation of a run, appended as training goes."""

from __future__ import annotations

import json
from pathlib import Path

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
