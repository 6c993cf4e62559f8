"""Training steps per second of each pnl-da method, against baselines measured in the same run.

Baselines: pnl-da's own source-only step, and a plain tensor-indexing DANN loop written here
(LeNet, tllib's discriminator, gradient reversal, SGD; data as one tensor indexed by random
permutations; no engine, no logging). Ratios are step-time ratios: pnl-da DANN / plain DANN
(goal <= 1.1) and PNL / pnl-da DANN (goal <= 1.6).

    python benchmarks/train_throughput.py [--steps 150] [--repeats 3] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import emit, machine, sync, time_trainer

from pnl_da.config import compose
from pnl_da.engine.tasks import load_data
from pnl_da.engine.trainer import Trainer
from pnl_da.models.digits import LeNet
from pnl_da.models.grl import reverse_gradient, warm_start_coeff
from pnl_da.models.heads import DomainDiscriminator

TASK = ["benchmark.source=uci", "benchmark.target=mnist-sample"]
METHODS = {
    "source_only": ["method=source_only"],
    "dann": ["method=dann"],
    "cdan": ["method=cdan"],
    "pnl": ["method=pnl"],
    "pnl_weak_view": ["method=pnl", "method.generator_view=weak", "method.weight=2.0"],
}


def time_engine(overrides: list[str], steps: int, warmup: int, device: str) -> float:
    """Seconds per step of pnl-da's trainer (its real train_step: data, views, losses, SGD)."""
    cfg = compose(TASK + overrides + ["trainer.progress=false", f"trainer.steps={steps + warmup}",
                                      f"trainer.device={device}"])
    trainer = Trainer(cfg, load_data(cfg))
    return time_trainer(trainer, warmup, steps)["per_step"]


def time_plain_dann(steps: int, warmup: int, device: str, batch: int = 64) -> float:
    """Seconds per step of a bare DANN loop over tensors already on the device."""
    dev = torch.device(device)
    cfg = compose(TASK + ["trainer.progress=false"])
    data = load_data(cfg)
    xs = (data.source.images.float().div(255).sub(0.5).div(0.5)).to(dev)
    ys = data.source.labels.to(dev)
    xt = (data.target_train.images.float().div(255).sub(0.5).div(0.5)).to(dev)
    torch.manual_seed(0)
    backbone, head = LeNet().to(dev), torch.nn.Linear(500, 10).to(dev)
    disc = DomainDiscriminator(500, 1024).to(dev)
    params = [*backbone.parameters(), *head.parameters(), *disc.parameters()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3)
    total = steps + warmup
    domain = torch.cat([torch.ones(batch), torch.zeros(batch)]).to(dev)

    def step(i):
        si = torch.randint(0, len(xs), (batch,), device=dev)
        ti = torch.randint(0, len(xt), (batch,), device=dev)
        for group in opt.param_groups:
            group["lr"] = 0.01 * (1 + 0.001 * i) ** -0.75
        f = backbone(torch.cat([xs[si], xt[ti]]))
        loss = F.cross_entropy(head(f[:batch]), ys[si])
        d = disc(reverse_gradient(f, warm_start_coeff(i / total))).squeeze(1)
        loss = loss + F.binary_cross_entropy_with_logits(d, domain)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    sync(dev)
    start = time.perf_counter()
    for i in range(warmup, total):
        step(i)
    sync(dev)
    return (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = parser.parse_args()

    # Interleave the measurements so drift in machine load hits every entry alike.
    runs: dict[str, list[float]] = {"plain_dann": [], **{m: [] for m in METHODS}}
    for _ in range(args.repeats):
        runs["plain_dann"].append(time_plain_dann(args.steps, args.warmup, args.device))
        for name, overrides in METHODS.items():
            runs[name].append(time_engine(overrides, args.steps, args.warmup, args.device))
    med = {k: statistics.median(v) for k, v in runs.items()}

    lines = [
        "# Training throughput, digits uci->mnist-sample, LeNet, 64+64 images per step",
        "",
        f"Machine: {machine()}; device {args.device}. Date: {datetime.date.today()}.",
        f"Median of {args.repeats} interleaved repeats of {args.steps} steps "
        f"(after {args.warmup} warm-up steps).",
        "",
        "| loop | steps/s | ms/step | x source-only | x plain DANN loop | x pnl-da DANN |",
        "|---|---|---|---|---|---|",
    ]
    for name in ["plain_dann", *METHODS]:
        t = med[name]
        label = "plain tensor-indexing DANN loop" if name == "plain_dann" else f"pnl-da {name}"
        lines.append(f"| {label} | {1 / t:.1f} | {t * 1000:.1f} | {t / med['source_only']:.2f} | "
                     f"{t / med['plain_dann']:.2f} | {t / med['dann']:.2f} |")
    lines += [
        "",
        f"pnl-da DANN / plain DANN loop: {med['dann'] / med['plain_dann']:.2f} (goal <= 1.1)",
        f"pnl-da PNL (default) / pnl-da DANN: {med['pnl'] / med['dann']:.2f} (goal <= 1.6)",
        f"pnl-da PNL (generator_view=weak) / pnl-da DANN: "
        f"{med['pnl_weak_view'] / med['dann']:.2f}",
    ]
    emit("\n".join(lines) + "\n", args.out)
    print(json.dumps({k: [round(x * 1000, 2) for x in v] for k, v in runs.items()}),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
