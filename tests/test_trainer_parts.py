"""The parts the trainer calls, on their own: the schedule factory, the run log and the
checkpoint saver's resume policy (the trainer's use of them: test_schedule, test_resume,
test_faults)."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from pnl_da.config import Schedule
from pnl_da.engine.checkpoint import LAST, PREVIOUS
from pnl_da.engine.metrics_log import METRICS, RunLog, metrics_records
from pnl_da.engine.saver import CheckpointSaver
from pnl_da.engine.schedule import SCHEDULES, create_schedule
from pnl_da.errors import DataError, UsageError
from tests.conftest import one_line_error

TCFG = SimpleNamespace(lr=0.1, lr_gamma=0.001, lr_decay=0.75, schedule="inverse")


def test_every_registered_schedule_is_a_config_choice_and_starts_at_the_full_rate():
    assert set(Schedule.values()) == set(SCHEDULES) >= {"inverse", "cosine", "fixmatch_cosine"}
    for name in SCHEDULES:
        schedule = create_schedule(SimpleNamespace(**{**vars(TCFG), "schedule": name}), 100)
        assert schedule.lr(0) == pytest.approx(0.1)
        assert schedule.lr(99) < schedule.lr(50) < schedule.lr(0)  # each one decays


def test_a_schedule_sets_each_group_at_its_multiplier_and_holds_after_the_last_step():
    schedule = create_schedule(SimpleNamespace(**{**vars(TCFG), "schedule": "cosine"}), 10)
    weight = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [weight], "lr_mult": 0.1},
                           {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_mult": 1.0}],
                          lr=1.0)
    assert schedule.apply([opt], 5) == pytest.approx(0.05)  # half way down a cosine
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.05])
    assert schedule.lr(10) == schedule.lr(20) == pytest.approx(0.0, abs=1e-12)
    inverse = create_schedule(TCFG, 10)
    assert inverse.lr(1000) == pytest.approx(0.1 * 2 ** -0.75)
    assert math.isclose(inverse.factor(0), 1.0)


def test_the_run_log_appends_records_and_a_resume_drops_the_later_ones(tmp_path):
    log = RunLog(tmp_path, tensorboard=False)
    for step in (2, 4, 6):
        log.write({"step": step, "lr": 0.1, "losses": {"cls": 1.0 / step}})
    assert [r["step"] for _, r in metrics_records(tmp_path / METRICS)] == [2, 4, 6]
    RunLog(tmp_path).resumed_at(4)
    assert [r["step"] for _, r in metrics_records(tmp_path / METRICS)] == [2, 4]
    assert not (tmp_path / "tensorboard").exists()


def test_a_run_log_of_another_process_or_without_a_folder_writes_nothing(tmp_path):
    RunLog(tmp_path, writes=False).write({"step": 1, "lr": 0.1})
    RunLog(None).write({"step": 1, "lr": 0.1})
    assert not (tmp_path / METRICS).exists()


def test_the_run_log_mirrors_every_number_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLog(tmp_path, tensorboard=True)
    log.write({"step": 3, "lr": 0.5, "grl_coeff": 0.25, "steps_per_s": None,
               "losses": {"cls": 2.0}, "accuracy": {"a": 50.0}})
    log.close()
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    assert set(board.Tags()["scalars"]) == {"train/lr", "train/grl_coeff", "losses/cls",
                                            "accuracy/a"}
    assert board.Scalars("losses/cls")[0].step == 3
    assert json.loads((tmp_path / METRICS).read_text())["grl_coeff"] == 0.25


class Domain:
    def __init__(self, name, digest):
        self.name, self.split, self.digest = name, "train", digest

    def fingerprint(self):
        return self.digest


def state(step):
    return {"step": step, "method": {"w": torch.full((2,), float(step))}}


def saver_for(run_dir, cfg_seed=0, digest="d1"):
    from tests.conftest import make_cfg

    source, target = Domain("uci", "s"), Domain("mnist-sample", digest)
    data = SimpleNamespace(source=source, target_train=target, target_eval=target)
    return CheckpointSaver(run_dir, make_cfg(f"seed={cfg_seed}"), data)


def test_the_saver_resumes_from_last_then_prev_and_keeps_the_replaced_file(tmp_path):
    saver = saver_for(tmp_path)
    assert saver.to_resume() is None
    with pytest.raises(UsageError) as excinfo:
        saver.to_resume(from_previous=True)
    assert "--resume-from prev" in one_line_error(excinfo)
    saver.save(state(1))
    saver.save(state(2))
    assert saver.to_resume() == tmp_path / LAST
    assert saver.read(saver.to_resume())["step"] == 2
    assert saver.read(saver.to_resume(from_previous=True))["step"] == 1
    aside = saver.set_last_aside()
    assert aside.is_file() and not (tmp_path / LAST).exists()
    assert saver.to_resume() == tmp_path / PREVIOUS  # a kill between the renames looks so


def test_the_saver_refuses_another_runs_checkpoint_naming_what_differs(tmp_path):
    saver_for(tmp_path).save(state(1))
    with pytest.raises(UsageError) as excinfo:
        saver_for(tmp_path, cfg_seed=1).read(tmp_path / LAST)
    assert "seed" in one_line_error(excinfo)
    with pytest.raises(DataError) as excinfo:
        saver_for(tmp_path, digest="d2").read(tmp_path / LAST)
    assert "target (training) mnist-sample" in one_line_error(excinfo)


def test_a_damaged_last_checkpoint_is_refused_offering_the_whole_previous_one(tmp_path):
    saver = saver_for(tmp_path)
    saver.save(state(1))
    saver.save(state(2))
    (tmp_path / LAST).write_bytes((tmp_path / LAST).read_bytes()[:100])
    with pytest.raises(DataError) as excinfo:
        saver.read(tmp_path / LAST)
    assert "(step 1) is whole" in one_line_error(excinfo)
    assert saver.read(tmp_path / PREVIOUS)["step"] == 1


def test_only_the_writing_process_changes_files(tmp_path):
    saver = saver_for(tmp_path)
    saver.writes = False
    saver.save(state(1))
    assert not (tmp_path / LAST).exists() and saver.set_last_aside() is None
