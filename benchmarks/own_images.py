"""The bundled digits as image files through `pnl-da run folders`, `evaluate` and `predict`,
against `pnl-da run digits 'uci->mnist-sample'` with the same seeds and options.

The PNG files (tests/fake_datasets.py: write_digits_pngs) hold exactly the digits benchmark's
28x28 grey images: UCI as class folders (``uci/<digit>/``) and, in its original order, as a tllib
image list (``image_list/uci.txt``); the MNIST sample as one flat folder without labels
(``mnist-sample/``), with a labeled copy (``mnist-sample-labeled/<digit>/``) that only
``evaluate`` reads, and its labels in a CSV that only this script reads.

For each seed, four numbers of target accuracy (%):

* digits: ``pnl-da run digits 'uci->mnist-sample' seed=S`` (its result.json);
* list: ``pnl-da run folders 'image_list/uci.txt->mnist-sample' backbone=lenet seed=S``, scored
  by ``pnl-da evaluate RUN --domain mnist-sample-labeled``. The same images in the same order:
  it must equal digits to the last digit (the same pipeline, not a second one);
* folders: ``pnl-da run folders 'uci->mnist-sample' backbone=lenet seed=S``, scored the same
  way. The source's images are listed by class (all 0s, then all 1s, ...), so the sampler's
  permutations draw other batches than the digits run's: the order changes, as another seed
  does. Tolerance: the mean over the seeds within two sample standard deviations (the larger of
  the two runs') of the digits mean;
* predict: ``pnl-da predict`` of the folders run on the flat, unlabeled PNG folder, its CSV's
  classes scored against the labels: it must equal the folders run's ``evaluate``.

    python benchmarks/own_images.py [--seeds 0,1,2] [--out FILE.md] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, machine
from _common import pnl_da as cli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def accuracy_of_predictions(path: Path, labels: dict[str, str]) -> float:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return 100 * sum(r["class"] == labels[Path(r["path"]).name] for r in rows) / len(rows)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=None)
    args, options = parser.parse_known_args()
    from tests.fake_datasets import write_digits_pngs

    seeds = [int(s) for s in args.seeds.split(",")]
    common = ["trainer.progress=false", *options]
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, runs = tmp / "pngs", tmp / "runs"
        write_digits_pngs(data)
        env = {**os.environ, "PNL_DA_CACHE": str(tmp / "cache")}
        with open(data / "mnist-sample-labels.csv", newline="") as handle:
            labels = {r["path"]: r["label"] for r in csv.DictReader(handle)}
        for seed in seeds:
            row = {"seed": seed}
            cli("run", "digits", "uci->mnist-sample", f"seed={seed}", *common,
                "--out", runs / f"digits{seed}", env=env)
            row["digits"] = json.loads((runs / f"digits{seed}" / "result.json").read_text()
                                       )["metrics"]["accuracy"]
            for name, source in (("list", "image_list/uci.txt"), ("folders", "uci")):
                out = runs / f"{name}{seed}"
                cli("run", "folders", f"{source}->mnist-sample", "backbone=lenet",
                    f"seed={seed}", *common, "--data-root", data, "--out", out, env=env)
                scored = cli("evaluate", out, "--domain", "mnist-sample-labeled",
                             "--data-root", data, env=env)
                row[name] = json.loads(scored.stdout.splitlines()[-1])["accuracy"]
            cli("predict", runs / f"folders{seed}", data / "mnist-sample", "--out",
                tmp / "p.csv", env=env)
            row["predict"] = accuracy_of_predictions(tmp / "p.csv", labels)
            rows.append(row)
            print(row, flush=True)
    took = time.perf_counter() - started
    digits, listed, folders = ([r[k] for r in rows] for k in ("digits", "list", "folders"))
    (dm, ds), (fm, fs) = mean_std(digits), mean_std(folders)
    tolerance = 2 * max(ds, fs)
    exact = all(r["list"] == r["digits"] for r in rows)
    # the same images right: accuracies as counts of the 4,998 (evaluate's is a float of a
    # confusion matrix, predict's a count over the CSV: they may differ in the last bit only)
    predicted = all(round(r["predict"] * 4998 / 100) == round(r["folders"] * 4998 / 100)
                    for r in rows)
    lines = [
        "# The bundled digits as image files: `run folders`, `evaluate`, `predict` against "
        "`run digits`",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today()}. {len(seeds)} seeds, the default "
        f"configuration (PNL, LeNet, 3000 steps){' with ' + ' '.join(options) if options else ''}"
        f"; {took / 60:.0f} min in all.",
        "Target accuracy (%) of the final model on the 4,998 MNIST-sample images. digits: "
        "`pnl-da run digits 'uci->mnist-sample'`; list: the UCI PNG files in their original order "
        "(a tllib list), folders: as class folders, both `pnl-da run folders ... "
        "backbone=lenet` onto the flat, unlabeled PNG folder and scored by `pnl-da evaluate "
        "--domain mnist-sample-labeled`; predict: `pnl-da predict` of the folders run on the flat "
        "folder, scored against the labels.",
        "",
        "| seed | digits | list | folders | predict (folders run) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['digits']:.4f} | {r['list']:.4f} | "
                     f"{r['folders']:.4f} | {r['predict']:.4f} |")
    lm, ls = mean_std(listed)
    lines.append(f"| mean ± std | {dm:.2f} ± {ds:.2f} | {lm:.2f} ± {ls:.2f} | "
                 f"{fm:.2f} ± {fs:.2f} | |")
    lines += [
        "",
        f"* list = digits on every seed, to the last digit: {'yes' if exact else 'NO'}. The "
        "same images in the same order go through the same pipeline (decoded to the same uint8 "
        "tensors, the same streams and views), so the runs are the same run.",
        f"* folders against digits: mean difference {fm - dm:+.2f} points; tolerance "
        f"{tolerance:.2f} (two sample standard deviations, the larger run's): "
        f"{'within' if abs(fm - dm) <= tolerance else 'OUTSIDE'}. Listed by class folder, "
        "the source images are drawn in another order, which changes the run as another seed "
        "would; the spread over seeds is the measure of that.",
        f"* predict = evaluate for the folders run on every seed (the same images right): "
        f"{'yes' if predicted else 'NO'} (the same input format, the same model, the same "
        "prediction: the mean of the two heads' softmaxes).",
        "",
        f"Command: `python benchmarks/own_images.py {shlex.join(sys.argv[1:])}`",
    ]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
