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


FEW_POINTS = 30  # a line with at most this many points marks each of them


def _plot(ax, steps, values, label: str, **style):
    """A line with a marker on every point where there are few: a run with one evaluation
    is a point, never an invisible line."""
    marker = {"marker": "o", "markersize": 4} if len(steps) <= FEW_POINTS else {}
    return ax.plot(steps, values, label=label, **marker, **style)[0]


def _legend_outside(target, handles=None, labels=None) -> None:
    """The legend right of the drawing, where it covers no data."""
    if handles is None:
        handles, labels = target.get_legend_handles_labels()
    if handles:
        target.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      borderaxespad=0.0, fontsize=8, frameon=False)


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def curves(table, task: str):
    """The metric against the step: per row the mean over seeds, and a band from the lowest
    to the highest seed where a row has several."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    banded = False
    for label, runs in _by_row(table, task).items():
        series = [dict(zip(*curve_of(r, table.metric))) for r in runs]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not steps:
            continue
        values = [[s[step] for s in series] for step in steps]
        line = _plot(ax, steps, [statistics.mean(v) for v in values],
                     f"{label} ({_seeds(len(series))})")
        if len(series) > 1:
            banded = True
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    what = ("mean over seeds, band from the lowest to the highest" if banded
            else "one seed per row")
    ax.set(xlabel="step", ylabel=NAMES.get(table.metric, table.metric),
           title=f"{table.benchmark} {task}: {what}")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
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
    fig, axes = plt.subplots(1, max(1, len(terms)), figsize=(3.2 * max(1, len(terms)), 3.4),
                             squeeze=False)
    colours = {label: f"C{i}" for i, label in enumerate(rows)}  # a row's colour in every panel
    for ax, term in zip(axes[0], terms):
        for label, runs in rows.items():
            per_step: dict[int, list[float]] = {}
            for run in runs:
                for rec in run.records:
                    value = {**rec.get("losses", {}), **rec.get("train_metrics", {})}.get(term)
                    if value is not None:
                        per_step.setdefault(rec["step"], []).append(value)
            steps = sorted(per_step)
            if steps:
                _plot(ax, steps, [statistics.mean(per_step[s]) for s in steps],
                      f"{label} ({_seeds(len(runs))})", color=colours[label])
        metric = any(term in rec.get("train_metrics", {}) for runs in rows.values()
                     for r in runs for rec in r.records)
        ax.set(title=f"{term} (logged, not optimised)" if metric else term,
               xlabel="step", ylabel="value" if metric else "loss")
        ax.grid(alpha=0.3)
    # one legend for every panel, right of the last
    seen = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    _legend_outside(axes[0][-1], list(seen.values()), list(seen))
    fig.suptitle(f"{table.benchmark} {task}: loss terms, mean over seeds (no band)",
                 fontsize=10)
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
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(classes) * max(1, len(means)) + 2), 4))
    for i, (label, values) in enumerate(means.items()):
        ax.bar([k + i * width for k in range(len(classes))],
               [values.get(c, 0.0) for c in classes], width,
               label=f"{label} ({_seeds(len(rows[label]))})")
    long_names = max((len(c) for c in classes), default=0) > 3
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(classes))], classes,
                  rotation=90 if long_names else 0, fontsize=7 if long_names else 9)
    ax.set(xlabel="class", ylabel="accuracy (%)", ylim=(0, 100),
           title=f"{table.benchmark} {task}: per-class accuracy of the final model, mean over "
                 "seeds")
    _legend_outside(ax)
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
            fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend outside included
            plt.close(fig)
            saved.append(path)
    return saved
