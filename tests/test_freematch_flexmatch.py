"""FreeMatch and FlexMatch: their thresholds move as their papers (and USB) specify on scripted
sequences of predictions, their extra terms have known values, and both train as SSL methods."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pnl_da.losses.thresholds import SelfAdaptiveThreshold, fairness_loss


def batch_of(rows: list[list[float]], repeat: int = 1) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).repeat(repeat, 1)


# -- FreeMatch: self-adaptive thresholds -----------------------------------------------------

def test_the_global_threshold_starts_at_one_over_c_and_follows_the_mean_confidence():
    m, classes = 0.9, 4
    threshold = SelfAdaptiveThreshold(classes, decay=m)
    assert float(threshold.tau) == pytest.approx(1 / classes)
    probs = batch_of([[0.7, 0.1, 0.1, 0.1], [0.1, 0.5, 0.2, 0.2]])  # mean confidence 0.6
    for n in range(1, 21):
        threshold(probs)
        # tau_n = 0.6 + (1/C - 0.6) m^n: the moving average's closed form
        assert float(threshold.tau) == pytest.approx(0.6 + (0.25 - 0.6) * m ** n, abs=1e-6)
    threshold.eval()  # evaluation reads the thresholds and moves nothing
    before = float(threshold.tau)
    threshold(batch_of([[1.0, 0.0, 0.0, 0.0]]))
    assert float(threshold.tau) == before


def test_class_thresholds_scale_the_global_one_by_the_classs_share_of_predictions():
    m = 0.5
    threshold = SelfAdaptiveThreshold(3, decay=m)
    probs = batch_of([[0.8, 0.1, 0.1]], repeat=3)  # every image: class 0, confidence 0.8
    per_image = threshold(probs)
    p_model = 0.5 * torch.full((3,), 1 / 3) + 0.5 * torch.tensor([0.8, 0.1, 0.1])
    tau = 0.5 / 3 + 0.5 * 0.8
    assert torch.allclose(threshold.p_model, p_model)
    assert torch.allclose(threshold.label_hist, torch.tensor([2 / 3, 1 / 6, 1 / 6]))
    expected = tau * p_model / p_model.max()
    assert torch.allclose(threshold.class_thresholds(), expected)
    assert float(threshold.class_thresholds()[0]) == pytest.approx(tau)  # the top class: tau
    assert torch.allclose(per_image, torch.full((3,), tau))  # each image: its class's bar
    # a rarely predicted class gets a lower bar: an unconfident class-1 image passes it,
    # where FixMatch's 0.95 would keep nothing
    threshold.eval()
    assert float(threshold(batch_of([[0.3, 0.45, 0.25]]))[0]) < 0.45 < 0.95


# -- FreeMatch: the fairness term ------------------------------------------------------------

def paper_fairness(strong_logits, mask, p_model, label_hist):
    """The paper's form, written apart: p_bar averaged over the whole batch with the mask inside,
    h_bar raw counts; the normalisations must cancel."""
    probs = torch.softmax(strong_logits.float(), dim=1)
    keep = mask.float().unsqueeze(1)
    p_bar = (probs * keep).sum(0) / len(probs)
    counts = torch.zeros(probs.shape[1])
    for row, kept in zip(probs.argmax(1), mask):
        counts[row] += float(kept)
    q = torch.where(counts > 0, p_bar / counts.clamp_min(1), torch.zeros_like(p_bar))
    q, p = q / q.sum(), p_model / label_hist
    return (p / p.sum() * torch.log(q + 1e-12)).sum()


def test_fairness_has_its_known_value_and_the_papers():
    uniform = torch.full((2,), 0.5)
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.2, 0.8]]))
    # balanced kept predictions against a balanced history: -H(uniform, uniform) = -log 2
    value = fairness_loss(logits, torch.tensor([True, True]), uniform, uniform)
    assert float(value) == pytest.approx(-math.log(2), abs=1e-6)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=generator) * 3
    mask = torch.rand(16, generator=generator) > 0.4
    p_model = torch.softmax(torch.randn(5, generator=generator), 0)
    label_hist = torch.softmax(torch.randn(5, generator=generator), 0)
    assert float(fairness_loss(logits, mask, p_model, label_hist)) == pytest.approx(
        float(paper_fairness(logits, mask, p_model, label_hist)), abs=1e-5)


def test_fairness_trains_only_the_kept_images_and_is_zero_when_none_is_kept():
    generator = torch.Generator().manual_seed(1)
    logits = (torch.randn(8, 4, generator=generator) * 2).requires_grad_(True)
    mask = torch.tensor([True, False, True, True, False, False, True, False])
    history = torch.full((4,), 0.25)
    fairness_loss(logits, mask, torch.tensor([0.4, 0.3, 0.2, 0.1]), history).backward()
    assert torch.all(logits.grad[~mask] == 0) and torch.all(logits.grad[mask].abs().sum(1) > 0)
    none = fairness_loss(logits, torch.zeros(8, dtype=torch.bool), history, history)
    assert float(none) == 0.0


# -- training ----------------------------------------------------------------------------------

def short_ssl_run(capsys, out, *overrides, steps=6):
    """A short mnist-sample run with 20 labels through the command line; it must succeed."""
    from tests.test_cli import run_cli

    code, _, err = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", *overrides,
                           f"trainer.steps={steps}", f"trainer.eval_every={steps // 2}",
                           "trainer.progress=false", "--out", str(out))
    assert code == 0, err


def test_freematch_trains_logs_its_terms_and_checkpoints_its_thresholds(tmp_path, capsys):
    out = tmp_path / "freematch"
    short_ssl_run(capsys, out, "method=freematch", steps=8)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"cls", "pseudo", "fairness"} <= set(records[-1]["losses"])
    assert 0 <= records[-1]["train_metrics"]["mask_rate"] <= 1
    # the global threshold has left 1/C, towards the (low) confidence of a young model
    assert records[-1]["threshold"] != pytest.approx(0.1)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    tau = state["method"]["threshold.tau"]
    assert float(tau) == pytest.approx(records[-1]["threshold"], abs=1e-5)


def test_freematch_is_semi_supervised_only_and_checks_its_options(tmp_path, capsys):
    from tests.test_cli import assert_one_line_error, run_cli

    for argv, fragment in [(["run", "digits", "uci->ms", "method=freematch"],
                            "unknown method 'freematch'"),
                           (["run", "digits", "uci->ms", "method=flexmatch"],
                            "unknown method 'flexmatch'"),
                           (["ssl", "mnist-sample", "--labels", "20", "method=flexmatch",
                             "method.threshold=1.5"], "'method.threshold'"),
                           (["ssl", "mnist-sample", "--labels", "20", "method=freematch",
                             "method.ema_decay=1.5"], "'method.ema_decay'")]:
        code, _, err = run_cli(capsys, *argv, "trainer.steps=2", "--out", str(tmp_path / "bad"))
        assert_one_line_error(code, err, 2, fragment)


# -- FlexMatch: curriculum thresholds ----------------------------------------------------------

def curriculum(warmup: bool = True):
    from pnl_da.losses.thresholds import CurriculumThreshold

    threshold = CurriculumThreshold(3, cutoff=0.9, warmup=warmup)
    threshold.size(6)
    return threshold


def test_flexible_thresholds_start_at_zero_and_rise_with_each_classs_learning_effect():
    threshold = curriculum()
    first = batch_of([[0.95, 0.03, 0.02], [0.92, 0.05, 0.03], [0.3, 0.5, 0.2]])
    # nothing remembered yet: every class's threshold is 0, every image passes
    assert torch.equal(threshold(first, torch.tensor([0, 1, 2])), torch.zeros(3))
    # images 0 and 1 (confident) are remembered as class 0; image 2 (0.5 < 0.9) is not
    assert threshold.remembered.tolist() == [0, 0, -1, -1, -1, -1]
    # warm-up: beta = counts / max(top class count, never remembered) = [2/4, 0, 0];
    # class thresholds 0.9 * b / (2 - b)
    assert torch.allclose(threshold.learning_effect, torch.tensor([0.5, 0.0, 0.0]))
    assert torch.allclose(threshold.class_thresholds(), torch.tensor([0.3, 0.0, 0.0]))
    second = batch_of([[0.02, 0.96, 0.02]], repeat=4)
    # the batch is judged by the thresholds from before it is remembered (class 1: still 0)
    assert torch.equal(threshold(second, torch.tensor([2, 3, 4, 5])), torch.zeros(4))
    assert threshold.remembered.tolist() == [0, 0, 1, 1, 1, 1]
    assert torch.allclose(threshold.learning_effect, torch.tensor([0.5, 1.0, 0.0]))
    assert torch.allclose(threshold.class_thresholds(), torch.tensor([0.3, 0.9, 0.0]))
    # an image seen again without confidence keeps what it was remembered as
    threshold(batch_of([[0.4, 0.35, 0.25]]), torch.tensor([2]))
    assert threshold.remembered.tolist() == [0, 0, 1, 1, 1, 1]


def test_without_warm_up_the_top_class_alone_normalises_and_the_start_is_left_alone():
    threshold = curriculum(warmup=False)
    unsure = batch_of([[0.5, 0.3, 0.2]], repeat=2)
    threshold(unsure, torch.tensor([0, 1]))  # nothing remembered: beta stays 0
    assert torch.equal(threshold.learning_effect, torch.zeros(3))
    threshold(batch_of([[0.95, 0.03, 0.02], [0.04, 0.91, 0.05], [0.93, 0.04, 0.03]]),
              torch.tensor([0, 1, 2]))
    # beta = counts / top class count = [2, 1, 0] / 2, whatever the never-remembered images
    assert torch.allclose(threshold.learning_effect, torch.tensor([1.0, 0.5, 0.0]))
    assert torch.allclose(threshold.class_thresholds(), torch.tensor([0.9, 0.3, 0.0]))


def test_flexmatch_trains_remembers_every_unlabeled_image_and_evaluates(tmp_path, capsys):
    from tests.test_cli import run_cli

    out = tmp_path / "flexmatch"
    short_ssl_run(capsys, out, "method=flexmatch")
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"cls", "pseudo"} <= set(record["losses"]) and "threshold" in record
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["method"]
    result = json.loads((out / "result.json").read_text())
    remembered = state["threshold.remembered"]
    assert remembered.shape == (3979,) and int(remembered.min()) >= -1
    # a method rebuilt without data takes the memory's size from the checkpoint
    code, report, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0, err
    assert f"{result['metrics']['error']:.2f}" in report


# -- PNL stacked on them -----------------------------------------------------------------------

def test_pnl_stacks_on_flexible_thresholds_and_the_stacking_options_are_checked(tmp_path,
                                                                                capsys):
    from tests.test_cli import assert_one_line_error, run_cli

    out = tmp_path / "pnl-flex"
    short_ssl_run(capsys, out, "method.positives=flexmatch", "method.negatives_on=unconfident",
                  steps=4)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["method"]
    assert state["bars.0.remembered"].shape == state["bars.1.remembered"].shape == (3979,)
    # domain adaptation's PNL has no positives (positive_threshold=0): the options are inert
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", "method.positives=freematch",
                           "trainer.steps=2", "--out", str(tmp_path / "bad"))
    assert_one_line_error(code, err, 2, "method.positive_threshold=0")


def test_freematch_refuses_fixmatchs_fixed_threshold(tmp_path, capsys):
    from tests.test_cli import assert_one_line_error, run_cli

    code, _, err = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", "method=freematch",
                           "method.threshold=0.9", "trainer.steps=2", "--out",
                           str(tmp_path / "bad"))
    assert_one_line_error(code, err, 2, "FreeMatch sets its own thresholds")
