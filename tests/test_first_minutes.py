"""What a new user meets first: the CPU threads a run takes, its progress without a terminal,
errors in the order they can be acted on, and the help that says how to shorten a run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pnl_da.engine import progress, threads
from tests.conftest import make_cfg
from tests.fake_datasets import make_office31
from tests.test_cli import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["trainer.steps=4", "trainer.eval_every=2", "trainer.device=cpu"]

# -- the threads of a CPU run ---------------------------------------------------------------------


def test_the_thread_count_comes_from_the_option_then_the_environment_then_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.choose(0) == (threads.usable_cores(),
                                 f"the {threads.usable_cores()} core"
                                 f"{'s' if threads.usable_cores() != 1 else ''} this process may "
                                 "use")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun and joblib give their children
    assert threads.choose(0) == (1, "OMP_NUM_THREADS")
    assert threads.choose(3) == (3, "trainer.threads")  # the option wins


def test_idle_threads_sleep_unless_the_environment_already_chose(monkeypatch):
    for name in threads.WAIT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    threads.share_cores()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")  # the user's own choice is left alone
    threads.share_cores()
    assert "OMP_WAIT_POLICY" not in os.environ


def test_the_command_line_sets_passive_waiting_and_prints_and_records_the_threads(tmp_path):
    """A fresh process without any OpenMP setting: the run prints its choice, records it, and
    trainer.threads overrides it; nothing but the choice changes between the two runs' lines."""
    env = {k: v for k, v in os.environ.items()
           if k not in (*threads.WAIT_SETTINGS, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-m", "pnl_da", "run", "digits", "uci->ms", *SHORT,
                           "trainer.threads=1", "--out", str(tmp_path / "one")], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("cpu: "))
    assert line == ("cpu: 1 torch thread (trainer.threads; trainer.threads=N to change), "
                    "OMP_WAIT_POLICY=PASSIVE")
    assert json.loads((tmp_path / "one" / "env.json").read_text())["cpu_threads"] == 1


def test_threads_do_not_make_another_run_and_bad_values_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "run", "digits", "uci->ms", *SHORT, "trainer.threads=1",
                   "--out", str(out))[0] == 0
    # where a run trains, not what: the finished run is the same run with another count
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", *SHORT, "trainer.threads=2",
                           "--out", str(out), "--resume")
    assert code == 0 and "already finished" in err
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", *SHORT, "trainer.threads=-1",
                           "--out", str(tmp_path / "bad"))
    assert_one_line_error(code, err, 2, "'trainer.threads'", ">= 0")


# -- progress without a terminal ------------------------------------------------------------------

LINE = re.compile(r"^step (\d+)/(\d+) \((\d+)%\): ([\d.]+) steps/s, (\S+( \S+)?) left, "
                  r"loss ([\d.]+), acc ([\d.]+)%$")


def test_without_a_terminal_a_line_at_each_evaluation_and_never_a_carriage_return(capsys):
    from pnl_da.engine.tasks import load_data
    from pnl_da.engine.trainer import Trainer

    cfg = make_cfg("trainer.progress=true", "method=source_only", steps=9, eval_every=3)
    trainer = Trainer(cfg, load_data(cfg))
    trainer.fit()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [LINE.match(x) for x in err.splitlines() if x.startswith("step ")]
    assert all(lines), err
    assert [int(m.group(1)) for m in lines] == [3, 6, 9]
    assert all(int(m.group(2)) == 9 for m in lines)
    assert lines[-1].group(3) == "100" and lines[-1].group(5) == "0s"
    # the accuracy shown is the evaluation's, of the head the run predicts with
    final = trainer.evaluate()["heads"][cfg.method.predict]["accuracy"]
    assert float(lines[-1].group(8)) == pytest.approx(final, abs=0.005)


def test_a_line_at_least_every_interval_between_evaluations(capsys, monkeypatch):
    from pnl_da.engine.tasks import load_data
    from pnl_da.engine.trainer import Trainer

    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # every step is past the interval
    cfg = make_cfg("trainer.progress=true", "method=source_only", steps=6, eval_every=6)
    Trainer(cfg, load_data(cfg)).fit()
    err = capsys.readouterr().err
    steps = [int(x.split()[1].split("/")[0]) for x in err.splitlines() if x.startswith("step ")]
    assert steps == [1, 2, 3, 4, 5, 6]
    # before the first evaluation there is no score yet, and the line says so by leaving it out
    first = next(x for x in err.splitlines() if x.startswith("step 1/"))
    assert "acc" not in first and "loss " in first and "left" in first


def test_on_a_terminal_the_bar_and_no_lines(capsys):
    class Terminal:
        text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    screen = Terminal()
    shown = progress.Progress(True, 100, 0, "pnl", stream=screen)
    shown.update(50, 0.25, "acc 91.00%")
    shown.line(50, 0.25, "acc 91.00%")
    shown.close()
    assert "step 50/100" not in screen.text and "50/100" in screen.text
    assert "acc=91.00%" in screen.text and "loss=0.250" in screen.text
    quiet = progress.Progress(False, 100, 0, "pnl", stream=screen)
    before = screen.text
    quiet.line(10, 0.5, None)
    assert screen.text == before and quiet.bar is None


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59.4, "59s"), (61, "1m 01s"),
                                          (3599, "59m 59s"), (3661, "1h 01m")])
def test_durations_read_as_a_person_would_write_them(seconds, text):
    assert progress.duration(seconds) == text


# -- errors in the order a user can act on --------------------------------------------------------

def test_missing_office31_data_is_named_before_the_pretrained_weights(tmp_path, capsys,
                                                                        monkeypatch):
    """The README's first example with no data and no network: the data, and how to get it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights cannot be fetched either
    code, _, err = run_cli(capsys, "run", "office31", "A->W", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, 3, "office31")
    assert "weights" not in err and "pnl-da download office31" in err
    assert not (tmp_path / "run").exists()
    # a weights file that does not exist is a bad option: named before the data
    code, _, err = run_cli(capsys, "run", "office31", "A->W", "--data-root", str(tmp_path),
                           "backbone.weights=/nowhere/model.safetensors",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, 3, "weights file not found: /nowhere/model.safetensors")
    # with the data there, the weights are the cause, still before anything is written
    make_office31(tmp_path / "data")
    code, _, err = run_cli(capsys, "run", "office31", "A->W", "--data-root",
                           str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    # (the images were decoded into the cache first, which says so: kept for the next try)
    last = err.strip().splitlines()[-1]
    assert code == 3 and "Traceback" not in err, err
    assert last.startswith("pnl-da: error: pretrained weights for 'resnet50")
    assert "cannot be fetched (HF_HUB_OFFLINE is set)" in last
    assert not (tmp_path / "run").exists()


def test_a_folder_of_runs_names_the_runs_inside_it(tmp_path, capsys):
    for name in ("digits/uci2ms/pnl/seed0", "demo"):
        assert run_cli(capsys, "run", "digits", "uci->ms", *SHORT, "trainer.progress=false",
                       "--out", str(tmp_path / "runs" / name))[0] == 0
    for command in ("analyze", "evaluate"):
        code, _, err = run_cli(capsys, command, str(tmp_path / "runs"))
        assert_one_line_error(code, err, 2, "2 finished runs, not one run",
                              str(tmp_path / "runs" / "demo"),
                              str(tmp_path / "runs" / "digits" / "uci2ms" / "pnl" / "seed0"))
        assert "--resume" not in err  # finishing the parent folder as a run is no advice
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "analyze", str(empty))
    assert_one_line_error(code, err, 2, "not a run folder", "no runs below it")


def test_report_on_one_run_writes_beside_it(tmp_path, capsys):
    run = tmp_path / "runs" / "demo"
    assert run_cli(capsys, "run", "digits", "uci->ms", *SHORT, "trainer.progress=false",
                   "--out", str(run))[0] == 0
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, out, err = run_cli(capsys, "report", str(run))
    assert code == 0, err
    beside = tmp_path / "runs" / "demo-report"
    assert (beside / "report.md").is_file() and str(beside / "report.md") in out
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing inside


@pytest.mark.parametrize("command", ["run", "ssl"])
def test_help_says_how_to_shorten_a_run(command, capsys):
    from pnl_da.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A shorter run: add trainer.steps=N" in text and "trainer.threads=N" in text
