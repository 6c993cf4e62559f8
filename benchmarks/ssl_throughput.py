"""Semi-supervised training speed on CIFAR-10 with Conv-Large: pnl (two networks) against
supervised, and the projected time of the paper's 100-epoch run.

Runs pnl-da's real trainer on generated CIFAR-10-format files (random pixels: speed does not
depend on them) with the authors' schedule (trainer/pnl_paper.yaml: 50 labeled + 50 unlabeled
images per step, 500 steps per epoch on the 50,000 training images). On the GPU machine:

    python benchmarks/ssl_throughput.py --steps 200

"images/s" counts distinct training images (labeled + unlabeled) per second; every method
sees two views of each unlabeled image except supervised, which reads labeled images only.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, machine, time_trainer  # noqa: E402

from pnl_da.config import compose  # noqa: E402
from pnl_da.engine.tasks import load_data  # noqa: E402
from pnl_da.engine.trainer import Trainer  # noqa: E402
from tests.fake_datasets import write_cifar  # noqa: E402

CIFAR10_TRAIN = 50_000
ROWS = {
    "supervised": ["method=supervised"],
    "pnl (dual)": ["method=pnl", "ssl.model=dual"],
    "pnl (shared)": ["method=pnl", "ssl.model=shared"],
    "pnl_paper (dual)": ["method=pnl_paper"],
}


def measure(name: str, overrides: list[str], root: Path, args) -> dict:
    cfg = compose(["dataset=cifar10", "dataset.labels=1000", f"data.root={root}",
                   "backbone=convlarge", "trainer=pnl_paper", "trainer.progress=false",
                   f"trainer.device={args.device}", *overrides], mode="ssl")
    data = load_data(cfg)
    trainer = Trainer(cfg, data)
    timing = time_trainer(trainer, args.warmup, args.steps)
    per_step = timing["per_step"]
    labeled = cfg.trainer.batch_size
    unlabeled = 0 if name == "supervised" else cfg.trainer.unlabeled_batch_size
    steps_100_epochs = 100 * (CIFAR10_TRAIN // (cfg.trainer.batch_size
                                                + cfg.trainer.unlabeled_batch_size))
    return {"name": name, "steps_per_s": 1 / per_step,
            "images_per_s": (labeled + unlabeled) / per_step,
            "peak_gib": timing["peak_gib"], "data_wait": timing["data_wait"],
            "run_min": per_step * steps_100_epochs / 60, "steps_100": steps_100_epochs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pnl-da-cifar-"))
    try:
        write_cifar(root, "cifar10", n=1000)  # 5,000 training images in the real format
        rows = [measure(name, ROWS[name], root, args) for name in args.rows.split(",")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = next((r for r in rows if r["name"] == "supervised"), rows[0])
    lines = ["# CIFAR-10, Conv-Large, the authors' schedule (50 labeled + 50 unlabeled per step)",
             "", f"Machine: {machine()}; device {args.device}; {datetime.date.today()}. "
             f"{args.steps} timed steps after {args.warmup}. Projected run: 100 epochs = "
             f"{rows[0]['steps_100']:,} steps, evaluation not included.", "",
             "| method | steps/s | images/s | time per step vs supervised | peak GPU memory "
             "(GiB) | data wait | projected 100-epoch run (min) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} | "
                     f"{base['steps_per_s'] / r['steps_per_s']:.2f}x | {r['peak_gib']:.2f} | "
                     f"{r['data_wait']:.1%} | {r['run_min']:.1f} |")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
