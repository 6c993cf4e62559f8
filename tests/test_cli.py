"""The command line's contract: one-line errors with the documented exit codes, nothing lost."""

import hashlib
import json
import pickle
import subprocess
import sys

import pytest
import torch

from pnl_da.cli import main

FAST = ["trainer.steps=4", "trainer.eval_every=2", "trainer.progress=false",
        "trainer.device=cpu"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# what a run prints on stderr besides an error: its data line, its CPU threads, its progress
RUN_LINES = ("input ", "cpu: ", "step ")


def assert_one_line_error(code, err, expected_code, *fragments):
    """The error is one line; a run that failed while training printed only what a run
    prints as it starts (its data line ``input 28x28, ...``, its CPU threads ``cpu: ...``) and
    its progress lines (``step 50/3000 ...``) before it."""
    assert code == expected_code, err
    lines = [line for line in err.strip().splitlines() if not line.startswith(RUN_LINES)]
    assert len(lines) == 1, err
    assert lines[0].startswith("pnl-da: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("argv,code,fragments", [
    (["run", "mnistx", "a->b"], 2, ["unknown benchmark 'mnistx'", "digits"]),
    (["run", "digits", "uci"], 2, ["SOURCE->TARGET"]),
    (["run", "digits", "uci->kmnist"], 2, ["unknown domain 'kmnist'", "mnist-sample"]),
    (["run", "digits", "mnist->m"], 2, ["itself"]),
    (["run", "digits", "uci->ms", "method=fixmatchx"], 2, ["unknown method 'fixmatchx'"]),
    (["run", "digits", "uci->ms", "trainer.stepz=5"], 2, ["unknown configuration key",
                                                           "trainer.stepz"]),
    (["run", "digits", "uci->ms", "method=dann", "method.k=3"], 2, ["method.k"]),
    (["run", "digits", "uci->ms", "trainer.steps=many"], 2, ["bad value 'many'",
                                                              "trainer.steps"]),
    (["run", "digits", "uci->ms", "method.selection=best"], 2, ["method.selection",
                                                                 "random"]),
    (["run", "digits", "uci->ms", "+trainer.extra=1"], 2, ["keys are fixed"]),
    (["run", "digits", "uci->ms", "--bogus"], 2, ["--bogus"]),
    (["compare", "digits", "uci->ms", "--methods", "dann,nope"], 2, ["unknown method 'nope'"]),
    (["compare", "digits", "uci->ms", "method.kk=2"], 2, ["method.kk"]),
    (["download", "office99"], 2, ["unknown dataset 'office99'", "office31", "cifar10"]),
    # numbers that would crash after the run folder is written, or train nothing
    (["run", "digits", "uci->ms", "method.disc_hidden=0"], 2, ["method.disc_hidden", "> 0"]),
    (["run", "digits", "uci->ms", "method.tau=2"], 2, ["method.tau", "<= 1"]),
    (["run", "digits", "uci->ms", "data.strong.erase=5"], 2, ["data.strong.erase"]),
    (["run", "digits", "uci->ms", "trainer.lr_gamma=-1"], 2, ["trainer.lr_gamma"]),
    (["run", "digits", "uci->ms", "trainer.momentum=5"], 2, ["trainer.momentum"]),
    (["run", "digits", "uci->ms", "trainer.device=foo"], 2, ["trainer.device", "cuda:N"]),
    (["run", "digits", "uci->ms", "method.heads=3"], 2, ["two classifier heads"]),
    (["run", "digits", "uci->ms", "method=dann", "method.predict=b"], 2, ["needs two heads",
                                                                          "method.predict=a"]),
    pytest.param(["run", "digits", "uci->ms", "trainer.device=cuda"], 2,
                 ["no CUDA device is visible", "trainer.device=cpu"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is visible")),
    (["run", "digits", "uci->ms", "method.k=10"], 2, ["method.k=10", "10 classes",
                                                       "method.k=9"]),
    # options that would change nothing: refused, not silently kept in config.yaml
    (["run", "digits", "uci->ms", "method=dann", "method.entropy=true"], 2,
     ["'method.entropy=true' changes nothing", "CDAN"]),
    (["run", "digits", "uci->ms", "method.align=none", "method.grl_alpha=5"], 2,
     ["method.grl_alpha=5", "method.align=none"]),
    (["run", "digits", "uci->ms", "method.tau=0.1"], 2, ["method.selection=random"]),
    (["ssl", "mnist-sample", "--labels", "20", "method.replacement=true"], 2,
     ["changes nothing", "method.selection=targeted"]),
    (["compare", "digits", "uci->ms", "--methods", "dann,source_only", "method.entropy=true"], 2,
     ["changes nothing in the methods compared (dann, source_only)"]),
    # the task is the command's arguments: an override may not swap it or resize its head
    (["run", "digits", "uci->ms", "benchmark.source=mnist-sample", "benchmark.target=uci"], 2,
     ["would change the task"]),
    (["run", "digits", "uci->ms", "benchmark.num_classes=12"], 2, ["benchmark.num_classes=12"]),
    (["compare", "digits", "uci->ms", "benchmark.target=uci"], 2, ["would change the task"]),
    (["compare", "digits", "uci->ms", "--seeds="], 2, ["--seeds"]),
    (["ssl", "mnist-sample", "--labels", "20", "--out", ""], 2, ["--out is empty"]),
    (["compare", "digits", "uci->ms", "--methods=,"], 2, ["names no method"]),
])
def test_usage_errors(capsys, tmp_path, argv, code, fragments):
    got, out, err = run_cli(capsys, *argv, "--out", str(tmp_path / "out")) if argv[0] in (
        "run", "compare") else run_cli(capsys, *argv)
    assert_one_line_error(got, err, code, *fragments)
    assert not (tmp_path / "out").exists()  # nothing written for bad input


def test_missing_dataset_is_exit_3_and_names_the_download_command(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "digits", "mnist->usps", "--data-root",
                           str(tmp_path / "empty"), "--out", str(tmp_path / "out"), *FAST)
    assert_one_line_error(code, err, 3, "pnl-da download digits", "MNIST/raw")
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_data_root_that_is_a_file_is_exit_3(capsys, tmp_path):
    root = tmp_path / "file"
    root.write_text("not a folder")
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--data-root", str(root),
                           "--out", str(tmp_path / "out"), *FAST)
    assert_one_line_error(code, err, 3, "is a file")


def test_unwritable_output_folder_is_exit_2(capsys, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--out",
                           str(blocker / "run"), *FAST)
    assert_one_line_error(code, err, 2, "cannot write to output folder")
    assert blocker.read_text() == "a file where a folder should be"


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_finished_run_is_never_overwritten_and_can_be_evaluated(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only",
                                "--out", str(out), *FAST)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "source_only" and result["steps"] == 4
    assert {"accuracy", "mean_class_accuracy"} <= result["metrics"].keys()
    for name in ("config.yaml", "env.json", "metrics.jsonl", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    env = json.loads((out / "env.json").read_text())
    assert env["cpu"] and env["cpu_threads"] >= 1  # the processor: CPU numbers depend on it
    assert "git_tracked_files_changed" in env  # None outside a checkout, else a list
    before = _digest(out)
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out",
                           str(out), *FAST)
    assert_one_line_error(code, err, 2, "already holds a finished run")
    # another configuration is named, not passed off as "its result.json has the numbers"
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=dann", "--out", str(out),
                           *FAST)
    assert_one_line_error(code, err, 2, "holds a run of another configuration",
                          "method.name: 'source_only' in the run, 'dann' now")
    assert _digest(out) == before

    code, stdout, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1]) == result["metrics"]
    # mnist-sample has no train/test split here: all its images, only when asked for
    code, stdout, err = run_cli(capsys, "evaluate", str(out), "--split", "all")
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1]) == result["metrics"]
    code, _, err = run_cli(capsys, "evaluate", str(out), "--split", "train")
    assert_one_line_error(code, err, 2, "no train split", "--split all")


def test_a_run_that_stopped_before_its_first_checkpoint_does_not_block_the_next(capsys,
                                                                                 tmp_path):
    # what a crash or a killed compare leaves: the config and environment, no checkpoint
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("method:\n  disc_hidden: 0\n")
    (out / "env.json").write_text("{}")
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out",
                           str(out), *FAST)
    assert code == 0, err
    assert "source_only" in (out / "config.yaml").read_text()
    # once a checkpoint exists the folder is a run: kept, and resumed only with --resume
    (out / "result.json").unlink()
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out",
                           str(out), *FAST)
    assert_one_line_error(code, err, 2, "unfinished run", "--resume")


def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_finite_state(capsys,
                                                                              tmp_path):
    import math

    from pnl_da.engine.checkpoint import load_checkpoint

    out = tmp_path / "run"
    # no bottleneck: with lr 1e9 its BatchNorm overflows the weights already in step 2, where
    # LeNet alone keeps finite weights and a finite loss until step 3
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only",
                           "trainer.lr=1e9", "backbone.bottleneck_dim=0", "--out", str(out),
                           *FAST)
    # the first non-finite step and term are named, though the check runs every 50 steps
    assert_one_line_error(code, err, 1, "training diverged", "loss term 'cls' is nan at step 3",
                          "trainer.lr", "trainer.on_nan=skip", "checkpoint of step 2")
    assert not (out / "result.json").exists()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [2]  # nothing logged after the loss went NaN
    assert all(math.isfinite(v) for r in logged for v in r["losses"].values())
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["method"].values()
               if t.is_floating_point())


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("stop_at,kept", [(1, False), (3, True)])
def test_ctrl_c_says_what_is_kept_and_how_to_go_on(capsys, tmp_path, monkeypatch, command,
                                                   stop_at, kept):
    from pnl_da.engine.trainer import Trainer

    original = Trainer.train_step

    def interrupted_at(self, step):  # Ctrl-C during step `stop_at` (checkpoints: every 2)
        if step + 1 == stop_at:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at)
    args = (["run", "digits", "uci->ms", "method=source_only"] if command == "run" else
            ["compare", "digits", "uci->ms", "--methods", "source_only", "--seeds", "0"])
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "out"), *FAST)
    assert code == 130
    line = err.strip().splitlines()[-1]
    assert line.startswith("pnl-da: interrupted")
    assert ("keeps its checkpoint of step 2" in line) == kept, line
    if kept and command == "run":  # the command to go on with, to copy and paste
        assert line.endswith("trainer.device=cpu --resume") and f"--out {tmp_path / 'out'}" in line
    if kept and command == "compare":
        assert "run the same command again" in line
    assert ("nothing to resume" in line) == (not kept), line
    assert ("--resume" in line) == (kept and command == "run"), line
    # and the advice works: the same command (with --resume for a run) finishes the run
    monkeypatch.setattr(Trainer, "train_step", original)
    again = list(args) + (["--resume"] if kept and command == "run" else [])
    code, _, err = run_cli(capsys, *again, "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, err


def test_an_error_raised_while_a_signal_unwinds_is_reported_as_the_stop(capsys, tmp_path,
                                                                        monkeypatch):
    """A signal outside the loop can leave a library half done, and its unwinding can raise
    another error: still the stop (exit 130, what is kept, how to go on), naming that error."""
    import signal as signals_module

    import pnl_da.engine.run as run_module

    def broken_on_the_way_out(*args, **kwargs):  # Ctrl-C while writing the result
        try:
            signals_module.raise_signal(signals_module.SIGINT)
        except KeyboardInterrupt:
            raise RecursionError("maximum recursion depth exceeded") from None
        raise AssertionError("the handler did not stop the process")

    monkeypatch.setattr(run_module, "per_class_table", broken_on_the_way_out)
    out = tmp_path / "out"
    args = ["run", "digits", "uci->ms", "method=source_only", "--out", str(out), *FAST]
    # Ctrl-C reaches a terminal's foreground job; tests started as a shell's background job
    # (`make test &`) run with SIGINT ignored, which pnl-da rightly keeps ignored
    previous = signals_module.signal(signals_module.SIGINT, signals_module.default_int_handler)
    try:
        code, _, err = run_cli(capsys, *args)
    finally:
        signals_module.signal(signals_module.SIGINT, previous)
    line = err.strip().splitlines()[-1]
    assert code == 130, err
    assert line.startswith("pnl-da: interrupted (Ctrl-C) (on the way out: RecursionError: "
                           "maximum recursion depth exceeded)"), line
    assert "keeps its checkpoint of step 4" in line and line.endswith("--resume"), line
    assert not (out / "result.json").exists()
    monkeypatch.undo()
    code, _, err = run_cli(capsys, *args, "--resume")
    assert code == 0, err
    assert (out / "result.json").is_file()


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(capsys, tmp_path):
    # metrics.jsonl is appended, not replaced: a process killed mid-write leaves half a line
    out = tmp_path / "run"
    assert run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out", str(out),
                   *FAST)[0] == 0
    (out / "result.json").unlink()
    whole = (out / "metrics.jsonl").read_text()
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "lo')
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out",
                           str(out), "--resume", *FAST)
    assert code == 0, err
    assert (out / "metrics.jsonl").read_text() == whole


def test_a_checkpoint_cut_short_is_a_data_error_for_resume_and_evaluate(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out", str(out),
                   *FAST)[0] == 0
    checkpoint = out / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "evaluate", str(out))
    assert_one_line_error(code, err, 3, f"checkpoint {checkpoint} is unreadable",
                          "delete its run folder")
    (out / "result.json").unlink()
    before = _digest(out)
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out",
                           str(out), "--resume", *FAST)
    assert_one_line_error(code, err, 3, "is unreadable")
    assert _digest(out) == before  # nothing of the run was touched


def test_evaluate_on_a_folder_that_is_not_a_finished_run(capsys, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("seed: 0\n")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "half"))
    assert_one_line_error(code, err, 2, "not a finished run")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "nowhere"))
    assert_one_line_error(code, err, 2, "not a folder")


def test_choices_are_stored_as_the_code_compares_them():
    from pnl_da.engine.tasks import compose

    cfg = compose(["benchmark=digits", "benchmark.source=uci", "benchmark.target=mnist-sample",
                   "trainer.schedule=Cosine", "method.exchange=Both", "method.predict=A",
                   "trainer.channels_last=true"])
    assert (cfg.trainer.schedule, cfg.method.exchange, cfg.method.predict) == (
        "cosine", "both", "a")
    assert cfg.trainer.channels_last == "true"  # YAML's true arrives as 'True'


def test_compare_counts_a_repeated_seed_or_method_once(capsys, tmp_path):
    code, stdout, err = run_cli(capsys, "compare", "digits", "uci->ms", "--methods",
                                "source_only,source_only", "--seeds", "0,0", "--out",
                                str(tmp_path), *FAST)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "source_only").iterdir()) == ["seed0"]
    rows = [line for line in (tmp_path / "comparison.csv").read_text().splitlines()
            if line.startswith("source_only")]
    assert len(rows) == 1, rows
    # the comparison folder is not a run: evaluate points to one of its runs
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert_one_line_error(code, err, 2, "comparison folder", str(tmp_path / "source_only"))
    # a kept run with other settings is refused before anything else trains
    code, _, err = run_cli(capsys, "compare", "digits", "uci->ms", "--methods",
                           "dann,source_only", "--seeds", "0", "--out", str(tmp_path), *FAST,
                           "trainer.lr=0.02")
    assert_one_line_error(code, err, 2, "another configuration", "trainer.lr")
    assert not (tmp_path / "dann").exists()


def test_compare_gives_an_option_only_to_the_methods_it_changes(capsys, tmp_path):
    from omegaconf import OmegaConf

    code, _, err = run_cli(capsys, "compare", "digits", "uci->ms", "--methods", "dann,cdan",
                           "--seeds", "0", "method.entropy=true", "--out", str(tmp_path), *FAST)
    assert code == 0, err
    entropy = {m: OmegaConf.load(tmp_path / m / "seed0" / "config.yaml").method.entropy
               for m in ("dann", "cdan")}
    assert entropy == {"dann": False, "cdan": True}


def test_resume_refuses_another_configuration(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out", str(out),
                   *FAST)[0] == 0
    before = _digest(out)
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=source_only", "--out",
                           str(out), "--resume", *FAST, "trainer.lr=0.5")
    assert_one_line_error(code, err, 2, "trainer.lr")
    assert _digest(out) == before
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=dann", "--out",
                           str(out), "--resume", *FAST)
    assert_one_line_error(code, err, 2, "method.name: 'source_only' in the run, 'dann' now")
    assert _digest(out) == before


@pytest.mark.parametrize("mode,overrides", [("da", ["benchmark=digits"]),
                                             ("ssl", ["dataset=mnist-sample"])])
def test_a_run_saved_before_a_key_existed_still_matches_at_that_keys_default(mode, overrides):
    from pnl_da.config import to_yaml
    from pnl_da.engine.tasks import comparable, compose

    now = to_yaml(compose(overrides, mode=mode))
    older = now.replace("  cuda_graphs: false\n", "")  # as saved before the key existed
    assert older != now and comparable(older) == comparable(now)
    other = now.replace("cuda_graphs: false", "cuda_graphs: true")
    assert comparable(other) != comparable(older)


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pnl_da.cli", "run", "digits", "uci->uci"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    debug = subprocess.run([sys.executable, "-m", "pnl_da.cli", "run", "digits", "uci->uci",
                            "--debug"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_configs_are_found_from_any_working_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pnl_da.cli", "run", "digits", "uci->ms",
                           "backbone=dtn", "method=cdan", "--show-config"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: dtn" in proc.stdout and "image_size: 32" in proc.stdout
    assert "name: cdan" in proc.stdout and "steps: 3000" in proc.stdout


def test_list_shows_every_registered_name_in_its_section(capsys):
    from pnl_da.config import available
    from pnl_da.data.registry import BENCHMARKS
    from pnl_da.data.ssl_datasets import SSL_DATASETS
    from pnl_da.methods import METHODS

    def section(what):
        code, out, _ = run_cli(capsys, "list", what)
        assert code == 0
        return out.splitlines()

    methods = section("methods")
    ssl_at = methods.index("methods (pnl-da ssl):")
    for name in available("method"):
        assert f"  {name}: {METHODS[name].summary}" in methods[:ssl_at], name
    for name in available("method", "ssl"):
        summary = METHODS[name].ssl_summary or METHODS[name].summary
        assert f"  {name}: {summary}" in methods[ssl_at:], name
    backbones = section("backbones")
    ssl_at = backbones.index("backbones (pnl-da ssl):")
    assert {f"  {n}" for n in available("backbone")} <= set(backbones[:ssl_at])
    assert {f"  {n}" for n in available("backbone", "ssl")} <= set(backbones[ssl_at:])
    benchmarks = "\n".join(section("benchmarks"))
    for bench in BENCHMARKS.values():
        assert f"  {bench.name}: {bench.description}" in benchmarks
        for domain in bench.domains:
            assert f"    {domain.name}" in benchmarks
    datasets = section("datasets")
    for d in SSL_DATASETS.values():
        assert f"  {d.name}: {d.num_classes} classes; {d.description}" in datasets


def test_a_closed_pipe_ends_quietly(capsys, monkeypatch):
    import io

    class ClosedPipe(io.StringIO):  # stdout whose reader has gone, as under `| head -1`
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["list"]) == 141
    assert capsys.readouterr().err == ""  # no error line for a reader that stopped reading


def test_evaluate_a_run_on_standard_mnist_files_under_another_data_root(capsys, tmp_path):
    from tests.test_data import write_mnist

    labels = write_mnist(tmp_path / "other-root", n_train=30, n_test=20)
    out = tmp_path / "run"
    assert run_cli(capsys, "run", "digits", "uci->ms", "method=pnl", "--out", str(out),
                   *FAST)[0] == 0
    code, stdout, err = run_cli(capsys, "evaluate", str(out), "--domain", "mnist", "--split",
                                "test", "--data-root", str(tmp_path / "other-root"))
    assert code == 0, err
    assert "mnist (test, 20 images)" in stdout
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert set(metrics) == {"accuracy", "mean_class_accuracy"}
    # scored on exactly the 20 files of the other root: a whole number of them right
    correct = metrics["accuracy"] * len(labels) / 100
    assert len(labels) == 20 and abs(correct - round(correct)) < 1e-6
    code, _, err = run_cli(capsys, "evaluate", str(out), "--domain", "svhn", "--data-root",
                           str(tmp_path / "other-root"))
    assert_one_line_error(code, err, 3, "svhn")


# -- found by a user's acceptance pass ------------------------------------------------------

def test_debug_shows_the_traceback_and_keeps_the_exit_code(capsys):
    code, _, err = run_cli(capsys, "--debug", "ssl", "mnist-smaple", "--labels", "20")
    assert code == 2 and "Traceback" in err and "unknown SSL dataset 'mnist-smaple'" in err


def _corrupt_mnist(root, missing=()):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        for part in ("images-idx3", "labels-idx1"):
            name = f"{prefix}-{part}-ubyte"
            if name not in missing:
                (raw / name).write_bytes(b"not an idx file" * 7)


def test_corrupt_or_missing_mnist_files_are_data_errors_and_leave_no_run_folder(capsys,
                                                                                tmp_path):
    bad = tmp_path / "bad"
    _corrupt_mnist(bad)
    for argv in (["ssl", "mnist", "--labels", "20"], ["run", "digits", "uci->mnist"]):
        out = tmp_path / "runs" / "x"
        code, _, err = run_cli(capsys, *argv, "--data-root", str(bad), "--out", str(out), *FAST)
        assert_one_line_error(code, err, 3, "corrupt or truncated", str(bad / "MNIST" / "raw"))
        assert not (tmp_path / "runs").exists()
    partial = tmp_path / "partial"
    _corrupt_mnist(partial, missing=("t10k-images-idx3-ubyte",))
    code, _, err = run_cli(capsys, "ssl", "mnist", "--labels", "20", "--data-root", str(partial),
                           "--out", str(tmp_path / "runs" / "y"), *FAST)
    assert_one_line_error(code, err, 3, "missing MNIST/raw/t10k-images-idx3-ubyte")


@pytest.mark.parametrize("files", [{"metrics.jsonl": "mine\n", "notes.txt": "keep\n"},
                                   {"config.yaml": "my important config: 1\n"},
                                   {"config.yaml": "{[not yaml"},
                                   {"comparison.md": "a table\n"}])
def test_a_folder_that_is_not_a_pnl_da_run_is_refused_and_left_as_it_was(capsys, tmp_path,
                                                                          files):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    for resume in ([], ["--resume"]):
        code, _, err = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", "--out",
                               str(out), *resume, *FAST)
        assert_one_line_error(code, err, 2, str(out))
        assert "not a pnl-da run" in err or "holds a comparison" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    assert all((out / name).read_text() == text for name, text in files.items())


def test_run_files_get_the_mode_the_umask_gives_not_private(tmp_path):
    import os

    from pnl_da.files import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644


def test_a_failed_download_leaves_no_folder_it_made_empty(capsys, tmp_path, monkeypatch):
    from pnl_da.data import ssl_datasets
    from pnl_da.errors import DataError

    def offline(root):
        (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
        raise DataError("could not download cifar10 (no connection)")

    from dataclasses import replace

    monkeypatch.setitem(ssl_datasets.SSL_DATASETS, "cifar10",
                        replace(ssl_datasets.SSL_DATASETS["cifar10"], download=offline))
    code, _, err = run_cli(capsys, "download", "cifar10", "--data-root", str(tmp_path / "data"))
    assert_one_line_error(code, err, 3, "no connection")
    assert not (tmp_path / "data").exists()


def test_a_file_that_is_not_a_pnl_da_checkpoint_and_a_failed_write(tmp_path):
    from pnl_da.engine.checkpoint import load_checkpoint, save_checkpoint
    from pnl_da.errors import DataError
    from pnl_da.files import write_json

    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a pnl-da checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    target = tmp_path / "result.json"
    write_json(target, {"kept": True})
    checkpoint = tmp_path / "last.pt"
    save_checkpoint({"method": {}, "step": 1}, checkpoint)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a lambda: fails mid-write
        save_checkpoint({"method": {}, "step": 2, "hook": lambda: 0}, checkpoint)
    assert load_checkpoint(checkpoint)["step"] == 1  # the old file, whole
    assert json.loads(target.read_text()) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "other.pt", "result.json"]


def test_a_bad_option_is_named_before_the_output_folder_is_looked_at(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, _ = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", "--out", str(out),
                         *FAST)
    assert code == 0  # the folder now holds a finished run
    for option, words in (("method.k=10", "method.k=9"), ("backbone.name=notamodel",
                                                          "unknown backbone"),
                          ("data.image_size=32", "takes 28x28 images")):
        code, _, err = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", "--out",
                               str(out), option, *FAST)
        assert_one_line_error(code, err, 2, words)
    # resuming it as a domain-adaptation run says what it is, not a dump of two sections
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--out", str(out), "--resume",
                           *FAST)
    assert_one_line_error(code, err, 2, "the run is semi-supervised (pnl-da ssl), this command "
                          "is domain adaptation (pnl-da run)")
    # evaluate points from a run's checkpoints/ folder to the run, and an unfinished
    # semi-supervised run to `pnl-da ssl ... --resume`
    code, _, err = run_cli(capsys, "evaluate", str(out / "checkpoints"))
    assert_one_line_error(code, err, 2, f"pass the run's folder, {out}")
    (out / "result.json").unlink()
    code, _, err = run_cli(capsys, "evaluate", str(out))
    assert_one_line_error(code, err, 2, f"`pnl-da ssl ... --resume --out {out}`")


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == "pnl-da 0.1.0"


def test_numbers_are_rounded_once_when_shown_so_every_output_agrees(capsys, tmp_path):
    """result.json keeps the scores unrounded and the summary line rounds them once: storing
    88.7351 as 88.735 first printed 88.73 where ``evaluate`` (from the model) printed 88.74,
    and an error of 11.2649 as 11.27 beside 11.26."""
    from pnl_da.engine.tasks import compose, task_of

    scores = {"accuracy": 88.7351, "mean_class_accuracy": 77.4649}
    evaluation = {"heads": {"a": scores, "b": scores, "mean": scores}}
    fit = {"steps_trained": 4, "train_time_s": 1.0}
    task = task_of(compose(["benchmark=digits", "benchmark.source=uci",
                            "benchmark.target=mnist-sample", "method=pnl"]))
    da = task.summarize(evaluation, 1.0, fit, tmp_path, 4)
    assert da["metrics"] == scores and da["heads"]["mean"] == scores
    line = task.result_line(da, tmp_path)
    assert "accuracy 88.74% (mean class accuracy 77.46%" in line, line
    task = task_of(compose(["dataset=mnist-sample", "dataset.labels=20"], mode="ssl"))
    ssl = task.summarize(evaluation, 1.0, fit, tmp_path, 4)
    assert ssl["metrics"]["error"] == 100 - 88.7351 == ssl["heads"]["a"]["error"]
    line = task.result_line(ssl, tmp_path)
    assert "test error 11.26% of the final model" in line, line


def test_show_config_marks_the_options_that_change_nothing_and_stays_yaml(capsys):
    """DANN's configuration lists CDAN's options (one schema for both), and setting one is
    refused; --show-config says so beside each instead of offering them silently."""
    from omegaconf import OmegaConf

    code, out, _ = run_cli(capsys, "run", "digits", "uci->ms", "method=dann", "--show-config")
    assert code == 0
    method = {line.split(":")[0].strip(): line for line in
              out.split("\nmethod:\n")[1].split("\ntrainer:")[0].splitlines()}
    for key in ("entropy", "randomized", "randomized_dim"):
        assert "# inert: it is an option of CDAN's conditioning" in method[key], method[key]
    for key in ("trade_off", "disc_hidden", "grl_alpha", "name"):
        assert "#" not in method[key], method[key]
    assert OmegaConf.create(out).method.entropy is False  # comments keep it valid YAML
    code, out, _ = run_cli(capsys, "run", "digits", "uci->ms", "method=cdan", "--show-config")
    assert "entropy: false\n" in out and "randomized_dim: 1024  # inert" in out


def test_first_line_of_an_exception_is_one_line_cut_with_a_mark():
    from pnl_da.errors import first_line

    assert first_line(ValueError("")) == "" and first_line(ValueError("  \n ")) == ""
    assert first_line(ValueError("\n  size mismatch  \n  page two")) == "size mismatch"
    long = ValueError("x" * 120 + "\nmore")
    assert first_line(long) == "x" * 77 + "..." and len(first_line(long, 60)) == 60
    assert first_line(long, None) == "x" * 120


def test_a_run_into_the_folder_of_a_stopped_comparison_is_refused(capsys, tmp_path):
    """A comparison stopped before it wrote comparison.md leaves only <method>/seed<N>/ runs;
    a run given that folder trained into its top level beside them."""
    out = tmp_path / "cmp"
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method=dann", "--out",
                           str(out / "dann" / "seed0"), *FAST)
    assert code == 0, err
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    for resume in ([], ["--resume"]):
        code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "--out", str(out), *resume,
                               *FAST)
        assert_one_line_error(code, err, 2, "holds a comparison", "dann/seed0/")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_method_is_registered_from_its_own_file_with_its_options(tmp_path, monkeypatch):
    """A new method is one file (class + options dataclass) and one YAML: the registry finds
    the class in any module of pnl_da.methods, and its options become its schema."""
    from pnl_da import methods
    from pnl_da.config import method_schemas

    (tmp_path / "toy_method.py").write_text(
        "from dataclasses import dataclass\n"
        "from pnl_da.methods.options import MethodConfig\n"
        "from pnl_da.methods.base import Method\n\n"
        "@dataclass\nclass ToyConfig(MethodConfig):\n"
        "    name: str = 'toy'\n    strength: float = 0.5\n\n"
        "class Toy(Method):\n    name = 'toy'\n    options = ToyConfig\n")
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    found = methods._discover()
    assert found["toy"].options.__name__ == "ToyConfig"
    assert set(found) == set(methods.METHODS) | {"toy"}  # and every packaged method
    schemas = method_schemas()
    for name, cls in methods.METHODS.items():  # each packaged method's own dataclass
        assert schemas[name] is cls.options and schemas[name].__module__ == cls.__module__
    assert len({s for s in schemas.values()}) == len(schemas)


def test_env_json_names_the_commit_and_the_tracked_files_edited_since(tmp_path, monkeypatch):
    """A run made with edited code must not read as made with the commit alone."""
    import subprocess

    from pnl_da.engine.run import git_state

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no checkout above

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    assert git_state(tmp_path) == (None, None)  # not a checkout
    git("init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    git("add", "pkg/a.py")
    git("commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("not part of the code")
    assert git_state(tmp_path / "pkg") == (head, [])
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path / "pkg") == (head, ["pkg/a.py"])
