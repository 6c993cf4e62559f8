"""Several processes under torchrun (gloo on CPU): one result, the global batch's step, resume
under another process count, and the refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from pnl_da.engine.checkpoint import LAST, checkpoint_step, load_checkpoint
from tests.test_faults import ROOT, env_one_thread, metrics

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
DIGITS = ["run", "digits", "uci->ms", "trainer.progress=false", "trainer.device=cpu"]

# The command line with dropout off: one process on a batch and two on its halves then take
# the same step exactly (dropout masks are drawn per process), up to float summation order.
NO_DROPOUT = textwrap.dedent("""
    import sys
    import torch
    for layer in (torch.nn.Dropout, torch.nn.Dropout2d):
        layer.forward = lambda self, x: x
    from pnl_da.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def torchrun(*argv, processes: int = 2, script: Path | None = None, **kwargs):
    target = [str(script)] if script else ["-m", "pnl_da"]
    return subprocess.run([*TORCHRUN, f"--nproc_per_node={processes}", *target,
                           *map(str, argv)], cwd=ROOT, env=env_one_thread(),
                          capture_output=True, text=True, timeout=600, **kwargs)


def test_two_processes_write_one_result_and_take_the_global_batchs_step(tmp_path):
    script = tmp_path / "no_dropout.py"
    script.write_text(NO_DROPOUT)
    # no bottleneck: its BatchNorm normalises each process's half of the batch (SyncBatchNorm
    # is for GPUs), so only a network without BatchNorm takes exactly the global batch's step
    args = [*DIGITS, "method=source_only", "trainer.steps=1", "trainer.eval_every=1",
            "trainer.batch_size=16", "backbone.bottleneck_dim=0"]
    one = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path / "one")],
                         cwd=ROOT, env=env_one_thread(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = torchrun(*args, "--out", tmp_path / "two", script=script)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("target accuracy") == 1  # process 0 speaks, once
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "checkpoints", "config.yaml", "env.json", "metrics.jsonl", "per_class.csv",
        "result.json", "tensorboard"]
    state = load_checkpoint(tmp_path / "two" / LAST)
    assert state["processes"] == 2 and len(state["ranks"]) == 2
    single = load_checkpoint(tmp_path / "one" / LAST)["method"]
    for key, value in state["method"].items():
        assert torch.allclose(value.float(), single[key].float(), rtol=1e-4, atol=1e-6), key
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["processes"] == 2
    # the evaluation, sharded over two processes and summed, is the one-process evaluation
    # of the same weights
    scored = subprocess.run([sys.executable, "-m", "pnl_da", "evaluate", str(tmp_path / "two")],
                            cwd=ROOT, env=env_one_thread(), capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    evaluated = json.loads(scored.stdout.strip().splitlines()[-1])
    assert evaluated["accuracy"] == result["metrics"]["accuracy"]


def test_a_run_stopped_under_two_processes_goes_on_under_one_and_again_under_two(tmp_path):
    out = tmp_path / "run"
    args = [*DIGITS, "method=dann", "trainer.steps=250", "trainer.eval_every=50", "--out", out]
    # 1. two processes, stopped by SIGTERM to torchrun (which hands it to both)
    agent = subprocess.Popen([*TORCHRUN, "--nproc_per_node=2", "-m", "pnl_da", *map(str, args)],
                             cwd=ROOT, env=env_one_thread(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    while not (out / LAST).exists():
        assert agent.poll() is None, agent.communicate()
        time.sleep(0.05)
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.startswith("pnl-da:")]
    first = checkpoint_step(out / LAST)
    assert len(lines) == 1 and f"stopped by SIGTERM at step {first}" in lines[0], err
    assert first % 50 == 0 and first < 250  # the processes agree on the step, every 50
    assert "continue with: torchrun --nproc_per_node=2 -m pnl_da run digits" in lines[0]
    # 2. one process goes on, and is killed
    single = subprocess.Popen([sys.executable, "-m", "pnl_da", *map(str, args), "--resume"],
                              cwd=ROOT, env=env_one_thread(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    while checkpoint_step(out / LAST) == first:
        assert single.poll() is None, single.communicate()
        time.sleep(0.05)
    single.send_signal(signal.SIGKILL)
    single.wait()
    second = checkpoint_step(out / LAST)
    assert first < second < 250
    # 3. two processes finish it
    done = torchrun(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert f"resuming {out} from step {second}" in done.stderr
    segments = json.loads((out / "env.json").read_text())["segments"]
    assert [(s["from_step"], s["processes"]) for s in segments] == [(0, 2), (first, 1),
                                                                     (second, 2)]
    assert [r["step"] for r in metrics(out)] == [50, 100, 150, 200, 250]
    assert json.loads((out / "result.json").read_text())["steps"] == 250


def test_what_torchrun_cannot_run_is_refused_in_one_line(tmp_path):
    odd = torchrun(*DIGITS, "trainer.batch_size=7", "--out", tmp_path / "odd")
    assert odd.returncode != 0
    assert "pnl-da: error: trainer.batch_size=7 is the global batch and does not split over 2 " \
        "processes; use a multiple of 2" in odd.stderr
    assert not (tmp_path / "odd").exists()
    sync = torchrun(*DIGITS, "trainer.sync_bn=true", "--out", tmp_path / "sync")
    assert "pnl-da: error: trainer.sync_bn=true needs GPUs" in sync.stderr
    compare = torchrun("compare", "digits", "uci->ms", "--out", tmp_path / "cmp")
    assert "pnl-da: error: `pnl-da compare` runs in one process" in compare.stderr
    for done in (odd, sync, compare):  # one line, from process 0 only
        assert sum(line.startswith("pnl-da:") for line in done.stderr.splitlines()) == 1
    assert os.environ.get("WORLD_SIZE") is None  # the test process itself is no rank
