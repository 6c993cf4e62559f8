"""The report's pictures (matplotlib, PNG): curves, losses and per-class accuracy per task.

Each drawing function returns its figure, so that what it plotted can be read back (the tests
compare the lines with metrics.jsonl); ``draw_all`` saves them.
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no screen needed
import matplotlib.pyplot as plt  # noqa: E402

from pnl_da.engine.validators import BETTER as LABEL_FREE  # noqa: E402 - the label-free scores
from pnl_da.report.collect import Run  # noqa: E402

NAMES = {"accuracy": "accuracy (%)", "mean_class_accuracy": "mean class accuracy (%)",
         "error": "test error (%)", "snd": "SND (label-free, higher is better)"}


def curve_of(run: Run, metric: str) -> tuple[list[int], list[float]]:
    """(steps, the reported prediction's headline metric at each logged evaluation)."""
    head = (run.result or {}).get("prediction") or run.config.get("method.predict", "mean")
    key = "mean_class_accuracy" if metric == "mean_class_accuracy" else "accuracy"
    steps, values = [], []
    for record in run.records:
        if metric in LABEL_FREE:
            value = (record.get("validation") or {}).get(metric)
        else:
            scores = record.get(key, {})
            value = scores.get(head, scores.get("mean"))
        if value is None:
            continue
        steps.append(record["step"])
        values.append(100 - value if metric == "error" else value)
    return steps, values


def _by_row(table, task: str) -> dict[str, list[Run]]:
    """The task's runs per row, in the table's row order."""
    rows: dict[str, list[Run]] = {row.label: [] for row in table.rows}
    for run in table.runs:
        if run.task == task:
            rows[table.labels[run.folder]].append(run)
    return {label: runs for label, runs in rows.items() if runs}


def curves(table, task: str):
    """The metric against the step: per row the mean over seeds, and a band from the lowest
    to the highest seed."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in _by_row(table, task).items():
        series = [dict(zip(*curve_of(r, table.metric))) for r in runs]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not steps:
            continue
        values = [[s[step] for s in series] for step in steps]
        line, = ax.plot(steps, [statistics.mean(v) for v in values], label=label)
        if len(series) > 1:
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(xlabel="step", ylabel=NAMES.get(table.metric, table.metric),
           title=f"{table.benchmark} {task}: mean over seeds, band from min to max")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def losses(table, task: str):
    """Each loss term against the step (mean over seeds), one panel per term."""
    rows = _by_row(table, task)
    # loss terms first, then the metrics methods log beside them (train_metrics)
    terms = [*sorted({t for runs in rows.values() for r in runs for rec in r.records
                      for t in rec.get("losses", {})}),
             *sorted({t for runs in rows.values() for r in runs for rec in r.records
                      for t in rec.get("train_metrics", {})})]
    fig, axes = plt.subplots(1, max(1, len(terms)), figsize=(3.2 * max(1, len(terms)), 3.2),
                             squeeze=False)
    for ax, term in zip(axes[0], terms):
        for label, runs in rows.items():
            per_step: dict[int, list[float]] = {}
            for run in runs:
                for rec in run.records:
                    value = {**rec.get("losses", {}), **rec.get("train_metrics", {})}.get(term)
                    if value is not None:
                        per_step.setdefault(rec["step"], []).append(value)
            steps = sorted(per_step)
            ax.plot(steps, [statistics.mean(per_step[s]) for s in steps], label=label)
        metric = any(term in rec.get("train_metrics", {}) for runs in rows.values()
                     for r in runs for rec in r.records)
        ax.set(title=f"{term} (logged, not optimised)" if metric else term,
               xlabel="step")
        ax.grid(alpha=0.3)
    if axes[0][0].lines:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{table.benchmark} {task}: loss terms (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def class_accuracies(run: Run) -> dict[str, float]:
    path = run.folder / "per_class.csv"
    if not path.is_file():
        return {}
    with open(path) as handle:
        return {row["class"]: float(row["accuracy"]) for row in csv.DictReader(handle)
                if row["class"] != "mean" and row["accuracy"]}


def per_class(table, task: str):
    """Each class's accuracy of the final model, per row (mean over seeds)."""
    rows = _by_row(table, task)
    means = {}
    for label, runs in rows.items():
        accs = [class_accuracies(r) for r in runs]
        classes = list(dict.fromkeys(c for a in accs for c in a))
        means[label] = {c: statistics.mean(a[c] for a in accs if c in a) for c in classes}
    classes = list(dict.fromkeys(c for m in means.values() for c in m))
    width = 0.8 / max(1, len(means))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(classes) * max(1, len(means))), 3.8))
    for i, (label, values) in enumerate(means.items()):
        ax.bar([k + i * width for k in range(len(classes))],
               [values.get(c, 0.0) for c in classes], width, label=label)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(classes))], classes, rotation=90,
                  fontsize=7)
    ax.set(ylabel="accuracy (%)", ylim=(0, 100),
           title=f"{table.benchmark} {task}: per-class accuracy of the final model")
    if means:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def draw_all(table, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    drawings = [("curves", curves), ("losses", losses)]
    if table.metric not in LABEL_FREE:  # without target labels there is no per-class accuracy
        drawings.append(("per_class", per_class))
    for task in table.tasks:
        for kind, draw in drawings:
            fig = draw(table, task)
            name = table.benchmark + (f"_{table.metric}" if table.metric in LABEL_FREE else "")
            path = folder / f"{slug(name)}_{slug(task.replace('->', '2'))}_{kind}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            saved.append(path)
    return saved
