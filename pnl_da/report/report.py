"""`pnl-da report RUNS_DIR`: every finished run below a folder as tllib's tables, with the
published numbers beside them, pictures, label-free model selection and what did not finish.

One table per benchmark (semi-supervised runs: one table of datasets), methods as rows and
tasks as columns, mean ± sample standard deviation over seeds with the seed count, and an
average column (tllib's: the mean of the task means, where a row has every task). Runs of one
method whose settings differ are never averaged together: the row splits, named by the options
that differ (``pnl (method.k=3)``).
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import io
import json
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pnl_da.report.collect import Run, collect, variants
from pnl_da.report.tables import _latex_escape

METRIC_NAMES = {"accuracy": "accuracy (%)", "mean_class_accuracy": "mean class accuracy (%)",
                "error": "test error (%)",
                # a target without labels: its run is reported by a label-free score
                "snd": "SND, label-free: no target labels (higher is better)"}


@dataclass
class Cell:
    values: list[float]
    seeds: list[int]

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self, pm: str = "±") -> str:
        spread = f" {pm} {self.std:.2f}" if self.std is not None else ""
        return f"{self.mean:.2f}{spread} ({len(self.values)})"


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]
    published: str = ""  # where a published row comes from; "" for runs

    def average(self, tasks: list[str]) -> float | None:
        """tllib's average: the mean of the task means, where the row has every task."""
        if not tasks or any(t not in self.cells for t in tasks):
            return None
        return statistics.mean(self.cells[t].mean for t in tasks)


@dataclass
class Table:
    benchmark: str
    metric: str
    tasks: list[str]
    rows: list[Row]
    published: list[Row] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    labels: dict[Path, str] = field(default_factory=dict)  # run folder -> its row

    def headers(self) -> list[str]:
        return [task_label(self.benchmark, t) for t in self.tasks]


def task_label(benchmark: str, task: str) -> str:
    """``A→W``: tllib's short names where the domains have them."""
    if benchmark == "ssl" or "->" not in task:
        return task
    from pnl_da.data.registry import get_benchmark

    try:
        bench = get_benchmark(benchmark)
        names = [bench.domain(d) for d in task.split("->")]
    except Exception:  # a benchmark of another version: its names as written
        return task.replace("->", "→")
    return "→".join(min((d.name, *d.aliases), key=len) for d in names)


# rows in the order papers print them: baselines first, the method last; others after
def method_order(method: str) -> tuple[int, str]:
    """Rows in the methods' own order (``Method.order``); a method no longer known, last."""
    from pnl_da.methods import METHODS

    return (METHODS[method].order if method in METHODS else 1_000, method)


def metric_of(run: Run) -> tuple[str, float]:
    result = run.result or {}
    name = result.get("headline", "accuracy")
    return name, result.get("metrics", {}).get(name)


def task_order(benchmark: str, tasks: set[str]) -> list[str]:
    """The benchmark's standard tasks in their order, then the others sorted."""
    if benchmark == "ssl":
        return sorted(tasks)
    from pnl_da.data.registry import get_benchmark

    try:
        bench = get_benchmark(benchmark)
        standard = []
        for task in bench.standard_tasks:
            source, target = bench.parse_task(task)
            standard.append(f"{source.name}->{target.name}")
    except Exception:
        standard = []
    return [t for t in standard if t in tasks] + sorted(tasks - set(standard))


def published_rows(benchmark: str, tasks: list[str]) -> list[Row]:
    refs = json.loads(resources.files("pnl_da.report").joinpath("references.json").read_text())
    entry = refs.get(benchmark)
    if not entry:
        return []
    rows = []
    for name, values in entry["rows"].items():
        cells = {t: Cell([v], []) for t, v in values.items() if t in tasks}
        if cells:
            rows.append(Row(f"{name} (published)", cells, entry["source"]))
    return rows


def build_tables(runs: list[Run]) -> list[Table]:
    """One table per benchmark and headline metric (runs on a target without labels report a
    label-free score, never beside accuracies)."""
    finished = [r for r in runs if r.status == "finished"]
    tables = []
    for benchmark, metric in sorted({(r.benchmark, metric_of(r)[0]) for r in finished}):
        mine = [r for r in finished if (r.benchmark, metric_of(r)[0]) == (benchmark, metric)]
        tasks = task_order(benchmark, {r.task for r in mine})
        rows: dict[str, dict[str, Cell]] = {}
        labels: dict[Path, str] = {}
        for method in sorted({r.method for r in mine}, key=method_order):
            group = [r for r in mine if r.method == method]
            names = variants(group)
            for run in sorted(group, key=lambda r: (r.task, r.seed)):
                label = f"{method} ({names[run.folder]})" if names[run.folder] else method
                labels[run.folder] = label
                cell = rows.setdefault(label, {}).setdefault(run.task, Cell([], []))
                if run.seed in cell.seeds:  # the same seed twice: two folders, one run
                    continue
                cell.values.append(metric_of(run)[1])
                cell.seeds.append(run.seed)
        table_rows = [Row(label, cells) for label, cells in rows.items()]
        tables.append(Table(benchmark, metric, tasks, table_rows,
                            published_rows(benchmark, tasks), mine, labels))
    return tables


# -- model selection without target labels -------------------------------------------------

def spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def selection(runs: list[Run]) -> list[dict]:
    """Per task: how well each label-free score ranks the finished runs against their true
    target metric (Spearman's rho, with the score's sign: 1 is a perfect ranking), and the
    metric of the run each score would choose, beside the best and the mean."""
    from pnl_da.engine.validators import BETTER

    out = []
    # runs with target labels: the scores are measured against the true target metric
    finished = [r for r in runs if r.status == "finished" and (r.result or {}).get("validation")
                and (r.result or {}).get("target_labels", True)]
    for benchmark, task in sorted({(r.benchmark, r.task) for r in finished}):
        group = [r for r in finished if (r.benchmark, r.task) == (benchmark, task)]
        metric = metric_of(group[0])[0]
        truth = [metric_of(r)[1] for r in group]
        good = (lambda v: -v) if metric == "error" else (lambda v: v)
        for score, better in BETTER.items():
            scored = [(r, r.result["validation"][score]) for r in group
                      if score in r.result["validation"]]
            if not scored:
                continue
            sign = 1 if better == "higher" else -1
            values = [sign * v for _, v in scored]
            rho = spearman(values, [good(metric_of(r)[1]) for r, _ in scored])
            picked = max(scored, key=lambda rv: sign * rv[1])[0]
            out.append({"benchmark": benchmark, "task": task, "score": score,
                        "better": better, "runs": len(scored), "spearman": rho,
                        "picked": str(picked.folder), "picked_metric": metric_of(picked)[1],
                        "best_metric": (min if metric == "error" else max)(truth),
                        "mean_metric": statistics.mean(truth), "metric": metric})
    return out


# -- the files -------------------------------------------------------------------------------

def cell_text(row: Row, task: str, pm: str = "±", missing: str = "–") -> str:
    """A cell as shown: mean ± std (seeds) for runs, the bare number for a published row."""
    cell = row.cells.get(task)
    if cell is None:
        return missing
    return f"{cell.mean:.1f}" if row.published else cell.text(pm)


def average_text(row: Row, tasks: list[str], missing: str = "–") -> str:
    average = row.average(tasks)
    return missing if average is None else f"{average:.1f}" if row.published else \
        f"{average:.2f}"


def markdown(tables: list[Table], picks: list[dict], runs: list[Run], root: Path,
             figures: dict[tuple[str, str], list[Path]], out: Path) -> str:
    lines = [f"# pnl-da report: {root}", "",
             f"{sum(r.status == 'finished' for r in runs)} finished runs of {len(runs)} found; "
             f"{datetime.date.today()}. Cells: mean ± sample standard deviation over seeds "
             "(seed count); avg: the mean of the task means, where a row has every task. "
             "Rows marked (published) are the numbers of docs/method.md, not runs of ours.", ""]
    for table in tables:
        tasks, name = table.tasks, METRIC_NAMES.get(table.metric, table.metric)
        lines += [f"## {table.benchmark}: {name} of the final model", "",
                  "| method | " + " | ".join(table.headers()) + " | avg |",
                  "|---|" + "---|" * (len(tasks) + 1)]
        for row in [*table.rows, *table.published]:
            cells = [cell_text(row, t) for t in tasks]
            label = f"*{row.label}*" if row.published else row.label
            lines.append(f"| {label} | {' | '.join(cells)} | {average_text(row, tasks)} |")
        sources = {row.published for row in table.published}
        if sources:
            lines += ["", f"Published: {'; '.join(sorted(sources))}."]
        for path in figures.get((table.benchmark, table.metric), []):
            lines += ["", f"![{path.stem}]({path.relative_to(out)})"]
        lines.append("")
    if picks:
        lines += ["## Model selection without target labels", "",
                  "Each score is computed on target images only (never their labels); "
                  "Spearman's rho between the score (signed so that higher is better) and the "
                  "true target metric over the task's runs, and the metric of the run the score "
                  "would pick.", "",
                  "| benchmark | task | score | better | runs | Spearman | picked | best | mean |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in picks:
            rho = f"{p['spearman']:.2f}" if p["spearman"] is not None else "–"
            lines.append(f"| {p['benchmark']} | {task_label(p['benchmark'], p['task'])} | "
                         f"{p['score']} | {p['better']} | {p['runs']} | {rho} | "
                         f"{p['picked_metric']:.2f} | {p['best_metric']:.2f} | "
                         f"{p['mean_metric']:.2f} |")
        lines.append("")
    others = [r for r in runs if r.status != "finished"]
    if others:
        lines += ["## Runs without a result", ""]
        for run in others:
            lines.append(f"* {run.status}: {run.folder} ({run.reason})")
        lines.append("")
    return "\n".join(lines)


def csv_text(tables: list[Table]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["benchmark", "kind", "row", "task", "metric", "mean", "std", "n", "seeds",
                     "values"])
    for table in tables:
        for row in [*table.rows, *table.published]:
            for task in table.tasks:
                cell = row.cells.get(task)
                if cell is None:
                    continue
                writer.writerow([table.benchmark, "published" if row.published else "runs",
                                 row.label, task, table.metric, f"{cell.mean:.3f}",
                                 "" if cell.std is None else f"{cell.std:.3f}",
                                 len(cell.values), " ".join(map(str, cell.seeds)),
                                 " ".join(f"{v:.3f}" for v in cell.values)])
    return out.getvalue()


def latex(tables: list[Table]) -> str:
    parts = ["% pnl-da report; needs \\usepackage{booktabs}"]
    for table in tables:
        tasks = table.tasks
        parts += [f"% {table.benchmark}: {METRIC_NAMES.get(table.metric, table.metric)}",
                  f"\\begin{{tabular}}{{l{'c' * (len(tasks) + 1)}}}", "\\toprule",
                  "Method & " + " & ".join(_latex_escape(h) .replace("→", "$\\rightarrow$")
                                            for h in table.headers()) + " & Avg \\\\",
                  "\\midrule"]
        for i, row in enumerate([*table.rows, *table.published]):
            if row.published and i == len(table.rows):
                parts.append("\\midrule")
            cells = [cell_text(row, t, "$\\pm$", "--") for t in tasks]
            parts.append(f"{_latex_escape(row.label)} & {' & '.join(cells)} & "
                         f"{average_text(row, tasks, '--')} \\\\")
        parts += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(parts)


def html_page(text: str, out: Path) -> str:
    """report.md as a page of its own: tables as tables, the pictures embedded."""
    body, rows = [], []

    def flush():
        if rows:
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                        + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>"
                                                              for c in r) + "</tr>"
                                            for r in rest) + "</table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-") for c in cells):
                rows.append(cells)
            continue
        flush()
        if line.startswith("!["):
            path = out / line.split("](", 1)[1].rstrip(")")
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(f'<p><img alt="{html.escape(path.stem)}" '
                        f'src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("* "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>pnl-da report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(root: Path, out: Path, log=print) -> dict[str, Path]:
    """Collect, tabulate, draw and write; returns the files written."""
    from pnl_da.files import write_text
    from pnl_da.report import plots

    runs = collect(root)
    tables = build_tables(runs)
    picks = selection(runs)
    figures = {(t.benchmark, t.metric): plots.draw_all(t, out / "figures") for t in tables}
    drawn = {p for paths in figures.values() for p in paths}
    for old in (out / "figures").glob("*.png"):  # an earlier report's, of runs now gone
        if old not in drawn:
            old.unlink()
    text = markdown(tables, picks, runs, root, figures, out)
    files = {"md": out / "report.md", "csv": out / "report.csv", "tex": out / "report.tex",
             "html": out / "report.html"}
    write_text(files["md"], text)
    write_text(files["csv"], csv_text(tables))
    write_text(files["tex"], latex(tables))
    write_text(files["html"], html_page(text, out))
    log(f"{len(runs)} runs found ({sum(r.status == 'finished' for r in runs)} finished), "
        f"{len(tables)} table(s)")
    return files
