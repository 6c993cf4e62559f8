import csv
import json
import re
import statistics

import pytest

from pnl_da.cli import main

FAST = ["trainer.steps=6", "trainer.eval_every=3", "trainer.progress=false",
        "trainer.device=cpu"]


def test_compare_trains_missing_runs_reuses_finished_ones_and_writes_the_table(capsys,
                                                                               tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "digits", "uci->ms", "--methods", "source_only,pnl", "--seeds", "0,1",
            "--out", str(out), *FAST, "method.k=3"]  # method.k reaches pnl only
    assert main(args) == 0
    first = capsys.readouterr()
    assert first.err.count("training ->") == 4
    results = sorted(out.glob("*/seed*/result.json"))
    assert len(results) == 4
    stamps = {p: p.stat().st_mtime_ns for p in results}
    assert "k: 3" in (out / "pnl" / "seed0" / "config.yaml").read_text()

    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["source_only", "pnl"]
    assert all(r["n"] == "2" and r["seeds"] == "0 1" for r in rows)
    table = (out / "comparison.md").read_text()
    assert "| source_only |" in table and "±" in table
    tex = (out / "comparison.tex").read_text()
    assert "source\\_only & " in tex and "\npnl & " in tex and "$\\pm$" in tex
    _assert_rows_summarise_the_seeds(out, rows, table)

    assert main(args) == 0  # the second time nothing is retrained
    second = capsys.readouterr()
    assert second.err.count("reusing finished run") == 4 and "training ->" not in second.err
    assert {p: p.stat().st_mtime_ns for p in results} == stamps

    # a changed setting is a different experiment: those runs are trained, not reused
    assert main([*args[:-1], "method.k=2", "--methods", "pnl", "--seeds", "0",
                 "--out", str(tmp_path / "other")]) == 0
    assert capsys.readouterr().err.count("training ->") == 1


def _assert_rows_summarise_the_seeds(out, rows, table):
    """Each method's row holds the mean and the sample standard deviation (n - 1, as
    report/tables.py documents) of its seeds' result.json metrics, in the CSV (3 decimals)
    and in the markdown table (2 decimals)."""
    shown = {line.split("|")[1].strip(): [(float(m), float(s)) for m, s in
                                          re.findall(r"([\d.]+) ± ([\d.]+)", line)]
             for line in table.splitlines() if "±" in line}
    for row in rows:
        metrics = [json.loads((out / row["method"] / f"seed{s}" / "result.json").read_text())
                   ["metrics"] for s in (0, 1)]
        for column, key in enumerate(("accuracy", "mean_class_accuracy")):
            values = [m[key] for m in metrics]
            mean, std = statistics.mean(values), statistics.stdev(values)
            # the seeds must differ enough that a sample and a population std tell apart
            assert std - statistics.pstdev(values) > 0.01, (row["method"], key, values)
            assert float(row[f"{key}_mean"]) == pytest.approx(mean, abs=6e-4)
            assert float(row[f"{key}_std"]) == pytest.approx(std, abs=6e-4)
            assert shown[row["method"]][column] == (pytest.approx(mean, abs=6e-3),
                                                    pytest.approx(std, abs=6e-3))
        assert row["accuracy_per_seed"].split() == [f"{m['accuracy']:.3f}" for m in metrics]


def test_one_seed_has_no_spread_in_the_tables():
    from pnl_da.report.tables import aggregate, to_csv, to_markdown

    results = [{"method": "dann", "seed": 0, "metrics": {"accuracy": 57.9,
                                                          "mean_class_accuracy": 55.0}},
               {"method": "pnl", "seed": 0, "metrics": {"accuracy": 60.0,
                                                         "mean_class_accuracy": 58.0}},
               {"method": "pnl", "seed": 1, "metrics": {"accuracy": 62.0,
                                                         "mean_class_accuracy": 59.0}}]
    rows = aggregate(results, ["dann", "pnl"])
    table = to_markdown(rows, "t")
    assert "| dann | 57.90 (one seed) | 55.00 (one seed) |" in table
    assert "| pnl | 61.00 ± 1.41 | 58.50 ± 0.71 | 0,1 | 60.00, 62.00 |" in table
    # VisDA-2017 reports mean class accuracy: it comes first, and per seed
    visda = to_markdown(rows, "t", "mean_class_accuracy")
    assert "| method | mean class accuracy (%) | accuracy (%) | seeds | per seed (mean class " \
           "accuracy) |" in visda
    assert "| pnl | 58.50 ± 0.71 | 61.00 ± 1.41 | 0,1 | 58.00, 59.00 |" in visda
    assert to_csv(rows).splitlines()[2].endswith(",60.000 62.000,58.000 59.000")
    dann_csv = to_csv(rows).splitlines()[1].split(",")
    assert dann_csv[:5] == ["dann", "57.900", "", "55.000", ""]


def test_the_latex_table_bolds_the_best_headline_and_escapes_method_names():
    from pnl_da.report.tables import aggregate, to_latex

    def result(method, seed, acc, mca):
        return {"method": method, "seed": seed,
                "metrics": {"accuracy": acc, "mean_class_accuracy": mca}}

    results = [result("source_only", 0, 57.9, 55.0), result("pnl", 0, 60.0, 58.0),
               result("pnl", 1, 62.0, 59.0), result("dann", 0, 61.0, 60.0)]
    rows = aggregate(results, ["source_only", "dann", "pnl"])
    tex = to_latex(rows, "digits uci->mnist-sample, lenet")
    lines = tex.splitlines()
    assert lines[0] == "% digits uci->mnist-sample, lenet"
    assert "Method & Accuracy (\\%) & Mean class accuracy (\\%) \\\\" in lines
    assert "source\\_only & 57.90 (one seed) & 55.00 (one seed) \\\\" in lines
    assert "dann & \\textbf{61.00 (one seed)} & 60.00 (one seed) \\\\" in lines
    assert "pnl & \\textbf{61.00 $\\pm$ 1.41} & 58.50 $\\pm$ 0.71 \\\\" in lines
    assert lines[-1] == "\\end{tabular}" and lines.count("\\midrule") == 1
    # VisDA-2017's headline, mean class accuracy, comes first and decides the bold
    visda = to_latex(rows, "t", "mean_class_accuracy").splitlines()
    assert "dann & \\textbf{60.00 (one seed)} & 61.00 (one seed) \\\\" in visda
    assert "pnl & 58.50 $\\pm$ 0.71 & 61.00 $\\pm$ 1.41 \\\\" in visda
