"""Tables of results across seeds: mean and standard deviation per method, one row each."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass

# The two metrics a table shows, the headline first: accuracy and mean class accuracy (VisDA's
# headline is the latter); with no target labels, two label-free scores (higher is better).
PAIRS = {"accuracy": ("accuracy", "mean_class_accuracy"),
         "mean_class_accuracy": ("mean_class_accuracy", "accuracy"),
         "snd": ("snd", "im")}
LABELS = {"accuracy": "accuracy (%)", "mean_class_accuracy": "mean class accuracy (%)",
          "snd": "SND (label-free, higher is better)", "im": "IM (label-free, higher is better)"}


@dataclass
class Row:
    method: str
    seeds: list[int]
    values: dict[str, list[float]]  # metric -> one value per seed

    def stats(self, metric: str) -> tuple[float, float | None]:
        # sample std (n - 1); one seed has none, and 0.00 would claim a spread was measured
        values = self.values[metric]
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.mean(values), std


def metrics_of(results: list[dict]) -> tuple[str, str]:
    """The pair of metrics of a table of these results (by the first one's headline)."""
    headline = results[0].get("headline", "accuracy") if results else "accuracy"
    return PAIRS.get(headline, PAIRS["accuracy"])


def aggregate(results: list[dict], order: list[str]) -> list[Row]:
    """Group result.json objects by method, in the given method order."""
    names = metrics_of(results)
    rows = []
    for method in order:
        mine = sorted((r for r in results if r["method"] == method), key=lambda r: r["seed"])
        if mine:
            rows.append(Row(method, [r["seed"] for r in mine],
                            {m: [r["metrics"][m] for r in mine] for m in names}))
    return rows


def _mean_pm_std(mean: float, std: float | None, pm: str = "±") -> str:
    return f"{mean:.2f} {pm} {std:.2f}" if std is not None else f"{mean:.2f} (one seed)"


def _metric_order(headline: str) -> tuple[str, str]:
    """The headline metric first (VisDA-2017's is mean class accuracy), then the other."""
    return PAIRS.get(headline, PAIRS["accuracy"])


def to_markdown(rows: list[Row], title: str, headline: str = "accuracy") -> str:
    """The headline metric first (VisDA-2017's is mean class accuracy), its values per seed."""
    first, second = _metric_order(headline)
    short = LABELS[first].split(" (")[0]
    lines = [f"### {title}", "",
             f"| method | {LABELS[first]} | {LABELS[second]} | seeds | per seed ({short}) |",
             "|---|---|---|---|---|"]
    for row in rows:
        per_seed = ", ".join(f"{a:.2f}" for a in row.values[first])
        lines.append(f"| {row.method} | {_mean_pm_std(*row.stats(first))} | "
                     f"{_mean_pm_std(*row.stats(second))} | {','.join(map(str, row.seeds))} | "
                     f"{per_seed} |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}"}
    return "".join(special.get(ch, ch) for ch in text)


def to_latex(rows: list[Row], title: str, headline: str = "accuracy") -> str:
    """A booktabs tabular to paste into a paper: the headline metric first, mean ± sample std
    over the seeds, the best headline mean in bold (every method that ties it)."""
    first, second = _metric_order(headline)

    def label(metric: str) -> str:
        text = LABELS[metric].replace("(%)", "(\\%)")
        return text[0].upper() + text[1:]

    # compared as shown (2 decimals), so two methods that print the same number both get bold
    best = max((round(row.stats(first)[0], 2) for row in rows), default=None)

    def cell(mean: float, std: float | None, bold: bool = False) -> str:
        text = _mean_pm_std(mean, std, pm="$\\pm$")
        return f"\\textbf{{{text}}}" if bold else text

    lines = [f"% {' '.join(title.split())}", "% needs \\usepackage{booktabs}",
             "\\begin{tabular}{lcc}", "\\toprule",
             f"Method & {label(first)} & {label(second)} \\\\", "\\midrule"]
    for row in rows:
        head = row.stats(first)
        lines.append(f"{_latex_escape(row.method)} & "
                     f"{cell(*head, bold=round(head[0], 2) == best)} & "
                     f"{cell(*row.stats(second))} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(rows[0].values) if rows else list(PAIRS["accuracy"])
    writer.writerow(["method", *(f"{m}_{k}" for m in names for k in ("mean", "std")), "n",
                     "seeds", *(f"{m}_per_seed" for m in names)])
    for row in rows:
        stats = []
        for m in names:
            mean, std = row.stats(m)
            stats += [f"{mean:.3f}", "" if std is None else f"{std:.3f}"]
        writer.writerow([row.method, *stats, len(row.seeds), " ".join(map(str, row.seeds)),
                         *(" ".join(f"{a:.3f}" for a in row.values[m]) for m in names)])
    return out.getvalue()
