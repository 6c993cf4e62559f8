"""CDAN at tllib's parity: pnl-da's CDAN against tllib's own CDAN loss run through pnl-da's
data, model and trainer, one component swapped at a time, on uci->mnist-sample.

tllib's whole modules reach 82.01 / 83.71 / 84.63 % there (docs/method.md section 7, seeds
0-2); pnl-da's default CDAN gave 78.20 ± 6.13 on three seeds (tllib_differences.md). Ten seeds
of each variant settle whether that gap is real. The variants:

- ``pnl-da``: the default CDAN (our map, discriminator, BCE-with-logits, GRL warm-up over the
  run: grl_alpha=10);
- ``tllib GRL``: the same with tllib's warm-up (exp(-step / 1000) over 3000 steps is
  grl_alpha=3), nothing else changed;
- ``tllib loss``: tllib's ConditionalDomainAdversarialLoss with its DomainDiscriminator
  (sigmoid + BCE) and its map, but pnl-da's GRL schedule;
- ``tllib CDAN``: tllib's loss module whole, its own GRL (alpha 1, max_iters 1000, stepped
  on each call) included.

The rule (written before the runs): ``pnl-da`` and ``tllib CDAN`` run first, ten seeds each.
The gap is real if Welch's |t| between them exceeds 2.1 (two-sided 5 % at about 18 degrees of
freedom). Only then do the two single swaps run, and the default CDAN takes the component
whose swap alone gives a mean within one standard error of ``tllib CDAN``'s; if neither does,
both.

tllib is not a dependency: ``--tllib DIR`` names a checkout of its source outside this
repository. Runs are kept under ``--runs`` and reused; a tllib run is not resumable (its GRL
counts its own calls), so an interrupted one must be deleted before running again.

    python benchmarks/cdan_parity.py --tllib /tmp/tllib_src [--variants ...] [--seeds 0-9]
        [--jobs 2] [--out benchmarks/results/cdan_parity.md]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import digits_run, emit, in_fresh_processes, machine  # noqa: E402

TASK = "uci->mnist-sample"
REFERENCE = [82.01, 83.71, 84.63]  # tllib's whole modules, seeds 0-2 (docs/method.md section 7)
# variant -> (overrides, swap tllib's loss in, keep pnl-da's GRL)
VARIANTS = {"pnl-da": ([], False, False),
            "tllib GRL": (["method.grl_alpha=3"], False, False),
            "tllib loss": ([], True, True),
            "tllib CDAN": ([], True, False)}


def swap_in_tllib(root: str, keep_our_grl: bool) -> None:
    """pnl-da's CDAN alignment computes tllib's loss module from here on (this process)."""
    import importlib

    import numpy
    import torch
    from torch import nn

    from benchmarks.tllib_losses_fixture import mount_tllib
    from pnl_da.methods import base

    mount_tllib(root)
    if not hasattr(numpy, "float"):  # tllib's GRL calls np.float, gone since NumPy 1.24
        numpy.float = float
    cdan = importlib.import_module("tllib.alignment.cdan")
    discriminators = importlib.import_module("tllib.modules.domain_discriminator")

    class TllibCDAN(nn.Module):
        """Our loss's signature around tllib's module (ours is built, then left unused)."""

        def __init__(self, discriminator, grl, multilinear, entropy_conditioning=False):
            super().__init__()
            first = discriminator[0]
            self.loss = cdan.ConditionalDomainAdversarialLoss(
                discriminators.DomainDiscriminator(first.in_features, first.out_features),
                entropy_conditioning=entropy_conditioning)
            if keep_our_grl:
                self.loss.grl = grl

        def forward(self, f_s, f_t, p_s, p_t):
            # tllib takes logits and applies the softmax itself: log p gives back p
            loss = self.loss(torch.log(p_s), f_s, torch.log(p_t), f_t)
            return loss, torch.tensor(float(self.loss.domain_discriminator_accuracy))

    base.ConditionalDomainAdversarialLoss = TllibCDAN


def out_dir(root: Path, variant: str, seed: int) -> Path:
    return root / variant.replace(" ", "_") / f"seed{seed}"


def run(variant: str, seed: int, root: Path, tllib: str | None, threads: int,
        steps: int) -> float:
    overrides, swap, keep_grl = VARIANTS[variant]
    if swap:
        if not tllib:
            raise SystemExit(f"variant {variant!r} needs --tllib DIR (tllib's source)")
        swap_in_tllib(tllib, keep_grl)
    return digits_run("cdan", TASK, seed, out_dir(root, variant, seed),
                      [*([f"trainer.steps={steps}"] if steps else []), *overrides], threads)


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic and its degrees of freedom (b minus a)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(b) - statistics.mean(a)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t, dof


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--tllib", default=None, help="tllib's source (its tllib/ inside)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0, help="0: the default (3000)")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/cdan_parity"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    variants, seeds = args.variants.split(","), seeds_of(args.seeds)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}: use one of {', '.join(VARIANTS)}")

    jobs = [(v, s) for s in seeds for v in variants]
    threads = 1 if args.jobs > 1 else 0
    acc = in_fresh_processes(run, {job: (*job, args.runs, args.tllib, threads, args.steps)
                                   for job in jobs}, args.jobs)

    base = [acc["pnl-da", s] for s in seeds] if "pnl-da" in variants else None
    lines = ["# CDAN at tllib's parity (uci->mnist-sample)", "",
             f"`python benchmarks/cdan_parity.py --variants '{args.variants}' --seeds "
             f"{args.seeds} --jobs {args.jobs} --tllib DIR` (tllib c4aa59e). Default CDAN "
             "configuration: LeNet with the 256-d bottleneck, 3000 steps of 64 + 64 images, "
             "SGD lr 0.01 with tllib's decay; target accuracy %, one row per variant, "
             "mean ± sample std over the seeds; Welch's t against pnl-da's default.", "",
             "| variant | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean ± std | min | t (dof) |", "|---|" + "---|" * (len(seeds) + 3)]
    for variant in variants:
        values = [acc[variant, s] for s in seeds]
        spread = (f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
                  if len(values) > 1 else f"{values[0]:.2f}")
        test = "-"
        if base and variant != "pnl-da" and len(values) > 1:
            t, dof = welch(base, values)
            test = f"{t:+.2f} ({dof:.1f})"
        lines.append(f"| {variant} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {spread} | {min(values):.2f} | {test} |")
    lines += ["", "tllib's whole modules (docs/method.md section 7), seeds 0-2: "
              + " / ".join(f"{v:.2f}" for v in REFERENCE)
              + f" (mean {statistics.mean(REFERENCE):.2f} ± {statistics.stdev(REFERENCE):.2f}).",
              "", f"Machine: {machine()}; {args.jobs} run(s) at a time"
              + (", one torch thread each." if threads else ".")]
    emit("\n".join(lines) + "\n", args.out)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(
            {"task": TASK, "runs": [{"variant": v, "seed": s, "accuracy": a}
                                    for (v, s), a in acc.items()]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
