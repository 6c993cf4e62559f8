"""Training throughput on an Office-31-format folder: steps/s, images/s, peak memory, the
fraction of step time spent waiting for data, and the projected time of a full run.

Runs pnl-da's real trainer (decoded cache, albumentations workers, bf16 + channels_last on a
GPU) for each method on generated JPEGs, so it needs no download. On the GPU machine:

    python benchmarks/office_throughput.py --backbone resnet50 --steps 200 --workers 12

(pretrained weights are not needed for timing: the backbone is randomly initialised).
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

from _common import emit, sync, time_trainer  # noqa: E402

from pnl_da.config import compose  # noqa: E402
from pnl_da.engine.tasks import load_data  # noqa: E402
from pnl_da.engine.trainer import Trainer  # noqa: E402
from tests.fake_datasets import make_office31  # noqa: E402

FULL_RUN_STEPS = 20_000  # tllib's 20 x 1000 iterations


def measure(variant: str, root: Path, args) -> dict:
    """One row; VARIANT is a method name, optionally with '+compile' (torch.compile the
    backbone), '+eager' (no CUDA graphs, which the image benchmarks' trainer preset turns on),
    '+nobench' (cuDNN autotuning off), '+nchw' (no channels_last), '+wN' (N loader
    workers) or '+fixed' (one batch reused every step: the model's own ceiling, with no input
    pipeline at all); '+prof' also prints the top operators of 10 profiled steps."""
    method, *flags = variant.split("+")
    extra = {"compile": ["trainer.compile=true"],
             "eager": ["trainer.cuda_graphs=false"],
             "nobench": ["trainer.cudnn_benchmark=false"], "fixed": [], "prof": [],
             "nchw": ["trainer.channels_last=false"]}
    extra.update({f: [f"data.workers={f[1:]}"] for f in flags
                  if f.startswith("w") and f[1:].isdigit()})
    unknown = [f for f in flags if f not in extra]
    if unknown:
        raise SystemExit(f"unknown variant flag(s) {unknown} in '{variant}'; use {list(extra)}")
    cfg = compose([
        "benchmark=office31", "benchmark.source=amazon", "benchmark.target=webcam",
        f"method={method}", f"backbone.name={args.backbone}", "backbone.pretrained=false",
        f"data.image_size={args.image_size}", f"trainer.batch_size={args.batch}",
        f"trainer.steps={FULL_RUN_STEPS}", "trainer.progress=false",
        f"data.workers={args.workers}", f"data.root={root}", f"trainer.device={args.device}",
        *[o for f in flags for o in extra[f]],
    ])
    trainer = Trainer(cfg, load_data(cfg))
    if "fixed" in flags:
        batch = trainer.next_batch()
        trainer.next_batch = lambda: batch
    timing = time_trainer(trainer, args.warmup, args.steps)
    if "prof" in flags:
        profile(trainer, args.warmup + args.steps, variant)
    per_step = timing["per_step"]
    return {"method": variant, "warmup_s": timing["warmup_s"], "steps_per_s": 1 / per_step,
            "images_per_s": 2 * args.batch / per_step, "peak_gib": timing["peak_gib"],
            "data_wait": timing["data_wait"],
            "full_run_min": (per_step * FULL_RUN_STEPS + timing["warmup_s"]) / 60}


def profile(trainer, first_step: int, variant: str, steps: int = 10) -> None:
    """Where the time of a step goes: the top operators by device time and by host time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if trainer.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for step in range(first_step, first_step + steps):
            trainer.train_step(step)
        sync(trainer.device)
    table = prof.key_averages()
    sort = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    print(f"--- profile of {variant}, {steps} steps", file=sys.stderr)
    print(table.table(sort_by=sort, row_limit=12, max_name_column_width=40), file=sys.stderr)
    print(table.table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=40),
          file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--methods", default="source_only,dann,pnl",
                        help="comma-separated; a method may carry +compile, +eager, +nobench, "
                             "+wN, +fixed, +prof (see measure())")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="pnl-da-office-"))
    try:
        make_office31(folder, domains=("amazon", "webcam"), classes=31,
                      per_class=args.per_class)
        rows = [measure(m, folder, args) for m in args.methods.split(",")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    device = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
              else f"CPU, {torch.get_num_threads()} threads")
    lines = [f"# Office-31 A->W training throughput, {args.backbone} at {args.image_size}, "
             f"{args.batch}+{args.batch} images per step",
             "", f"Device: {device}; torch {torch.__version__}; {args.workers} workers; "
             f"{datetime.date.today()}. {args.steps} timed steps after {args.warmup}.", "",
             "The projected run is the timed step rate times 20,000 plus the warm-up (start-up, "
             "autotuning, compilation); evaluation passes are not included.", "",
             "| method | steps/s | images/s | peak GPU memory (GiB) | data wait | warm-up (s) | "
             f"projected {FULL_RUN_STEPS:,}-step run (min) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} | "
                     f"{r['peak_gib']:.1f} | {r['data_wait']:.1%} | {r['warmup_s']:.0f} | "
                     f"{r['full_run_min']:.1f} |")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
