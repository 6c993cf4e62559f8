"""Every run below a folder, read as it is: finished, unfinished, running or unreadable.

A run folder is one holding a ``config.yaml`` (every pnl-da run writes it first). Folders of
Hydra's own (``multirun/``, ``.hydra/``) and checkpoints are not looked into. Nothing here
writes: a report can be made while runs are training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pnl_da.config import IGNORED_FOR_REUSE
from pnl_da.engine.metrics_log import METRICS, metrics_records
from pnl_da.engine.tasks import comparable, task_class

SKIPPED_FOLDERS = {"multirun", ".hydra", "checkpoints", "tensorboard", ".submitit"}
# what tells runs of one method apart without making them different settings
NOT_SETTINGS = {"seed", "benchmark.source", "benchmark.target", "benchmark.classes",
                "dataset.split_seed", *IGNORED_FOR_REUSE}


@dataclass
class Run:
    folder: Path
    status: str  # finished | unfinished | running | unreadable
    config: dict = field(default_factory=dict)  # flattened comparable configuration
    result: dict | None = None
    records: list[dict] = field(default_factory=list)  # metrics.jsonl, whole lines only
    reason: str = ""  # unfinished or unreadable: what is known

    @cached_property
    def kind(self):
        """The run's task class (pnl_da/engine/tasks.py), from its configuration."""
        sections: dict = {}
        for key, value in self.config.items():
            section, _, leaf = key.partition(".")
            sections.setdefault(section, {})[leaf] = value
        return task_class(sections)

    @property
    def benchmark(self) -> str:
        """The table a run belongs to: its benchmark, or its semi-supervised dataset."""
        return self.kind.table_of(self.config)

    @property
    def task(self) -> str:
        return self.kind.label_of(self.config)

    @property
    def method(self) -> str:
        return self.config.get("method.name", "?")

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_folders(root: Path) -> list[Path]:
    found = []
    for config in sorted(Path(root).rglob("config.yaml")):
        parts = set(config.relative_to(root).parts[:-1])
        if not parts & SKIPPED_FOLDERS:
            found.append(config.parent)
    return found


def read_run(folder: Path) -> Run:
    from pnl_da.files import FolderLock

    try:
        config = flatten(comparable((folder / "config.yaml").read_text()))
    except Exception as exc:  # not a pnl-da configuration: listed, not fatal
        return Run(folder, "unreadable", reason=f"config.yaml: {type(exc).__name__}")
    records = [record for _, record in metrics_records(folder / METRICS)]
    try:
        result = json.loads((folder / "result.json").read_text())
    except FileNotFoundError:
        result = None
    except ValueError:
        return Run(folder, "unreadable", config, None, records, "result.json is not JSON")
    if result is not None:
        return Run(folder, "finished", config, result, records)
    steps = config.get("trainer.steps")
    done = records[-1]["step"] if records else 0
    running = FolderLock(folder).held()
    return Run(folder, "running" if running else "unfinished", config, None, records,
               f"last evaluation at step {done} of {steps}")


def collect(root: Path) -> list[Run]:
    return [read_run(folder) for folder in run_folders(Path(root))]


def variants(runs: list[Run]) -> dict[Path, str]:
    """For runs of one method in one table, the settings that tell them apart
    (``method.k=3``), empty where they share every setting: a cell mixes no settings."""
    keys = sorted({k for r in runs for k in r.config} - NOT_SETTINGS)
    varying = [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]
    return {r.folder: ", ".join(f"{k}={r.config.get(k)}" for k in varying) for r in runs}
