"""Nothing lost: each fault a cluster run meets, injected, then the run resumed and compared.

Signals and SIGKILL hit real processes (``python -m pnl_da``), with one torch thread each so
that a resumed run can be compared bit for bit with an uninterrupted one made the same way.
Write failures are injected at each write site, and where this machine allows, met for real
on a small tmpfs (in a private mount namespace: nothing is left mounted).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pnl_da.engine.checkpoint import LAST, PREVIOUS, checkpoint_step, load_checkpoint
from pnl_da.engine.metrics_log import metrics_records
from tests.fake_datasets import make_office31
from tests.test_cli import RUN_LINES, assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ["run", "digits", "uci->ms"]
FAST = ["trainer.steps=4", "trainer.eval_every=2", "trainer.progress=false",
        "trainer.device=cpu"]
# 72 px: above the size held in memory, so that the data workers' path is the one tested
OFFICE = ["run", "office31", "A->W", "backbone.name=test_resnet", "backbone.pretrained=false",
          "data.image_size=72", "trainer.batch_size=4", "data.workers=2",
          "trainer.progress=false", "trainer.device=cpu"]
TIMINGS = ("steps_per_s", "data_wait_fraction")


# -- helpers ------------------------------------------------------------------------------------

def env_one_thread() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT)}


def cli(*argv, **kwargs) -> subprocess.CompletedProcess:
    """``python -m pnl_da ARGV`` in a process of its own, one torch thread."""
    return subprocess.run([sys.executable, "-m", "pnl_da", *map(str, argv)], cwd=ROOT,
                          env=env_one_thread(), capture_output=True, text=True, timeout=600,
                          **kwargs)


def start(*argv) -> subprocess.Popen:
    """The run as a terminal's foreground job, whose Ctrl-C a SIGINT stands for: a shell's
    background job (``pytest &``, ``nohup``) starts with SIGINT ignored, and pnl-da rightly
    keeps it ignored, so the child gets the default disposition back."""
    return subprocess.Popen([sys.executable, "-m", "pnl_da", *map(str, argv)], cwd=ROOT,
                            env=env_one_thread(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def metrics(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        for key in TIMINGS:
            record.pop(key)
    return records


def assert_same_run(run: Path, reference: Path) -> None:
    """Final weights, result metrics and the log: bit for bit those of the reference."""
    a, b = (load_checkpoint(d / LAST)["method"] for d in (run, reference))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    results = [json.loads((d / "result.json").read_text()) for d in (run, reference)]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["heads"] == results[1]["heads"]
    assert metrics(run) == metrics(reference)


def leftovers(folder: Path) -> list[str]:
    """Temporary files and locks left in a folder (there must be none)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".lock")))


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


SHORT = [*DIGITS, "trainer.steps=6", "trainer.eval_every=2", "trainer.progress=false",
         "trainer.device=cpu"]


@pytest.fixture(scope="module")
def short_reference(tmp_path_factory) -> Path:
    """An uninterrupted run of SHORT (checkpoints at steps 2, 4 and 6), made in a process of
    its own like the runs compared with it."""
    reference = tmp_path_factory.mktemp("short") / "reference"
    done = cli(*SHORT, "--out", reference)
    assert done.returncode == 0, done.stderr
    return reference


# -- 1. SIGTERM / SIGINT ---------------------------------------------------------------------

def test_a_signal_checkpoints_the_step_under_way_and_resume_loses_no_step(tmp_path):
    # after the evaluation each stop waits for, 160 or more steps remain, so the signal lands
    # in training even on a loaded machine (with 80, a CI run on oversubscribed cores once
    # finished the resumed run before the signal arrived)
    args = [*DIGITS, "trainer.steps=240", "trainer.eval_every=40", "trainer.batch_size=16",
            "trainer.progress=false", "trainer.device=cpu"]
    # the uninterrupted reference runs beside the stopped ones: on the second core, and it only
    # slows them, which keeps the signals inside training
    reference = tmp_path / "reference"
    uninterrupted = start(*args, "--out", reference)
    out, steps = tmp_path / "run", [0]
    # SIGTERM (a cluster's preemption), then on the resumed run SIGINT (Ctrl-C)
    for signum, code, words in [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                (signal.SIGINT, 130, "interrupted (Ctrl-C)")]:
        process = start(*args, "--out", out, *(["--resume"] if steps[-1] else []))
        # training, after a checkpoint: of step 50, or after the stop the resumed one's at 100
        while len(metrics_records(out / "metrics.jsonl")) < len(steps):
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        process.send_signal(signum)
        _, err = process.communicate(timeout=300)
        assert process.returncode == code, err
        line = err.strip().splitlines()[-1]
        step = checkpoint_step(out / LAST)
        assert steps[-1] < step < 240
        assert line.startswith(f"pnl-da: {words} at step {step}; {out} keeps its checkpoint of "
                               f"step {step}; continue with: pnl-da run digits 'uci->ms' "), line
        assert line.endswith(f"--out {out} --resume"), line
        if steps[-1]:
            assert f"resuming {out} from step {steps[-1]}" in err  # not from a checkpoint before
        assert leftovers(out) == []
        steps.append(step)
    resumed = cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} from step {steps[-1]}" in resumed.stderr
    _, err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, err
    assert_same_run(out, reference)
    segments = json.loads((out / "env.json").read_text())["segments"]
    assert [s["from_step"] for s in segments] == steps  # where each segment started


# -- 2. SIGKILL, also during a checkpoint write ---------------------------------------------------

# Runs the command line, and SIGKILLs its own process in the middle of the second checkpoint
# write: half way through the temporary file, or between the two renames of the rotation.
KILLER = textwrap.dedent("""
    import io, os, signal, sys
    from pathlib import Path
    from pnl_da.engine import checkpoint
    from pnl_da.cli import main
    point, calls = sys.argv[1], {"n": 0}
    real_write, real_replace = checkpoint.atomic_write, os.replace

    def atomic_write(path, write, before_replace=None, **kwargs):
        calls["n"] += Path(path).name == "last.pt"
        if calls["n"] == 2 and point == "mid-write":
            def half(handle):
                buffer = io.BytesIO()
                write(buffer)
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_write(path, half, before_replace, **kwargs)
        return real_write(path, write, before_replace, **kwargs)

    def replace(src, dst):
        real_replace(src, dst)
        if point == "between-renames" and calls["n"] == 2 and str(dst).endswith("prev.pt"):
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.atomic_write, os.replace = atomic_write, replace
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("data,point", [("digits", "mid-write"), ("digits", "between-renames"),
                                        ("office", "mid-write")])
def test_sigkill_during_a_checkpoint_write_leaves_a_whole_one_and_resume_is_exact(
        tmp_path, short_reference, data, point):
    if data == "office":  # an image list through DataLoader workers
        make_office31(tmp_path / "data")
        args = [*OFFICE, "trainer.steps=6", "trainer.eval_every=2", "--data-root",
                tmp_path / "data"]
        reference = tmp_path / "reference"
        done = cli(*args, "--out", reference)
        assert done.returncode == 0, done.stderr
    else:
        args, reference = SHORT, short_reference
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLER, point, *map(str, args), "--out",
                             str(out)], cwd=ROOT, env=env_one_thread(), capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(leftovers(out)) == 2  # the temporary checkpoint, and the dead process's lock
    if point == "mid-write":
        assert checkpoint_step(out / LAST) == 2 and checkpoint_step(out / PREVIOUS) is None
    else:  # the old last.pt became prev.pt; the new one was not yet renamed
        assert not (out / LAST).exists() and checkpoint_step(out / PREVIOUS) == 2
    resumed = cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "removed 1 temporary file(s)" in resumed.stderr
    assert ("a checkpoint write was interrupted" in resumed.stderr) == (point != "mid-write")
    assert f"resuming {out} from step 2" in resumed.stderr
    assert leftovers(out) == []
    assert_same_run(out, reference)


def test_an_image_list_run_resumed_in_process_is_exact(tmp_path):
    """The DataLoader of a resumed run is created after the state is restored: it must not
    draw from the global generator (it has its own)."""
    from pnl_da.engine.tasks import compose, load_data
    from pnl_da.engine.trainer import Trainer

    make_office31(tmp_path / "data")
    cfg = compose(["benchmark=office31", "benchmark.source=amazon", "benchmark.target=webcam",
                   f"data.root={tmp_path / 'data'}", "method=dann", "trainer.steps=6",
                   "trainer.eval_every=3", *OFFICE[3:]])
    data = load_data(cfg)
    straight = Trainer(cfg, data, tmp_path / "straight")
    straight.fit()
    first = Trainer(cfg, data, tmp_path / "resumed")
    first.fit(stop_at=3)
    del first
    second = Trainer(cfg, data, tmp_path / "resumed")
    assert second.resume() and second.step == 3
    torch.rand(5)  # anything drawing from the global generator in between changes nothing
    second.fit()
    a, b = straight.method.state_dict(), second.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- 3. One writer per folder --------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from pnl_da.files import FolderLock
    lock = FolderLock(sys.argv[1])
    assert lock.acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("command", ["run", "compare"])
def test_a_folder_in_use_is_refused_naming_its_holder_and_a_dead_holder_never_blocks(
        capsys, tmp_path, command):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT,
                              env=env_one_thread(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    argv = ([*DIGITS, "method=source_only"] if command == "run" else
            ["compare", "digits", "uci->ms", "--methods", "source_only", "--seeds", "0"])
    try:
        code, _, err = run_cli(capsys, *argv, "--out", str(out), *FAST)
        what = "output folder" if command == "run" else "comparison folder"
        assert_one_line_error(code, err, 2, f"{what} {out} is in use by process {holder.pid}",
                              "wait for it to finish, or choose another --out")
        assert sorted(p.name for p in out.iterdir()) == [".pnl-da.lock"]  # nothing written
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind, its lock does not
        holder.wait()
    assert (out / ".pnl-da.lock").exists()
    code, _, err = run_cli(capsys, *argv, "--out", str(out), *FAST)
    assert code == 0, err
    assert leftovers(out) == []


def test_two_runs_started_on_one_folder_one_trains_the_other_exits_2(tmp_path):
    out = tmp_path / "run"
    args = [*DIGITS, "trainer.steps=200", "trainer.eval_every=100", "trainer.progress=false",
            "trainer.device=cpu", "--out", out]
    processes = [start(*args) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=600), p.stderr.read()) for p in processes)
    (won, _), (lost, message) = outcomes
    assert (won, lost) == (0, 2), outcomes
    assert f"output folder {out} is in use by process" in message
    assert message.count("\n") == 1
    metrics_steps = [r["step"] for r in metrics(out)]
    assert metrics_steps == [100, 200]  # one writer: nothing logged twice


def _build_cache(args):
    from pnl_da.data.image_cache import load_or_build
    from pnl_da.data.image_list import read_image_list

    base, cache = args
    images = read_image_list(base / "image_list/amazon.txt", 31)
    messages = []
    decoded = load_or_build(base, images, "amazon", 40, cache, workers=1, log=messages.append)
    return decoded.array.copy(), messages


def test_runs_decoding_one_domain_at_once_share_one_cache(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    base = make_office31(tmp_path, per_class=30)  # 90 images: long enough to overlap
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        (a, log_a), (b, log_b) = pool.map(_build_cache, [(base, tmp_path / "cache")] * 2)
    assert a.shape == (90, 40, 40, 3) and (a == b).all()
    decoded = [m for m in log_a + log_b if m.startswith("decoding")]
    assert len(decoded) == 1, log_a + log_b  # one process decoded, the other read its cache
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".u8"]


# -- 4. Full disk, read-only folder ----------------------------------------------------------

class _FailingFile:
    def __init__(self, handle, error):
        self._handle, self._error = handle, error

    def write(self, data):
        self._handle.write(bytes(data)[: len(data) // 2])  # part of it, as a full disk does
        raise OSError(self._error, os.strerror(self._error))

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def fail_writes(monkeypatch, name, nth: int, error: int = errno.ENOSPC) -> None:
    """Make the ``nth`` write of the file ``name`` (a file name, or a test of one) through
    pnl_da.files fail with ``error``, after writing part of what it was given."""
    import builtins

    import pnl_da.files

    seen = {"n": 0}

    def opening(file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        path = Path(file)
        destination = path.name[1:].rsplit(".", 2)[0] if path.name.endswith(".tmp") else \
            path.name
        if "r" not in mode and (name(destination) if callable(name) else destination == name):
            seen["n"] += 1
            if seen["n"] == nth:
                return _FailingFile(handle, error)
        return handle

    monkeypatch.setattr(pnl_da.files, "open", opening, raising=False)


@pytest.mark.parametrize("name,nth,kept", [
    ("last.pt", 2, 2), ("metrics.jsonl", 2, 2), ("result.json", 1, 4), ("per_class.csv", 1, 4),
    ("config.yaml", 1, None), ("env.json", 1, None)])
def test_a_full_disk_at_each_write_site_is_one_line_and_the_run_resumes(capsys, tmp_path,
                                                                        monkeypatch, name, nth,
                                                                        kept):
    reference = tmp_path / "reference"
    assert run_cli(capsys, *DIGITS, *FAST, "--out", str(reference))[0] == 0
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_writes(patch, name, nth)
        code, _, err = run_cli(capsys, *DIGITS, *FAST, "--out", str(out))
    where = out / LAST if name == "last.pt" else out / name
    if kept is None:
        assert_one_line_error(code, err, 1, f"cannot write {where} (No space left on device)",
                              "free some space, nothing was checkpointed: the same command "
                              "starts the run afresh")
        again = run_cli(capsys, *DIGITS, *FAST, "--out", str(out))
    else:
        assert_one_line_error(code, err, 1, f"cannot write {where} (No space left on device)",
                              f"free some space, {out} keeps its checkpoint of step {kept}: "
                              "continue with --resume")
        assert checkpoint_step(out / LAST) == kept  # the previous checkpoint, whole
        again = run_cli(capsys, *DIGITS, *FAST, "--out", str(out), "--resume")
    if out.exists():
        assert leftovers(out) == []
    assert again[0] == 0, again[2]
    assert_same_run(out, reference)


def test_a_read_only_folder_during_a_checkpoint_write_is_one_line(capsys, tmp_path,
                                                                  monkeypatch):
    out = tmp_path / "run"
    fail_writes(monkeypatch, "last.pt", 2, errno.EROFS)
    code, _, err = run_cli(capsys, *DIGITS, *FAST, "--out", str(out))
    assert_one_line_error(code, err, 1, "(Read-only file system)", "make it writable",
                          "keeps its checkpoint of step 2")


@pytest.mark.parametrize("site", ["allocate", "metadata"])
def test_a_full_disk_under_the_image_cache_is_a_data_error(capsys, tmp_path, monkeypatch, site):
    make_office31(tmp_path / "data")
    cache = tmp_path / "cache"
    if site == "allocate":  # where a sparse memory map would have died of SIGBUS
        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "posix_fallocate", full)
    else:  # the cache's record, written after its images
        fail_writes(monkeypatch, lambda name: name.startswith("amazon-") and
                    name.endswith(".json"), 1)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *OFFICE, "data.workers=0", f"data.cache_dir={cache}",
                           "--data-root", str(tmp_path / "data"), "--out", str(out))
    assert err.startswith("decoding 12 images of amazon")  # the progress line, then the error
    assert_one_line_error(code, err.split("\n", 1)[1], 3, "(No space left on device)",
                          "free some space", "data.cache_dir")
    assert not out.exists()  # nothing of the run was written
    assert leftovers(cache) == [] and not list(cache.glob("*.u8"))


SMALL_DISK = textwrap.dedent(r"""
    set -u
    disk=$1; shift; size=$1; shift; office=$1; shift
    mkdir -p "$disk" "$disk.cache"
    mount -t tmpfs -o size=$size tmpfs "$disk" || exit 99
    mount -t tmpfs -o size=1m tmpfs "$disk.cache" || exit 99
    # an image cache larger than its disk: ENOSPC from the allocation, not SIGBUS
    python -m pnl_da run office31 "A->W" backbone.name=test_resnet backbone.pretrained=false \
        trainer.device=cpu data.workers=0 --data-root "$office" data.cache_dir="$disk.cache" \
        --out "$disk.office" > /dev/null 2> "$disk.cache.err"
    echo $? > "$disk.cache.code"
    ls -A "$disk.cache" > "$disk.cache.left"
    run() { "$@" > /dev/null 2>> "$disk.err"; echo $? >> "$disk.codes"; }
    run python -m pnl_da "$@" --out "$disk/run"                  # fills the disk
    cp -a "$disk/run" "$disk.after"
    mount -o remount,ro "$disk"
    run python -m pnl_da "$@" --out "$disk/run" --resume         # read-only
    mount -o remount,rw,size=512m "$disk"                          # space freed
    run python -m pnl_da "$@" --out "$disk/run" --resume
    cp -a "$disk/run" "$disk.resumed"
""")


def _private_mounts() -> list[str] | None:
    """How to run a command in a mount namespace of its own, if this machine allows it."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def test_a_real_full_disk_then_a_read_only_one_then_space_freed(tmp_path, short_reference):
    prefix = _private_mounts()
    if prefix is None:  # the injected failures above cover every write site
        pytest.skip("no private mount namespace here (unshare -m / -rm refused)")
    args, reference = SHORT, short_reference
    make_office31(tmp_path / "data")  # 12 images: 2.4 MB decoded at 256x256
    size = (reference / LAST).stat().st_size
    # room for the run's small files and one checkpoint, not for a second one beside it
    room = f"{(int(size * 1.5) + 256 * 1024) // 1024}k"
    disk = tmp_path / "disk"
    subprocess.run([*prefix, "bash", "-c", SMALL_DISK, "-", str(disk), room,
                    str(tmp_path / "data"), *args], cwd=ROOT,
                   env={**env_one_thread(), "PATH": f"{Path(sys.executable).parent}:"
                        f"{os.environ['PATH']}"}, timeout=600, check=True)
    codes = (tmp_path / "disk.codes").read_text().split()
    errors = [line for line in (tmp_path / "disk.err").read_text().strip().splitlines()
              if not line.startswith(RUN_LINES)]  # each run's data, threads, progress
    assert codes == ["1", "2", "0"], errors
    assert "(No space left on device)" in errors[0] and "keeps its checkpoint of step 2" in \
        errors[0], errors[0]
    assert "cannot write to output folder" in errors[1] and "Read-only" in errors[1], errors[1]
    cache_error = (tmp_path / "disk.cache.err").read_text().strip().splitlines()[-1]
    assert (tmp_path / "disk.cache.code").read_text().split() == ["3"], cache_error
    assert "(No space left on device)" in cache_error and "data.cache_dir" in cache_error
    assert (tmp_path / "disk.cache.left").read_text().split() == []  # no partial cache, no lock
    after = tmp_path / "disk.after"
    assert checkpoint_step(after / LAST) == 2 and leftovers(after) == []
    assert_same_run(tmp_path / "disk.resumed", reference)


# -- 5. Corrupt state ---------------------------------------------------------------------------

@pytest.fixture
def unfinished(capsys, tmp_path):
    """A run with checkpoints of steps 2 (prev.pt) and 4 (last.pt) and no result, and an
    uninterrupted reference of it."""
    reference, out = tmp_path / "reference", tmp_path / "run"
    for folder in (reference, out):
        assert run_cli(capsys, *DIGITS, *FAST, "--out", str(folder))[0] == 0
    (out / "result.json").unlink()
    return out, reference


@pytest.mark.parametrize("damage,reason", [
    (lambda b: b[: len(b) // 2], "cut short"),
    (lambda b: b[:5000] + bytes([b[5000] ^ 1]) + b[5001:], "its checksum does not match"),
    (lambda b: os.urandom(len(b)), "not a checkpoint file")])
def test_a_damaged_checkpoint_is_refused_offering_the_previous_one(capsys, unfinished, damage,
                                                                   reason):
    out, reference = unfinished
    last = out / LAST
    last.write_bytes(damage(last.read_bytes()))
    before = digest(out)
    code, _, err = run_cli(capsys, *DIGITS, *FAST, "--out", str(out), "--resume")
    assert_one_line_error(code, err, 3, f"checkpoint {last} is unreadable ({reason}",
                          f"the previous checkpoint {out / PREVIOUS} (step 2) is whole",
                          "--resume-from prev", "not deleted")
    assert digest(out) == before  # nothing deleted or changed
    code, _, err = run_cli(capsys, *DIGITS, *FAST, "--out", str(out), "--resume-from", "prev")
    assert code == 0, err
    assert "was set aside as" in err and f"resuming {out} from step 2" in err
    assert [p.read_bytes() for p in (out / "checkpoints").glob("last-set-aside-*.pt")] == \
        [before[str(LAST)]]  # the damaged file, kept
    assert_same_run(out, reference)


def test_a_checkpoint_of_another_configuration_is_refused(capsys, tmp_path, unfinished):
    out, _ = unfinished
    other = tmp_path / "other"
    assert run_cli(capsys, *DIGITS, *FAST, "seed=1", "--out", str(other))[0] == 0
    shutil.copy(other / LAST, out / LAST)
    before = digest(out)
    code, _, err = run_cli(capsys, *DIGITS, *FAST, "--out", str(out), "--resume")
    assert_one_line_error(code, err, 2, f"checkpoint {out / LAST} was made with another "
                          "configuration (seed: 1 in the checkpoint, 0 now)")
    assert digest(out) == before


def test_a_data_list_changed_since_the_run_started_is_refused(capsys, tmp_path):
    make_office31(tmp_path / "data")
    args = [*OFFICE, "data.workers=0", "trainer.steps=4", "trainer.eval_every=2",
            "--data-root", str(tmp_path / "data")]
    out = tmp_path / "run"
    assert run_cli(capsys, *args, "--out", str(out))[0] == 0
    (out / "result.json").unlink()
    listing = tmp_path / "data/office31/image_list/amazon.txt"
    listing.write_text("".join(listing.read_text().splitlines(keepends=True)[:-1]))
    before = digest(out)
    code, _, err = run_cli(capsys, *args, "--out", str(out), "--resume")
    assert err.startswith("decoding 11 images of amazon")  # the new list has its own cache
    assert_one_line_error(code, err.split("\n", 1)[1], 3, "the data changed since checkpoint "
                          f"{out / LAST} was written: source amazon (all);", "restore the data")
    assert digest(out) == before


# -- 6. NaN / Inf ------------------------------------------------------------------------------

def test_on_nan_skip_skips_the_steps_and_counts_them(capsys, tmp_path, monkeypatch):
    from pnl_da.methods.source_only import SourceOnly as Method

    real = Method.losses

    def sometimes_nan(self, batch, step):
        losses = real(self, batch, step)
        if step in (0, 1):  # the first two steps of four
            losses["cls"] = losses["cls"] * float("nan")
        return losses

    monkeypatch.setattr(Method, "losses", sometimes_nan)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *DIGITS, "method=source_only", *FAST,
                           "trainer.on_nan=skip", "--out", str(out))
    assert code == 0, err
    assert [(r["step"], r["skipped_steps"]) for r in metrics(out)] == [(2, 2), (4, 0)]
    assert json.loads((out / "result.json").read_text())["skipped_steps"] == 2
    state = load_checkpoint(out / LAST)["method"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    code, _, err = run_cli(capsys, *DIGITS, "method=source_only", *FAST, "--out",
                           str(tmp_path / "stops"))
    assert_one_line_error(code, err, 1, "loss term 'cls' is nan at step 1",
                          "nothing was checkpointed")


# -- 7. The soak benchmark, small -------------------------------------------------------------

def test_soak_of_four_runs_on_two_workers_loses_nothing(tmp_path):
    out = tmp_path / "soak.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/soak.py"), "--runs", "4",
                           "--configs", "1", "--max-faults", "1", "--jobs", "2", "--out",
                           str(out)], cwd=ROOT,
                          env=env_one_thread(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    table = out.read_text()
    for row in ("| runs | 4 |", "| runs bitwise equal to the reference | 4 |",
                "| files lost | 0 |", "| stale temporary files and locks | 0 |",
                "| unexpected exit codes | 0 |"):
        assert row in table, table


def test_a_skipped_step_leaves_weights_and_batchnorm_statistics_as_they_were(monkeypatch):
    from pnl_da.engine.tasks import load_data
    from pnl_da.engine.trainer import Trainer
    from pnl_da.methods.base import Method
    from tests.conftest import make_cfg

    cfg = make_cfg("method=dann", "backbone=dtn", "trainer.on_nan=skip")
    trainer = Trainer(cfg, load_data(cfg))
    assert trainer.train_step(0) is not None
    before = {k: v.clone() for k, v in trainer.method.state_dict().items()}
    assert any(k.endswith("running_mean") for k in before)  # BatchNorm, updated by a forward
    real = Method.losses
    monkeypatch.setattr(Method, "losses", lambda self, batch, step: {
        **real(self, batch, step), "transfer": torch.tensor(float("inf"))})
    assert trainer.train_step(1) is None
    after = trainer.method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
