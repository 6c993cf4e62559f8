"""Tables of results across seeds: mean and standard deviation per method, one row each."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass


@dataclass
class Row:
    method: str
    seeds: list[int]
    accuracy: list[float]
    mean_class_accuracy: list[float]

    @staticmethod
    def _mean_std(values: list[float]) -> tuple[float, float | None]:
        # sample std (n - 1); one seed has none, and 0.00 would claim a spread was measured
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.mean(values), std

    @property
    def acc(self) -> tuple[float, float | None]:
        return self._mean_std(self.accuracy)

    @property
    def mca(self) -> tuple[float, float | None]:
        return self._mean_std(self.mean_class_accuracy)


def aggregate(results: list[dict], order: list[str]) -> list[Row]:
    """Group result.json objects by method, in the given method order."""
    rows = []
    for method in order:
        mine = sorted((r for r in results if r["method"] == method), key=lambda r: r["seed"])
        if mine:
            rows.append(Row(method, [r["seed"] for r in mine],
                            [r["metrics"]["accuracy"] for r in mine],
                            [r["metrics"]["mean_class_accuracy"] for r in mine]))
    return rows


def _mean_pm_std(mean: float, std: float | None, pm: str = "±") -> str:
    return f"{mean:.2f} {pm} {std:.2f}" if std is not None else f"{mean:.2f} (one seed)"


def _metric_order(headline: str) -> tuple[str, str]:
    """The headline metric first (VisDA-2017's is mean class accuracy), then the other."""
    return (("mean_class_accuracy", "accuracy") if headline == "mean_class_accuracy"
            else ("accuracy", "mean_class_accuracy"))


def to_markdown(rows: list[Row], title: str, headline: str = "accuracy") -> str:
    """The headline metric first (VisDA-2017's is mean class accuracy), its values per seed."""
    first, second = _metric_order(headline)
    label = {"accuracy": "accuracy", "mean_class_accuracy": "mean class accuracy"}
    lines = [f"### {title}", "",
             f"| method | {label[first]} (%) | {label[second]} (%) | seeds | per seed "
             f"({label[first]}) |",
             "|---|---|---|---|---|"]
    for row in rows:
        stats = {"accuracy": row.acc, "mean_class_accuracy": row.mca}
        per_seed = ", ".join(f"{a:.2f}" for a in getattr(row, first))
        lines.append(f"| {row.method} | {_mean_pm_std(*stats[first])} | "
                     f"{_mean_pm_std(*stats[second])} | {','.join(map(str, row.seeds))} | "
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
    label = {"accuracy": "Accuracy", "mean_class_accuracy": "Mean class accuracy"}
    stats = [{"accuracy": row.acc, "mean_class_accuracy": row.mca} for row in rows]
    # compared as shown (2 decimals), so two methods that print the same number both get bold
    best = max((round(s[first][0], 2) for s in stats), default=None)

    def cell(mean: float, std: float | None, bold: bool = False) -> str:
        text = _mean_pm_std(mean, std, pm="$\\pm$")
        return f"\\textbf{{{text}}}" if bold else text

    lines = [f"% {' '.join(title.split())}", "% needs \\usepackage{booktabs}",
             "\\begin{tabular}{lcc}", "\\toprule",
             f"Method & {label[first]} (\\%) & {label[second]} (\\%) \\\\", "\\midrule"]
    for row, s in zip(rows, stats):
        lines.append(f"{_latex_escape(row.method)} & "
                     f"{cell(*s[first], bold=round(s[first][0], 2) == best)} & "
                     f"{cell(*s[second])} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "accuracy_mean", "accuracy_std", "mean_class_accuracy_mean",
                     "mean_class_accuracy_std", "n", "seeds", "accuracy_per_seed",
                     "mean_class_accuracy_per_seed"])
    for row in rows:
        (am, asd), (mm, msd) = row.acc, row.mca
        writer.writerow([row.method, f"{am:.3f}", "" if asd is None else f"{asd:.3f}",
                         f"{mm:.3f}", "" if msd is None else f"{msd:.3f}",
                         len(row.seeds), " ".join(map(str, row.seeds)),
                         " ".join(f"{a:.3f}" for a in row.accuracy),
                         " ".join(f"{a:.3f}" for a in row.mean_class_accuracy)])
    return out.getvalue()
