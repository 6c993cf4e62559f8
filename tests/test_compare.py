import csv

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

    assert main(args) == 0  # the second time nothing is retrained
    second = capsys.readouterr()
    assert second.err.count("reusing finished run") == 4 and "training ->" not in second.err
    assert {p: p.stat().st_mtime_ns for p in results} == stamps

    # a changed setting is a different experiment: those runs are trained, not reused
    assert main([*args[:-1], "method.k=2", "--methods", "pnl", "--seeds", "0",
                 "--out", str(tmp_path / "other")]) == 0
    assert capsys.readouterr().err.count("training ->") == 1
