"""SIGINT at random lines of a resume: does every stop outside the training loop exit 130?

The soak (``soak.py``) signals processes at random moments of wall-clock time, so it seldom
lands inside a given library call. This script aims at the code instead: it resumes one digits
run from a mid-run checkpoint, in this process, again and again, tracing Python's line events
outside the training loop (where a signal stops the process at once, see
pnl_da/engine/signals.py) and raising SIGINT at the K-th of them, K drawn uniformly. Every
resume must exit 130 with pnl-da's one line (or 0, should it finish first); any other exit is
listed with the last line it printed, and the script then exits 1.

    python benchmarks/signal_lines.py [--trials 150] [--seed 0] [--work DIR] [--out FILE]

Start-up imports are not covered (they happen once per process); the soak covers those.
Tracing makes a resume ten times slower: about 3 s each on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the runs of one process repeat exactly
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, machine  # noqa: E402

from pnl_da import cli  # noqa: E402
from pnl_da.engine import signals  # noqa: E402
from pnl_da.engine.checkpoint import LAST  # noqa: E402

SETTINGS = ["run", "digits", "uci->mnist-sample", "seed=0", "trainer.steps=40",
            "trainer.eval_every=10", "trainer.batch_size=16", "trainer.progress=false",
            "trainer.device=cpu"]


def checkpointed_run(folder: Path) -> None:
    """A run stopped by SIGTERM after its first checkpoint (step 10 of 40)."""
    process = subprocess.Popen([sys.executable, "-m", "pnl_da", *SETTINGS, "--out", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=Path(__file__).resolve().parent.parent)
    while not (folder / LAST).is_file() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    if process.wait() != 143:
        raise SystemExit(f"the run to resume did not stop with a checkpoint ({folder})")


class Trial:
    """One resume of a copy of ``template`` in ``work``, SIGINT at traced line ``target``."""

    def __init__(self, template: Path, work: Path):
        self.template, self.work = template, work
        self.count, self.target = 0, None

    def _trace(self, frame, event, arg):
        if event in ("call", "line") and not signals._state["defer"]:
            self.count += 1
            if self.count == self.target:
                signal.raise_signal(signal.SIGINT)
        return self._trace

    def __call__(self, target: int | None) -> tuple[int | str, str, int]:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(self.template, self.work)
        self.count, self.target = 0, target
        err = io.StringIO()
        sys.settrace(self._trace)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli.main([*SETTINGS, "--out", str(self.work), "--resume", "--debug"])
        except BaseException as exc:  # noqa: BLE001 - an escape is a finding, not a crash
            code = f"escaped {type(exc).__name__}"
            err.write(traceback.format_exc())
        finally:
            sys.settrace(None)
        return code, err.getvalue(), self.count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn lines")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # started as a shell's background job, SIGINT would be ignored (and stay ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    holder = None if args.work else tempfile.TemporaryDirectory(prefix="pnl-da-lines-")
    work = args.work or Path(holder.name)
    template = work / "template"
    shutil.rmtree(template, ignore_errors=True)
    checkpointed_run(template)
    trial = Trial(template, work / "resume")
    trial(None)  # the first resume imports what the command needs
    lines = min(trial(None)[2] for _ in range(3))
    rng = random.Random(args.seed)
    codes: dict[str, int] = {}
    other = []
    for i in range(args.trials):
        target = rng.randint(1, lines)
        code, err, _ = trial(target)
        codes[str(code)] = codes.get(str(code), 0) + 1
        last = (err.strip().splitlines() or [""])[-1]
        if code != 0 and (code != 130 or not last.startswith("pnl-da: interrupted")):
            other.append((target, code, last))
        print(f"trial {i}: line {target}, exit {code}", file=sys.stderr, flush=True)
    table = "\n".join(
        [f"# SIGINT at {args.trials} random lines of a resume", "",
         f"Machine: {machine()}; {datetime.date.today()}. One digits run "
         f"({' '.join(SETTINGS[1:])}) resumed from its step-10 checkpoint, {lines:,} traced "
         f"lines outside the training loop per resume, line seed {args.seed}. "
         f"{(time.perf_counter() - started) / 60:.1f} minutes.", "",
         "| exit code | resumes |", "|---|---|",
         *(f"| {code} | {n} |" for code, n in sorted(codes.items())), "",
         *([f"Not the documented stop ({len(other)}):", "",
            *(f"- line {t}: exit {c}: `{last}`" for t, c, last in other), ""] if other else
           ["Every resume ended with exit 130 and pnl-da's one line (or finished).", ""])])
    emit(table, args.out)
    if holder is not None:
        holder.cleanup()
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main())
