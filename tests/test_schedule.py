"""Learning-rate schedules: what a real run logs and what its optimiser actually uses."""

import json
import math

import pytest

from pnl_da.data.base import DomainData
from pnl_da.engine.tasks import RunData, load_data
from pnl_da.engine.trainer import Trainer
from tests.conftest import make_cfg

LR, GAMMA, DECAY = 0.02, 0.5, 0.75  # a steep gamma: the decay shows within a few steps


def inverse(step):
    """tllib's schedule, as documented in TrainerConfig: lr * (1 + gamma * step) ** -decay."""
    return LR * (1 + GAMMA * step) ** -DECAY


def cosine(step, total):
    """To 0 at the last step: 0.5 * lr * (1 + cos(pi * step / total))."""
    return 0.5 * LR * (1 + math.cos(math.pi * step / total))


def fixmatch_cosine(step, total):
    """FixMatch's and USB's: lr * cos(7 pi step / (16 total)), 0.195 lr at the end."""
    return LR * math.cos(7 * math.pi * step / (16 * total))


@pytest.fixture(scope="module")
def data():
    """The test task's data with a short evaluation split: these tests read no accuracy."""
    full = load_data(make_cfg())
    ev = full.target_eval
    return RunData(full.source, full.target_train,
                   DomainData(ev.images[:100], ev.labels[:100], ev.name, ev.split))


def logged(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["lr"] for r in map(json.loads, lines)}


def schedule_cfg(*overrides, steps, eval_every, method="source_only"):
    return make_cfg(f"method={method}", "trainer.batch_size=8", f"trainer.lr={LR}",
                    f"trainer.lr_gamma={GAMMA}", f"trainer.lr_decay={DECAY}", *overrides,
                    steps=steps, eval_every=eval_every)


def test_logged_lr_follows_tllibs_inverse_schedule_at_the_last_step_trained(tmp_path, data):
    cfg = schedule_cfg(steps=6, eval_every=2)
    Trainer(cfg, data, tmp_path).fit()
    lrs = logged(tmp_path)
    assert sorted(lrs) == [2, 4, 6]
    # a record written after `step` steps logs the rate of the last of them, index step - 1
    for step, lr in lrs.items():
        assert lr == pytest.approx(inverse(step - 1), rel=1e-12)
    assert lrs[2] > lrs[4] > lrs[6]


def test_logged_lr_follows_the_cosine_schedule_over_the_whole_run(tmp_path, data):
    total = 6
    cfg = schedule_cfg("trainer.schedule=cosine", steps=total, eval_every=2)
    Trainer(cfg, data, tmp_path).fit()
    lrs = logged(tmp_path)
    assert sorted(lrs) == [2, 4, 6]
    for step, lr in lrs.items():
        assert lr == pytest.approx(cosine(step - 1, total), rel=1e-12)
    # the gamma and decay of the inverse schedule play no part
    assert lrs[6] != pytest.approx(inverse(5))


@pytest.mark.parametrize("schedule,expected", [
    ("inverse", lambda step, total: inverse(step)),
    ("cosine", cosine),
    ("fixmatch_cosine", fixmatch_cosine),
], ids=["inverse", "cosine", "fixmatch_cosine"])
@pytest.mark.parametrize("lr_mult", [1.0, 0.1])
def test_optimiser_groups_train_each_step_at_the_scheduled_rate_times_their_multiplier(
        schedule, expected, lr_mult, data):
    total = 10
    # dann: the discriminator joins the optimiser as a group of its own, at multiplier 1
    cfg = schedule_cfg(f"trainer.schedule={schedule}", f"backbone.lr_mult={lr_mult}",
                       steps=total, eval_every=total, method="dann")
    trainer = Trainer(cfg, data)
    backbone = {id(p) for p in trainer.method.model.backbone.parameters()}
    (optimizer,) = trainer.optimizers
    seen = {"backbone": 0, "rest": 0}
    for step in (0, 4, 9):
        trainer.train_step(step)
        for group in optimizer.param_groups:
            in_backbone = {id(p) in backbone for p in group["params"]}
            assert len(in_backbone) == 1  # a group is all backbone or none of it
            part = "backbone" if in_backbone.pop() else "rest"
            mult = lr_mult if part == "backbone" else 1.0
            assert group["lr"] == pytest.approx(mult * expected(step, total), rel=1e-12)
            seen[part] += 1
    assert seen["backbone"] > 0 and seen["rest"] > 0


def test_fixmatch_cosine_ends_at_a_fifth_of_the_rate_not_at_zero(tmp_path, data):
    total = 8
    Trainer(schedule_cfg("trainer.schedule=fixmatch_cosine", steps=total, eval_every=4),
            data, tmp_path).fit()
    lrs = logged(tmp_path)
    assert lrs[8] == pytest.approx(LR * math.cos(7 * math.pi * 7 / 128), rel=1e-12)
    assert lrs[8] > 0.19 * LR and lrs[8] != pytest.approx(cosine(7, total))


@pytest.mark.parametrize("decay_all", [True, False])
def test_weight_decay_spares_one_dimensional_parameters_only_when_asked(decay_all, data):
    """A step with zero gradients moves a parameter only by weight decay: with
    decay_norm_and_bias=false (USB's rule) biases and normalisation parameters stay put while
    kernels shrink; with true (tllib's) everything shrinks."""
    import torch

    cfg = schedule_cfg(f"trainer.decay_norm_and_bias={str(decay_all).lower()}",
                       "trainer.weight_decay=0.1", steps=4, eval_every=4)
    trainer = Trainer(cfg, data)
    params = [p for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]]
    assert {p.ndim <= 1 for p in params} == {True, False}  # the model has both kinds
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    for opt in trainer.optimizers:
        opt.step()
    for p, old in zip(params, before):
        moved = not torch.equal(p.detach(), old)
        nonzero = bool(old.abs().sum() > 0)
        if p.ndim > 1 or decay_all:
            assert moved or not nonzero, p.shape
        else:
            assert not moved, p.shape


def test_the_usb_preset_trains_with_usbs_schedule_and_weight_decay():
    from pnl_da.engine.tasks import compose

    for dataset in ("cifar10", "cifar100", "svhn"):
        t = compose([f"dataset={dataset}", "dataset.labels=400", "method=fixmatch"],
                    mode="ssl").trainer
        assert (t.steps, t.batch_size, t.unlabeled_batch_size) == (2 ** 20, 64, 7 * 64)
        assert (t.lr, t.weight_decay, t.schedule, t.decay_norm_and_bias) == (
            0.03, 5e-4, "fixmatch_cosine", False)


def test_mean_teacher_reads_as_many_unlabeled_images_as_labeled_ones_and_fixmatch_seven():
    """USB's Mean Teacher configs use uratio 1 (64 + 64 images per step), its FixMatch 7; the
    pair's setting applies to that pair only, and the command line still wins."""
    from pnl_da.engine.tasks import compose
    from pnl_da.errors import UsageError

    def unlabeled(*overrides, dataset="cifar10"):
        return compose([f"dataset={dataset}", "dataset.labels=400", *overrides],
                       mode="ssl").trainer.unlabeled_batch_size

    assert unlabeled("method=mean_teacher") == 64
    assert unlabeled("method=fixmatch") == unlabeled("method=pnl") == 448
    assert unlabeled("method=mean_teacher", "trainer.unlabeled_batch_size=96") == 96
    # the digits preset: 32 labeled per step; FixMatch reads 7 x 32 (mu = 7), Mean Teacher
    # 1 x 32, PNL the preset's 64
    assert unlabeled("method=fixmatch", dataset="mnist-sample") == 7 * 32
    assert unlabeled("method=mean_teacher", dataset="mnist-sample") == 32
    assert unlabeled("method=pnl", dataset="mnist-sample") == 64
    with pytest.raises(UsageError, match="trainer_method follows trainer= and method="):
        unlabeled("trainer_method=usb_mean_teacher")
