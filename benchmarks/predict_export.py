"""A run's model on image files: `pnl-da predict` against a plain torchvision ImageFolder +
model loop, and the ONNX export under onnxruntime against PyTorch eager; each pair measured in
the same run, on the CPU.

Two run folders are made first (not timed): LeNet, trained briefly by `pnl-da run folders` on
the bundled digits as PNG files (UCI class folders -> the flat MNIST-sample folder), and
ResNet-50 at 224 (random weights, `backbone.pretrained=false`: speed does not depend on the
weights) on a few generated JPEG files. Then:

* predict: images/s of `pnl-da predict` (in-process, its CSV written to a file) against
  torchvision's ``ImageFolder`` with the transforms that give the same input (Resize to the
  run's resize, CenterCrop, Grayscale for LeNet, ToTensor, Normalize) in a DataLoader with the
  same batch size and workers, through the same model, probabilities computed and discarded.
  LeNet on the 4,998 MNIST-sample PNGs, ResNet-50 on --jpegs generated JPEG files (260-340 px).
* predict's memory: the peak resident memory of a `pnl-da predict` process (no workers) on N
  and 4 N files (the same PNGs under more names): flat means it does not grow with N.
* export: `pnl-da export --format onnx` (its own check: the largest difference from PyTorch's
  probabilities on the run's evaluation images), then ms per batch of onnxruntime (CPU) and of
  PyTorch eager (float32, no_grad) on the same normalised batches of 1 and of --batch images.

    python benchmarks/predict_export.py [--jpegs 256] [--batch 32] [--repeats 3] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import emit, machine
from _common import pnl_da as cli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_runs(tmp: Path, jpegs: int, env) -> dict:
    """The two run folders and the images each is timed on."""
    import numpy as np

    from tests.fake_datasets import write_digits_pngs, write_jpeg

    digits = tmp / "pngs"
    write_digits_pngs(digits)
    short = ["trainer.progress=false", "trainer.device=cpu"]
    cli("run", "folders", "uci->mnist-sample", "backbone=lenet", "trainer.steps=300",
        "trainer.eval_every=300", *short, "--data-root", digits, "--out", tmp / "lenet", env=env)
    shop = tmp / "shop"
    rng = np.random.default_rng(0)
    for split, count in (("catalogue", 4), ("webcam", 4)):
        for c in range(3):
            for i in range(count):
                write_jpeg(shop / split / f"class{c}" / f"{i}.jpg", rng, (300, 280))
    cli("run", "folders", "catalogue->webcam", "backbone.pretrained=false", "trainer.steps=2",
        "trainer.eval_every=2", "trainer.batch_size=4", "data.workers=0", *short,
        "--data-root", shop, "--out", tmp / "resnet50", env=env)
    photos = tmp / "photos" / "x"  # one folder of class "x": ImageFolder needs a class level
    for i in range(jpegs):
        write_jpeg(photos / f"{i:05d}.jpg", rng, (int(rng.integers(260, 341)),
                                                    int(rng.integers(260, 341))))
    flat = tmp / "digit-images"  # the flat folder as the one class ImageFolder needs
    flat.mkdir()
    (flat / "x").symlink_to(digits / "mnist-sample")
    return {"lenet": (tmp / "lenet", flat), "resnet50": (tmp / "resnet50", photos.parent)}


def plain_loop(run: Path, images: Path, batch: int, workers: int) -> tuple[int, float]:
    """torchvision's ImageFolder + DataLoader + the same model: (images, seconds)."""
    from torchvision import datasets, transforms

    from pnl_da.engine.evaluate import Probabilities
    from pnl_da.engine.evaluate_run import finished_run_config, load_method
    from pnl_da.engine.tasks import task_of

    task = task_of(finished_run_config(run))
    spec = task.input_format()
    model = Probabilities(load_method(run, task, torch.device("cpu")).eval_model(),
                          task.cfg.method.predict).eval()
    steps = [transforms.Resize((spec.resize, spec.resize)), transforms.CenterCrop(spec.crop)]
    if spec.channels == 1:
        steps.append(transforms.Grayscale())
    steps += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    dataset = datasets.ImageFolder(str(images), transform=transforms.Compose(steps))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers)
    start, count = time.perf_counter(), 0
    with torch.no_grad():
        for x, _ in loader:
            model(x)
            count += len(x)
    return count, time.perf_counter() - start


def pnl_predict(run: Path, images: Path, batch: int, workers: int, out: Path) -> tuple[int, float]:
    from pnl_da.engine.predict import predict_run

    start = time.perf_counter()
    done = predict_run(run, [str(images)], out=out, batch_size=batch, workers=workers,
                       device="cpu", log=lambda m: None)
    return done["images"], time.perf_counter() - start


def peak_memory(run: Path, folder: Path, env) -> float:
    """Peak resident MiB of one `pnl-da predict` process without workers."""
    code = ("import resource, sys; from pnl_da.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "predict", str(run), str(folder),
                           "--workers", "0", "--out", str(folder.parent / "m.csv")], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return int(done.stdout.split()[-1]) / 1024


def names_for(source: Path, target: Path, count: int) -> Path:
    """``count`` names in ``target`` for the files of ``source`` (symbolic links, cycled)."""
    files = sorted(source.iterdir())
    target.mkdir(parents=True)
    for i in range(count):
        (target / f"{i:07d}.png").symlink_to(files[i % len(files)])
    return target


def time_batches(function, x: torch.Tensor, repeats: int) -> float:
    """Median ms of ``function(x)`` over ``repeats`` x 5 calls, after 2 untimed ones."""
    for _ in range(2):
        function(x)
    times = []
    for _ in range(repeats * 5):
        start = time.perf_counter()
        function(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def export_speed(run: Path, batch: int, repeats: int, env) -> dict:
    import onnxruntime

    from pnl_da.engine.evaluate import Probabilities
    from pnl_da.engine.evaluate_run import finished_run_config, load_method
    from pnl_da.engine.tasks import task_of

    start = time.perf_counter()
    cli("export", run, "--format", "onnx", env=env)
    took = time.perf_counter() - start
    spec = json.loads((run / "export" / "model.onnx.json").read_text())
    task = task_of(finished_run_config(run))
    model = Probabilities(load_method(run, task, torch.device("cpu")).eval_model(),
                          task.cfg.method.predict).eval()
    session = onnxruntime.InferenceSession(str(run / "export" / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    fmt = task.input_format()
    found = {"difference": spec["check"]["max_abs_difference"], "export_s": took,
             "checked_on": spec["check"]["images"]}
    for size in (1, batch):
        x = torch.randn(size, fmt.channels, fmt.crop, fmt.crop)

        def eager(batch_x):
            with torch.no_grad():
                return model(batch_x)

        found[size] = {"torch": time_batches(eager, x, repeats),
                       "onnxruntime": time_batches(
                           lambda batch_x: session.run(None, {"images": batch_x.numpy()}), x,
                           repeats)}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jpegs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PNL_DA_CACHE": str(tmp / "cache")}
        os.environ["PNL_DA_CACHE"] = env["PNL_DA_CACHE"]
        runs = make_runs(tmp, args.jpegs, env)
        speed = {}
        for name, (run, images) in runs.items():
            rounds = {"pnl": [], "plain": []}
            for _ in range(args.repeats):  # interleaved
                n, seconds = pnl_predict(run, images, args.batch, args.workers, tmp / "p.csv")
                rounds["pnl"].append(n / seconds)
                n, seconds = plain_loop(run, images, args.batch, args.workers)
                rounds["plain"].append(n / seconds)
            speed[name] = rounds
        lenet_run, pngs = runs["lenet"]
        small = peak_memory(lenet_run, pngs, env)
        many = names_for(pngs / "x", tmp / "many" / "x", 4 * 4998)
        large = peak_memory(lenet_run, many, env)
        exports = {name: export_speed(run, args.batch, args.repeats, env)
                   for name, (run, _) in runs.items()}
    lines = [
        "# A run's model on image files: predict against a plain ImageFolder loop, ONNX "
        "against PyTorch eager",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today()}. onnxruntime "
        f"{onnxruntime.__version__}. Batch {args.batch}, {args.workers} DataLoader workers for "
        f"both loops; median of {args.repeats} interleaved repeats.",
        "",
        "## predict: images/s",
        "",
        "| model, images | pnl-da predict (CSV written) | ImageFolder + DataLoader + model | "
        "ratio | per repeat (pnl-da / plain) |",
        "|---|---|---|---|---|",
    ]
    what = {"lenet": "LeNet 28x28 grey, 4,998 PNG files (28x28)",
            "resnet50": f"ResNet-50 224, {args.jpegs} JPEG files (260-340 px)"}
    for name, rounds in speed.items():
        pnl, plain = statistics.median(rounds["pnl"]), statistics.median(rounds["plain"])
        per = "; ".join(f"{a:.0f} / {b:.0f}" for a, b in zip(rounds["pnl"], rounds["plain"]))
        lines.append(f"| {what[name]} | {pnl:.0f} | {plain:.0f} | {pnl / plain:.2f}x | {per} |")
    lines += [
        "",
        f"Peak resident memory of `pnl-da predict` (LeNet, no workers): {small:.0f} MiB on "
        f"4,998 files, {large:.0f} MiB on {4 * 4998:,} ({large / small:.2f}x for 4x the files).",
        "",
        "## export: ONNX under onnxruntime against PyTorch eager (CPU, float32)",
        "",
        "| model | export (s) | max difference (its check) | batch | PyTorch ms | "
        "onnxruntime ms | onnxruntime speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, found in exports.items():
        for size in (1, args.batch):
            t, o = found[size]["torch"], found[size]["onnxruntime"]
            lines.append(f"| {name} | {found['export_s']:.1f} | {found['difference']:.2e} | "
                         f"{size} | {t:.2f} | {o:.2f} | {t / o:.2f}x |")
    lines += ["", "The difference is `pnl-da export`'s own check, on "
              + "; ".join(f"{name}: {f['checked_on']}" for name, f in exports.items())
              + " (tolerance 1e-4).", "",
              f"Command: `python benchmarks/predict_export.py {shlex.join(sys.argv[1:])}`"]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
