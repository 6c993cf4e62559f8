"""`pnl-da report` and `analyze`, the label-free validation scores, TensorBoard, the docs' numbers.

The report is made from real short runs (compare, in this process); its cells are checked
against the runs' own result.json files, its pictures against their metrics.jsonl.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pnl_da.engine import validators
from tests.test_cli import run_cli

SHORT = ["trainer.steps=6", "trainer.eval_every=3", "trainer.progress=false",
         "trainer.device=cpu"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """source_only and dann x seeds 0, 1; pnl with k=2 and k=3 on seed 0; an SSL run; a cdan
    run with one evaluation; a copy left unfinished; one whose metrics.jsonl was cut short."""
    from pnl_da.cli import main

    root = tmp_path_factory.mktemp("runs")

    assert main(["compare", "digits", "uci->ms", "--methods", "source_only,dann", "--seeds",
                 "0,1", *SHORT, "--out", str(root / "cmp")]) == 0
    for k in (2, 3):
        assert main(["run", "digits", "uci->ms", f"method.k={k}", *SHORT,
                     "--out", str(root / f"pnl-k{k}")]) == 0
    assert main(["ssl", "mnist-sample", "--labels", "20", "method=supervised", *SHORT,
                 "--out", str(root / "ssl")]) == 0
    # a run with one evaluation: a single point in every picture
    assert main(["run", "digits", "uci->ms", "method=cdan", *SHORT[2:], "trainer.steps=3",
                 "trainer.eval_every=3", "--out", str(root / "cdan-short")]) == 0
    shutil.copytree(root / "cmp" / "dann" / "seed1", root / "half")
    (root / "half" / "result.json").unlink()
    metrics = root / "pnl-k3" / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-40])  # the last line cut in the middle
    return root


def results_of(root: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text())
            for p in root.rglob("result.json")}


def test_the_report_gives_the_expected_cells_and_lists_what_did_not_finish(runs, capsys):
    out = runs.parent / "report"
    code, stdout, err = run_cli(capsys, "report", str(runs), "--out", str(out))
    assert code == 0, err
    done = results_of(runs)
    rows = {(r["benchmark"], r["row"], r["task"]): r
            for r in csv.DictReader(open(out / "report.csv"))}
    for method in ("source_only", "dann"):
        accs = [done[f"cmp/{method}/seed{s}"]["metrics"]["accuracy"] for s in (0, 1)]
        cell = rows[("digits", method, "uci->mnist-sample")]
        assert float(cell["mean"]) == pytest.approx(np.mean(accs), abs=1e-3)
        assert float(cell["std"]) == pytest.approx(np.std(accs, ddof=1), abs=1e-3)
        assert cell["n"] == "2" and cell["seeds"] == "0 1"
    # the two PNL settings are two rows, named by what differs, never one average
    for k in (2, 3):
        cell = rows[("digits", f"pnl (method.k={k})", "uci->mnist-sample")]
        assert float(cell["mean"]) == pytest.approx(
            done[f"pnl-k{k}"]["metrics"]["accuracy"], abs=1e-3)
    error = done["ssl"]["metrics"]["error"]
    assert float(rows[("ssl", "supervised", "mnist-sample-20")]["mean"]) == pytest.approx(
        error, abs=1e-3)
    text = (out / "report.md").read_text()
    assert "| source_only | " in text and "| uci→ms | avg |" in text
    assert re.search(rf"unfinished: {re.escape(str(runs / 'half'))} \(last evaluation at "
                     r"step 6 of 6\)", text), text
    # the cut metrics.jsonl is read to its last whole line; its run is still reported
    assert ("digits", "pnl (method.k=3)", "uci->mnist-sample") in rows
    tex = (out / "report.tex").read_text()
    assert "\\toprule" in tex and "source\\_only" in tex
    page = (out / "report.html").read_text()
    assert page.count("<table>") == 3 and page.count("data:image/png;base64,") == 6
    assert stdout.startswith("# pnl-da report")


def test_the_curves_plot_the_logged_metric_and_the_pictures_are_real_images(runs):
    from PIL import Image

    from pnl_da.report import plots
    from pnl_da.report.collect import collect
    from pnl_da.report.report import build_tables

    table = next(t for t in build_tables(collect(runs)) if t.benchmark == "digits")
    fig = plots.curves(table, "uci->mnist-sample")
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    seeds = [[json.loads(x) for x in (runs / "cmp" / "dann" / f"seed{s}" /
                                       "metrics.jsonl").read_text().splitlines()]
             for s in (0, 1)]
    steps = [r["step"] for r in seeds[0]]
    expected = [np.mean([seeds[s][i]["accuracy"]["mean"] for s in (0, 1)])
                for i in range(len(steps))]
    assert list(lines["dann (2 seeds)"].get_xdata()) == steps
    assert np.allclose(lines["dann (2 seeds)"].get_ydata(), expected)
    for png in (runs.parent / "report" / "figures").glob("*.png"):
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width >= 600 and image.height >= 300
            pixels = np.asarray(image.convert("L"), dtype=float)
            assert pixels.std() > 5  # something was drawn, not a blank canvas


def _legend_is_outside(fig, ax, legend) -> bool:
    fig.canvas.draw()
    return legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_every_run_in_a_legend_draws_its_points_and_each_picture_says_what_it_shows(runs):
    from pnl_da.report import plots
    from pnl_da.report.collect import collect
    from pnl_da.report.report import build_tables

    table = next(t for t in build_tables(collect(runs)) if t.benchmark == "digits")
    task = "uci->mnist-sample"
    fig = plots.curves(table, task)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    legend = ax.get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(lines)
    assert {"cdan (1 seed)", "dann (2 seeds)", "pnl (method.k=2) (1 seed)"} <= set(lines)
    for label, line in lines.items():  # few points: each one is marked, so each run shows
        assert len(line.get_xdata()) >= 1 and line.get_marker() == "o", label
    assert list(lines["cdan (1 seed)"].get_xdata()) == [3]
    # bands for the two rows with two seeds, none for the one-seed rows
    assert len(ax.collections) == 2 and "band from the lowest to the highest" in ax.get_title()
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "accuracy (%)"
    assert _legend_is_outside(fig, ax, legend)

    one_seed = next(t for t in build_tables(collect(runs / "pnl-k2")) if t.benchmark == "digits")
    fig = plots.curves(one_seed, task)
    assert not fig.axes[0].collections and "band" not in fig.axes[0].get_title()
    assert "one seed" in fig.axes[0].get_title()

    fig = plots.losses(table, task)
    panels = [a for a in fig.axes if a.lines]
    assert panels and all(a.get_xlabel() == "step" and a.get_ylabel() for a in panels)
    short = [line for a in panels for line in a.lines if line.get_label() == "cdan (1 seed)"]
    assert short and all(len(line.get_xdata()) == 1 and line.get_marker() == "o"
                         for line in short)
    legend = panels[-1].get_legend() or fig.axes[-1].get_legend()
    assert {t.get_text() for t in legend.get_texts()} >= {"cdan (1 seed)", "dann (2 seeds)"}
    assert _legend_is_outside(fig, fig.axes[-1], legend)

    fig = plots.per_class(table, task)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "class" and ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in range(10)]
    assert _legend_is_outside(fig, ax, ax.get_legend())


@pytest.mark.parametrize("classes", [10, 31])
def test_tsne_gives_each_class_its_own_colour_and_name(classes):
    from pnl_da.report.analyze import tsne_figure

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat(4)
    centres = torch.randn(classes, 8, generator=generator) * 5
    features = centres[labels] + torch.randn(len(labels), 8, generator=generator)
    names = [f"c{k}" for k in range(classes)]
    fig, _ = tsne_figure(features, features, labels, labels, "t", class_names=names)
    scatter = fig.axes[1].collections[-1]
    colours = [tuple(c) for c in scatter.to_rgba(scatter.get_array())]
    by_label = {}
    for label, colour in zip(torch.cat([labels, labels]).tolist(), colours):
        by_label.setdefault(label, set()).add(colour)
    assert all(len(c) == 1 for c in by_label.values())  # a class has one colour
    assert len({next(iter(c)) for c in by_label.values()}) == classes  # no two share one
    bar = fig.axes[-1]
    assert [t.get_text() for t in bar.get_yticklabels()] == names


def test_published_rows_come_from_the_method_spec_and_are_labelled(tmp_path, capsys):
    from pnl_da.config import to_yaml
    from pnl_da.engine.tasks import compose
    from pnl_da.files import write_json, write_text

    # a run folder as an Office-31 run leaves it (made by hand: no Office images here)
    cfg = compose(["benchmark=office31", "benchmark.source=amazon", "benchmark.target=webcam",
                   "method=dann", "backbone.pretrained=false"])
    run = tmp_path / "runs" / "a2w"
    write_text(run / "config.yaml", to_yaml(cfg))
    write_json(run / "result.json", {"method": "dann", "seed": 0, "headline": "accuracy",
                                     "prediction": "mean", "metrics": {"accuracy": 90.0}})
    code, _, err = run_cli(capsys, "report", str(tmp_path / "runs"), "--out",
                           str(tmp_path / "out"))
    assert code == 0, err
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| dann | 90.00 (1) | 90.00 |" in text
    assert "| *DANN (published)* | 91.4 | 91.4 |" in text
    assert "Published: tllib README, ResNet-50, mean of 3 runs." in text


def test_the_published_numbers_agree_with_docs_method_md():
    spec = (ROOT / "docs" / "method.md").read_text()
    refs = json.loads((ROOT / "pnl_da" / "report" / "references.json").read_text())
    order = ["amazon->webcam", "dslr->webcam", "webcam->dslr", "amazon->dslr", "dslr->amazon",
             "webcam->amazon"]
    for name, values in refs["office31"]["rows"].items():
        row = next(line for line in spec.splitlines()
                   if line.lower().startswith(f"| {name.lower()} |"))
        cells = [float(c) for c in row.strip("|").split("|")[1:7]]
        assert cells == [values[t] for t in order], name
    digits = refs["digits"]["rows"]
    for name, label in (("source only", "source only"), ("DANN", "DANN"), ("CDAN", "CDAN")):
        text = " / ".join(f"{digits[name][t]:.1f}" for t in ("svhn->mnist", "mnist->usps",
                                                             "usps->mnist"))
        assert f"{label} {text}" in spec.replace("\n", " "), name
    for values in refs["visda2017"]["rows"].values():
        assert f"{values['Synthetic->Real']}" in spec


# -- label-free validation scores, on cases with known answers ---------------------------------

def one_hot(labels, classes=4):
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).double()


def test_entropy_and_information_maximisation_known_answers():
    confident = one_hot([0, 1, 2, 3] * 5)
    uniform = torch.full((20, 4), 0.25, dtype=torch.double)
    collapsed = one_hot([0] * 20)
    assert validators.mean_entropy(confident) == pytest.approx(0.0, abs=1e-9)
    assert validators.mean_entropy(uniform) == pytest.approx(math.log(4))
    assert validators.information_maximisation(confident) == pytest.approx(math.log(4))
    assert validators.information_maximisation(collapsed) == pytest.approx(0.0, abs=1e-9)
    assert validators.information_maximisation(uniform) == pytest.approx(0.0, abs=1e-9)


def test_a_perfectly_confident_perfectly_clustered_target_scores_best():
    generator = torch.Generator().manual_seed(0)
    clustered = one_hot([0, 1, 2, 3] * 25)
    noisy = torch.distributions.Dirichlet(torch.ones(4)).sample((100,)).double()
    blurred = (0.6 * clustered + 0.4 * torch.rand(100, 4, generator=generator).double())
    blurred = blurred / blurred.sum(1, keepdim=True)
    candidates = {"clustered": clustered, "blurred": blurred, "noisy": noisy}
    for score, better in validators.BETTER.items():
        if score == "dev":
            continue
        values = {name: validators.scores(p)[score] for name, p in candidates.items()}
        best = (max if better == "higher" else min)(values, key=values.get)
        assert best == "clustered", (score, values)


def test_dev_weights_the_source_loss_by_how_target_like_each_image_is():
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(400, 2, generator=generator)
    losses = (source[:, 0] > 0).double() * 2.0  # wrong (loss 2) on the right half only
    same = validators.deep_embedded_validation(source, losses,
                                               torch.randn(400, 2, generator=generator))
    right = validators.deep_embedded_validation(
        source, losses, torch.randn(400, 2, generator=generator) + torch.tensor([1.5, 0.0]))
    assert same == pytest.approx(losses.mean().item(), abs=0.25)  # no shift: the plain mean
    assert right > same + 0.3  # the target sits where the source loss is high


def test_proxy_a_distance_known_answers():
    from pnl_da.report.analyze import proxy_a_distance

    generator = torch.Generator().manual_seed(0)
    same = proxy_a_distance(torch.randn(300, 8, generator=generator),
                            torch.randn(300, 8, generator=generator))
    apart = proxy_a_distance(torch.randn(300, 8, generator=generator),
                             torch.randn(300, 8, generator=generator) + 10)
    assert same < 0.3 and apart == pytest.approx(2.0)


def test_runs_log_the_scores_and_analyze_draws_the_features(runs, capsys):
    record = json.loads((runs / "cmp" / "dann" / "seed0" / "metrics.jsonl")
                        .read_text().splitlines()[-1])
    result = json.loads((runs / "cmp" / "dann" / "seed0" / "result.json").read_text())
    assert set(record["validation"]) == {"entropy", "im", "snd"}  # no held-out source here
    assert result["validation"] == record["validation"]  # the final model's
    code, stdout, err = run_cli(capsys, "analyze", str(runs / "cmp" / "dann" / "seed0"),
                                "--images", "200", "--out", str(runs.parent / "analysis"))
    assert code == 0, err
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert 0.0 <= metrics["proxy_a_distance"] <= 2.0 and metrics["source_images"] == 200
    assert (runs.parent / "analysis" / "tsne.png").stat().st_size > 20_000


def test_a_held_out_source_split_adds_dev(tmp_path):
    from pnl_da.engine.tasks import compose, load_data
    from pnl_da.engine.trainer import Trainer
    from tests.fake_datasets import write_mnist_idx

    write_mnist_idx(tmp_path, n_train=64, n_test=40)
    cfg = compose(["benchmark.source=mnist", "benchmark.target=mnist-sample",
                   f"data.root={tmp_path}", "method=source_only", *SHORT])
    data = load_data(cfg)
    assert data.source_heldout is not None and len(data.source_heldout) == 40
    scores = Trainer(cfg, data).validation_scores()
    assert set(scores) == {"entropy", "im", "snd", "dev"} and math.isfinite(scores["dev"])


# -- TensorBoard and the progress bar ------------------------------------------------------------

def test_tensorboard_scalars_and_turning_them_off(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert run_cli(capsys, "run", "digits", "uci->ms", "method=dann", *SHORT,
                   "--out", str(out))[0] == 0
    board = EventAccumulator(str(out / "tensorboard"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"losses/cls", "losses/transfer", "accuracy/mean", "validation/snd", "train/lr",
            "train/grl_coeff", "train/data_wait_fraction"} <= tags
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in board.Scalars("accuracy/mean")] == [r["step"] for r in logged]
    assert [e.value for e in board.Scalars("accuracy/mean")] == pytest.approx(
        [r["accuracy"]["mean"] for r in logged])
    off = tmp_path / "off"
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=dann", *SHORT[:2],
                           "trainer.device=cpu", "trainer.tensorboard=false", "--out", str(off))
    assert code == 0 and not (off / "tensorboard").exists()
    assert "\r" not in err  # not a terminal: no progress bar (trainer.progress is on)
