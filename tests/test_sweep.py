"""Sweeps through Hydra's multirun and its launchers: every job planned and checked first, each
in its own run folder, joblib and submitit_local, preemption and requeueing, compare."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pnl_da.config import to_yaml
from pnl_da.engine.checkpoint import LAST, checkpoint_step
from pnl_da.engine.tasks import comparable, compose
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_faults import ROOT, env_one_thread, metrics

SHORT = ["trainer.steps=4", "trainer.eval_every=2", "trainer.progress=false",
         "trainer.device=cpu"]


def pnl_da(*argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "pnl_da", *map(str, argv)], cwd=ROOT,
                          env=env_one_thread(), capture_output=True, text=True, timeout=600,
                          **kwargs)


def finished(root: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("result.json"))


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]])
def test_a_2x2_multirun_gives_four_finished_runs_each_the_single_run(tmp_path, launcher):
    out = tmp_path / "sweep"
    done = pnl_da("run", "digits", "uci->ms", "--multirun", "method=source_only,dann",
                  "seed=0,1", *SHORT, *launcher, "--out", out)
    assert done.returncode == 0, done.stderr
    assert finished(out) == [f"uci2mnist-sample/{m}/seed{s}" for m in ("dann", "source_only")
                             for s in (0, 1)]
    assert "4 of 4 jobs finished" in done.stderr
    # each job is exactly the run `pnl-da run` would make with its values
    single = compose(["benchmark.source=uci", "benchmark.target=mnist-sample", "method=dann",
                      "seed=1", f"data.root={ROOT / 'data'}", *SHORT])
    saved = (out / "uci2mnist-sample/dann/seed1/config.yaml").read_text()
    assert comparable(saved) == comparable(to_yaml(single))
    # Hydra's own files beside the run folders, not in them
    assert sorted(p.name for p in (out / "uci2mnist-sample/dann/seed1").iterdir()) == [
        "checkpoints", "config.yaml", "env.json", "metrics.jsonl", "per_class.csv",
        "result.json", "tensorboard"]
    assert list(out.glob("multirun/*/multirun.yaml"))
    again = pnl_da("run", "digits", "uci->ms", "--multirun", "method=source_only,dann",
                   "seed=0,1", *SHORT, "--out", out)  # the same sweep again: all reused
    assert again.returncode == 0 and again.stderr.count("already finished") == 4


def test_a_preempted_submitit_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "sweep"
    run = out / "uci2mnist-sample/dann/seed0"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "pnl_da", "run", "digits", "uci->ms", "--multirun", "method=dann",
         "seed=0", "trainer.steps=200", "trainer.eval_every=50", "trainer.progress=false",
         "trainer.device=cpu", "hydra/launcher=submitit_local", "--out", str(out)],
        cwd=ROOT, env=env_one_thread(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    while not (run / LAST).exists():
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.1)
    job = subprocess.run(["pgrep", "-f", f"submitit.core._submit {out}"], capture_output=True,
                         text=True).stdout.split()
    assert len(job) == 1, job
    os.kill(int(job[0]), signal.SIGUSR2)  # what Slurm and submitit send before the end
    _, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, err
    segments = json.loads((run / "env.json").read_text())["segments"]
    assert len(segments) == 2 and 50 <= segments[1]["from_step"] < 200  # the step under way
    assert [r["step"] for r in metrics(run)] == [50, 100, 150, 200]
    log = "".join(p.read_text() for p in out.glob("multirun/*/.submitit/*/*_log.err"))
    assert "this job is preempted" in log
    assert f"resuming {run} from step {segments[1]['from_step']}" in log
    assert checkpoint_step(run / LAST) == 200


def test_a_submitit_job_of_two_tasks_is_one_run_on_two_processes(tmp_path):
    out = tmp_path / "sweep"
    done = pnl_da("run", "digits", "uci->ms", "--multirun", "method=dann", "seed=0", *SHORT,
                  "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                  "--out", out)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "uci2mnist-sample/dann/seed0/result.json").read_text())
    assert result["processes"] == 2


def test_the_plan_names_a_folder_per_job_and_bad_jobs_fail_before_any_trains(capsys,
                                                                            tmp_path):
    out = tmp_path / "plan"
    code, stdout, err = run_cli(capsys, "run", "digits", "uci->ms,uci->mnist", "--multirun",
                                "method.k=2,3", "seed=0,1", "--out", str(out), "--show-config",
                                *SHORT)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "8 jobs:"
    assert f"  {out / 'uci2mnist-sample/pnl/method.k=3/seed1'}: " in stdout
    assert f"  {out / 'uci2mnist/pnl/method.k=2/seed0'}: " in stdout
    assert not out.exists()  # a plan writes nothing
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--multirun", "method=dann,pnl",
                           "method.tau=0.5", "--out", str(out), *SHORT)
    assert_one_line_error(code, err, 2, "method.tau")  # dann has no tau: refused up front
    assert not out.exists()
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "seed=0,1", *SHORT)
    assert_one_line_error(code, err, 2, "several values to sweep: add --multirun")
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--multirun", "seed=0,1",
                           "hydra/launcher=nope", *SHORT)
    assert_one_line_error(code, err, 2, "unknown launcher hydra/launcher=nope", "joblib",
                          "slurm_gpu", "submitit_local")


def test_compare_and_ssl_sweeps_through_a_launcher(tmp_path):
    out = tmp_path / "compare"
    done = pnl_da("compare", "digits", "uci->ms", "--methods", "source_only,dann", "--seeds",
                  "0,1", *SHORT, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  "--out", out)
    assert done.returncode == 0, done.stderr
    assert "| dann |" in done.stdout and (out / "comparison.md").is_file()
    assert finished(out) == ["dann/seed0", "dann/seed1", "source_only/seed0",
                             "source_only/seed1"]
    ssl = tmp_path / "ssl"
    done = pnl_da("ssl", "mnist-sample", "--labels", "20", "--multirun",
                  "method=supervised,fixmatch", *SHORT, "--out", ssl)
    assert done.returncode == 0, done.stderr
    assert finished(ssl) == ["fixmatch/seed0", "supervised/seed0"]


@pytest.mark.parametrize("preset,tasks,gpus", [("slurm_gpu", 1, 1), ("slurm_8gpu", 8, 8)])
def test_the_slurm_presets_compose_into_submitits_launcher(preset, tasks, gpus):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pnl_da.config import config_dir, register_schemas
    from pnl_da.engine.sweep import check_launchers

    check_launchers([f"hydra/launcher={preset}"])  # installed: no refusal
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = hydra_compose("config", overrides=[f"hydra/launcher={preset}"],
                                return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node) == (tasks, gpus)
    assert launcher.signal_delay_s == 120 and launcher.max_num_timeout == 20


def test_a_sweep_optimises_a_label_free_score_never_a_target_label_metric(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--multirun", "method.k=2,3",
                           "--objective", "accuracy", *SHORT)
    assert_one_line_error(code, err, 2, "never a target-label metric", "snd")
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--multirun",
                           "method.k=choice(2,3)", "hydra/sweeper=optuna", *SHORT)
    assert_one_line_error(code, err, 2, "needs the score to optimise", "--objective")
    out = tmp_path / "optuna"
    done = pnl_da("run", "digits", "uci->ms", "--multirun", "method.k=choice(2,3)",
                  "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "--objective", "im",
                  *SHORT, "--out", out)
    assert done.returncode == 0, done.stderr
    runs = {p.parent: json.loads(p.read_text()) for p in out.rglob("result.json")}
    assert runs and all("method.k=" in str(folder) for folder in runs)
    best = max(runs.items(), key=lambda kv: kv[1]["validation"]["im"])
    assert f"chosen by im (higher is better, no target label read): {best[0]}" in done.stderr
    value = float(re.search(r"Best value: (\S+)", done.stdout + done.stderr).group(1))
    assert value == pytest.approx(best[1]["validation"]["im"])
