"""Soak test of fault tolerance: short digits runs killed at random moments, resumed, compared.

Each of ``--runs`` runs is `pnl-da run digits uci->mnist-sample` (PNL, its default options,
shortened) on one of ``--configs`` seeds. While it trains it is stopped at a random moment by
SIGKILL, SIGTERM or SIGINT (1 to ``--max-faults`` times; a moment may fall in start-up, a
training step, an evaluation or a checkpoint write), and started again with ``--resume`` until
it finishes. Its final weights, result.json metrics and metrics.jsonl are then compared, bit
for bit, with an uninterrupted run of the same seed made first. Every run uses one torch
thread, so the comparison does not depend on how the host schedules threads.

    python benchmarks/soak.py [--runs 50] [--configs 5] [--jobs 1] [--seed 0]
        [--out benchmarks/results/soak_cpu.md] [--work DIR]

The table counts runs, faults injected, resumes, runs equal to their reference, files lost
(an expected file of a finished run missing), stale temporary files and locks left behind,
and exits that were not the documented ones (143 for SIGTERM, 130 for SIGINT). The script
exits 1 unless every run equals its reference and nothing is lost or left behind.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, machine  # noqa: E402

from pnl_da.engine.checkpoint import LAST, load_checkpoint  # noqa: E402

SETTINGS = ["trainer.steps=40", "trainer.eval_every=10", "trainer.batch_size=16",
            "trainer.progress=false", "trainer.device=cpu"]
EXPECTED = ("config.yaml", "env.json", "metrics.jsonl", "per_class.csv", "result.json", str(LAST))
FAULTS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
EXIT = {"SIGTERM": 143, "SIGINT": 130}  # what a caught signal must exit with
TIMINGS = ("steps_per_s", "data_wait_fraction")


def command(seed: int, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "pnl_da", "run", "digits", "uci->mnist-sample",
            f"seed={seed}", *SETTINGS, "--out", str(out), *(["--resume"] if resume else []),
            "--debug"]  # an unexpected failure then comes with its traceback (same exit codes)


def environment() -> dict:
    # one thread: CPU float reductions then repeat exactly, whatever runs beside them
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def reference(seed: int, work: Path) -> tuple[Path, float]:
    out = work / "reference" / f"seed{seed}"
    start = time.perf_counter()
    done = subprocess.run(command(seed, out, False), env=environment(), capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"the reference run of seed {seed} failed: {done.stderr.strip()}")
    return out, time.perf_counter() - start


def soak_one(index: int, seed: int, work: Path, duration: float, max_faults: int,
             rng: random.Random) -> dict:
    """One run, stopped ``1..max_faults`` times at random moments, resumed until it ends."""
    out = work / "soak" / f"run{index:03d}"
    wanted = rng.randint(1, max_faults)
    faults, resumes, unexpected, launches, early, on_the_way_out = [], 0, [], 0, [], []
    while True:
        resume = launches > 0
        launches += 1
        process = subprocess.Popen(command(seed, out, resume), env=environment(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        resumes += resume
        kind = None
        if len(faults) < wanted:
            kind = rng.choice(sorted(FAULTS))
            try:  # a random moment of this launch: start-up, a step, an evaluation, a write
                process.wait(timeout=rng.uniform(0.0, duration))
                kind = None  # it finished first
            except subprocess.TimeoutExpired:
                process.send_signal(FAULTS[kind])
        _, err = process.communicate()
        code = process.returncode
        if kind is not None:
            faults.append(kind)
            if code == -FAULTS[kind] and kind in EXIT:
                # the signal's default action: it came while Python started or shut down,
                # outside pnl-da's handlers (before anything was written, or after all was)
                early.append("exit" if (out / "result.json").is_file() else "start-up")
            elif code == 0:
                pass  # the signal came as the run ended: it finished
            elif kind == "SIGKILL" and code != -signal.SIGKILL:
                unexpected.append(f"{kind}: {code}")
            elif kind in EXIT and code != EXIT[kind]:
                unexpected.append(f"{kind}: {code}\n{err.strip()}")
            elif kind in EXIT and "(on the way out: " in err:
                # the stop's unwinding raised another error (a library left half done):
                # reported as the stop, counted here, printed in full under --debug
                on_the_way_out.append(f"{kind}\n{err.strip()}")
        elif code != 0:
            unexpected.append(f"no fault: {code}\n{err.strip()}")
        if code == 0:
            break
        if launches > 4 * max_faults + 4:
            unexpected.append("never finished")
            break
    return {"index": index, "seed": seed, "out": out, "faults": faults, "resumes": resumes,
            "unexpected": unexpected, "early": early, "on_the_way_out": on_the_way_out}


def metrics_without_timings(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        for key in TIMINGS:
            record.pop(key, None)
    return records


def compare(run: Path, ref: Path) -> tuple[bool, list[str], int]:
    """(equal to the reference, files lost, stale temporary files and locks)."""
    lost = [name for name in EXPECTED if not (run / name).is_file()]
    stale = [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".lock")]
    if lost:
        return False, lost, len(stale)
    a, b = (load_checkpoint(d / LAST)["method"] for d in (run, ref))
    weights = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    results = [json.loads((d / "result.json").read_text()) for d in (run, ref)]
    same_result = all(r["metrics"] == results[1]["metrics"] and r["heads"] == results[1]["heads"]
                      for r in results)
    same_log = metrics_without_timings(run / "metrics.jsonl") == \
        metrics_without_timings(ref / "metrics.jsonl")
    return weights and same_result and same_log, lost, len(stale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--configs", type=int, default=5, help="seeds the runs cycle through")
    parser.add_argument("--max-faults", type=int, default=3, help="faults per run, at most")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="run folders (default: a "
                        "temporary folder, removed)")
    args = parser.parse_args()
    # its SIGINT faults stand for a terminal's Ctrl-C: started as a shell's background job, this
    # process and so its runs would ignore SIGINT (pnl-da keeps a signal ignored at start-up
    # ignored), so take Python's own handler back; exec gives the runs the default disposition
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    holder = None if args.work else tempfile.TemporaryDirectory(prefix="pnl-da-soak-")
    work = args.work or Path(holder.name)
    seeds = list(range(min(args.configs, args.runs)))
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        refs = dict(zip(seeds, pool.map(lambda s: reference(s, work), seeds)))
    duration = max(t for _, t in refs.values())  # a whole run: the faults fall anywhere in it
    lock = threading.Lock()
    print(f"references: {len(seeds)} runs, {duration:.1f} s at most each", file=sys.stderr)

    def one(i: int) -> dict:
        rng = random.Random(args.seed * 100_003 + i)
        result = soak_one(i, seeds[i % len(seeds)], work, duration, args.max_faults, rng)
        equal, lost, stale = compare(result["out"], refs[result["seed"]][0])
        result.update(equal=equal, lost=lost, stale=stale)
        with lock:
            print(f"run {i}: seed {result['seed']}, faults {','.join(result['faults']) or '-'}, "
                  f"{'equal' if equal else 'DIFFERENT'}"
                  + (f", lost {lost}" if lost else "") + (f", stale {stale}" if stale else "")
                  + "".join(f"\n  unexpected exit, {u}" for u in result["unexpected"])
                  + "".join(f"\n  error on the way out of a stop, {u}"
                            for u in result["on_the_way_out"]),
                  file=sys.stderr)
        return result

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(one, range(args.runs)))
    faults = [f for r in results for f in r["faults"]]
    rows = [
        ("runs", len(results)),
        ("faults injected", len(faults)),
        *((f"  {kind}", faults.count(kind)) for kind in sorted(FAULTS)),
        ("resumes", sum(r["resumes"] for r in results)),
        ("runs bitwise equal to the reference", sum(r["equal"] for r in results)),
        ("files lost", sum(len(r["lost"]) for r in results)),
        ("stale temporary files and locks", sum(r["stale"] for r in results)),
        ("unexpected exit codes", sum(len(r["unexpected"]) for r in results)),
        ("stops whose unwinding raised another error (exit code right, error named)",
         sum(len(r["on_the_way_out"]) for r in results)),
        *((f"SIGTERM/SIGINT at Python's {when}, outside pnl-da's handlers (default action)",
           sum(r["early"].count(when) for r in results)) for when in ("start-up", "exit")),
    ]
    elapsed = time.perf_counter() - started
    table = "\n".join(
        [f"# Soak: {args.runs} digits runs stopped at random moments and resumed", "",
         f"Machine: {machine()} in this process; every run 1 torch thread, {args.jobs} at a "
         f"time; {datetime.date.today()}. Runs: PNL, uci->mnist-sample, "
         f"{' '.join(SETTINGS[:3])}, seeds {seeds[0]}-{seeds[-1]}; 1-{args.max_faults} faults "
         f"per run (SIGKILL, SIGTERM or SIGINT, at a moment drawn uniformly over a whole run's "
         f"{duration:.1f} s), fault schedule seed {args.seed}. {elapsed / 60:.1f} minutes in "
         "all.", "", "| | count |", "|---|---|",
         *(f"| {name} | {value} |" for name, value in rows), ""])
    emit(table, args.out)
    if holder is not None:
        holder.cleanup()
    ok = all(r["equal"] and not r["lost"] and not r["stale"] and not r["unexpected"]
             for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
