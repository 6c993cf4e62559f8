"""Partial-set adaptation: the target keeps some of the source's classes (issue 32)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from pnl_da.data.office import OFFICE31_CLASSES, OFFICEHOME_CLASSES, VISDA_CLASSES
from pnl_da.engine.evaluate import confusion_matrix, scores
from pnl_da.engine.tasks import compose, load_data, task_of
from pnl_da.engine.trainer import Trainer
from pnl_da.errors import DataError, UsageError
from pnl_da.losses.adversarial import DomainAdversarialLoss, class_weighted
from pnl_da.methods.base import Outputs
from pnl_da.methods.pada import class_weights
from pnl_da.models.grl import WarmStartGRL
from tests.conftest import make_cfg, one_line_error
from tests.test_cli import FAST, assert_one_line_error, run_cli
from tests.test_folders import LENET, assert_error_line, shop

DIGITS_TASK = ["digits", "uci->mnist-sample"]


def compose_task(benchmark: str, source: str, target: str, *overrides: str):
    return compose([f"benchmark={benchmark}", f"benchmark.source={source}",
                    f"benchmark.target={target}", "data.root=/nonexistent", *overrides])


# -- the setting ------------------------------------------------------------------------------

def test_the_partial_protocols_are_tllibs_default_partial():
    expected = {
        # Office-31: the 10 classes it shares with Caltech-256 (tllib's OfficeCaltech.CLASSES)
        ("office31", "amazon", "webcam"): ["back_pack", "bike", "calculator", "headphones",
                                           "keyboard", "laptop_computer", "monitor", "mouse",
                                           "mug", "projector"],
        ("officehome", "Art", "Clipart"): sorted(OFFICEHOME_CLASSES)[:25],
        ("visda2017", "Synthetic", "Real"): sorted(VISDA_CLASSES)[:6],
        ("digits", "uci", "mnist-sample"): ["0", "1", "2", "3", "4"],
    }
    for (benchmark, source, target), kept in expected.items():
        cfg = compose_task(benchmark, source, target, "benchmark.partial=true")
        assert list(cfg.benchmark.target_classes) == kept
        assert cfg.benchmark.num_classes == task_of(cfg).num_classes  # the source's label space
    assert set(expected[("office31", "amazon", "webcam")]) <= set(OFFICE31_CLASSES)


def test_a_class_list_makes_the_run_partial_set_and_a_folder_of_its_own():
    closed = make_cfg()
    listed = make_cfg("benchmark.target_classes=[5,6,7,8,9]")
    preset = make_cfg("benchmark.partial=true")
    assert not closed.benchmark.partial and closed.benchmark.target_classes is None
    assert listed.benchmark.partial and list(listed.benchmark.target_classes) == list("56789")
    dirs = {str(task_of(c).default_out_dir().parent.parent) for c in (closed, listed, preset)}
    assert dirs == {"runs/digits/uci2mnist-sample", "runs/digits/uci2mnist-sample-partial56789",
                    "runs/digits/uci2mnist-sample-partial"}


def test_a_class_list_is_partial_set_however_the_configuration_was_composed():
    from pnl_da.config import compose as compose_unresolved
    from pnl_da.methods import create_method
    from pnl_da.models.factory import create_model

    for composed in (compose, compose_unresolved):
        cfg = composed(["benchmark.source=uci", "benchmark.target=mnist-sample",
                        "benchmark.target_classes=[0,1,2,3,4]"])
        assert task_of(cfg).partial_set, composed.__module__
        assert create_method(cfg.method, create_model(cfg, 10), 10,
                             task_of(cfg).partial_set).partial
    assert not task_of(compose_unresolved(["benchmark.source=uci",
                                           "benchmark.target=mnist-sample"])).partial_set


def test_only_the_kept_classes_of_the_target_are_trained_and_scored():
    cfg = make_cfg("benchmark.target_classes=[0,2,4]")
    closed = load_data(make_cfg())
    data = load_data(cfg)
    assert torch.equal(data.source.labels, closed.source.labels)  # the source keeps them all
    for split in (data.target_train, data.target_eval):
        assert set(split.labels.tolist()) == {0, 2, 4}
        expected = int(torch.isin(closed.target_eval.labels, torch.tensor([0, 2, 4])).sum())
        assert len(split) == expected


def test_a_prediction_of_an_absent_class_counts_as_wrong():
    labels = torch.tensor([0, 0, 1, 1])  # the target holds classes 0 and 1 of 10
    predicted = torch.tensor([0, 9, 1, 7])  # two images put in classes the target lacks
    result = scores(confusion_matrix(predicted, labels, 10))
    assert result["accuracy"] == 50.0
    assert result["mean_class_accuracy"] == 50.0  # over the target's two classes, not ten


@pytest.mark.parametrize("override,fragments", [
    ("benchmark.target_classes=[]", ["keeps no class"]),
    ("benchmark.target_classes=[3]", ["keeps one class ('3')", "at least two"]),
    ("benchmark.target_classes=[1,12]", ["'12'", "does not have", "0, 1, 2"]),
    ("benchmark.target_classes=[1,1]", ["'1' twice"]),
    ("benchmark.target_classes=0-4", ["benchmark.target_classes", "a list in brackets"]),
])
def test_bad_class_lists_are_one_line_and_write_nothing(capsys, tmp_path, override, fragments):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", *DIGITS_TASK, override, *FAST, "--out", str(out))
    assert_one_line_error(code, err, 2, *fragments)
    assert not out.exists()


def test_a_partial_run_reports_its_classes_and_is_scored_on_them(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "run", *DIGITS_TASK, "benchmark.partial=true",
                                "method=pada", *FAST, "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["target_classes"] == ["0", "1", "2", "3", "4"]
    assert "over its 5 classes" in stdout
    rows = (out / "per_class.csv").read_text().splitlines()[1:-1]
    scored = [r.split(",")[0] for r in rows if int(r.split(",")[1]) > 0]
    assert scored == ["0", "1", "2", "3", "4"]
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert sorted(last["class_weight"], key=int) == [str(c) for c in range(10)]


def test_folders_a_labeled_target_with_some_classes_runs_partial_set_on_request(tmp_path,
                                                                              capsys):
    root = shop(tmp_path / "data", classes=("a", "b", "c"))
    for file in (root / "webcam" / "c").iterdir():
        file.unlink()
    (root / "webcam" / "c").rmdir()
    cfg = compose(["benchmark=folders", "benchmark.source=catalogue", "benchmark.target=webcam",
                   f"data.root={root}", "benchmark.partial=true"], "da")
    from pnl_da.engine.tasks import DomainAdaptation

    DomainAdaptation.resolve(cfg)
    assert list(cfg.benchmark.target_classes) == ["a", "b"]
    assert list(cfg.benchmark.classes) == ["a", "b", "c"]

    unlabeled = shop(tmp_path / "loose", target_labeled=False)
    cfg = compose(["benchmark=folders", "benchmark.source=catalogue", "benchmark.target=webcam",
                   f"data.root={unlabeled}", "benchmark.partial=true"], "da")
    DomainAdaptation.resolve(cfg)
    assert cfg.benchmark.partial and cfg.benchmark.target_classes is None  # nothing to filter
    code, _, err = run_cli(capsys, "run", "folders", "catalogue->webcam", *LENET,
                           "benchmark.target_classes=[boot,clog]", "--data-root",
                           str(unlabeled), "--out", str(tmp_path / "run"))
    assert_error_line(code, err, 3, "has no labels", "method.partial=true")
    assert not (tmp_path / "run").exists()


def resumed(cfg, data, folder, stop_at: int) -> Trainer:
    """A run stopped after its checkpoint at ``stop_at`` and resumed to the end."""
    first = Trainer(cfg, data, folder)
    first.fit(stop_at=stop_at)
    del first
    second = Trainer(cfg, data, folder)
    assert second.resume() and second.step == stop_at
    second.fit()
    return second


def assert_same_state(a: Trainer, b: Trainer) -> None:
    state_a, state_b = a.method.state_dict(), b.method.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# -- PADA -------------------------------------------------------------------------------------

def test_pada_class_weights_are_the_tempered_mean_prediction_over_its_largest():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    gamma = torch.softmax(logits / 0.1, dim=1).mean(0)
    assert torch.allclose(class_weights(logits, 0.1), gamma / gamma.max())
    assert class_weights(logits, 0.1).max() == 1.0
    # a class no image leans to weighs (almost) nothing; a soft temperature spreads weight
    assert class_weights(logits, 0.1)[2] < 1e-6 < class_weights(logits, 10.0)[2]


def test_pada_weighted_losses_follow_tllib():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    weight = torch.tensor([1.0, 0.5, 0.0])
    from pnl_da.methods.base import Method

    supervised = Method.supervised_loss(Outputs(torch.zeros(6, 2), [logits]), labels, weight)
    per_image = F.cross_entropy(logits, labels, reduction="none")
    expected = (per_image * weight[labels]).sum() / weight[labels].sum()
    assert torch.allclose(supervised, expected)  # class 2 (weight 0) adds nothing
    assert torch.allclose(supervised, F.cross_entropy(logits, labels, weight=weight))
    only_absent = Method.supervised_loss(Outputs(torch.zeros(2, 2), [logits[4:]]), labels[4:],
                                         weight)
    assert only_absent == 0  # where F.cross_entropy's weighted mean is 0 / 0

    w_s, w_t = class_weighted(weight, labels)
    assert torch.equal(w_s, weight[labels]) and torch.allclose(w_t, torch.full((6,), 0.5))
    grl = WarmStartGRL(10.0)
    disc = torch.nn.Linear(2, 1)
    f_s, f_t = torch.randn(6, 2), torch.randn(6, 2)
    loss, _ = DomainAdversarialLoss(disc, grl)(f_s, f_t, w_s, w_t)
    d_s, d_t = disc(f_s)[:, 0], disc(f_t)[:, 0]
    manual = 0.5 * ((w_s * F.softplus(-d_s)).mean() + (w_t * F.softplus(d_t)).mean())
    assert torch.allclose(loss, manual)


def test_pada_recomputes_its_weights_once_per_pass_over_the_target_and_resumes_exactly(tmp_path):
    cfg = make_cfg("method=pada", "benchmark.partial=true", "method.update_steps=6",
                   steps=24, eval_every=8)
    data = load_data(cfg)
    straight = Trainer(cfg, data, tmp_path / "straight")
    seen = []
    refresh = straight.method.refresh
    straight.method.refresh = lambda logits: (seen.append((straight.step, len(logits[0]))),
                                              refresh(logits))
    assert torch.equal(straight.method.class_weight, torch.ones(10))
    straight.fit()
    assert seen == [(6, len(data.target_train)), (12, len(data.target_train)),
                    (18, len(data.target_train))]
    assert not torch.equal(straight.method.class_weight, torch.ones(10))

    assert_same_state(straight, resumed(cfg, data, tmp_path / "cut", 16))

    # by default one pass per epoch: the target's images over the batch size, rounded up
    default = Trainer(make_cfg("method=pada", "benchmark.partial=true"), data)
    assert default.refresh_every == -(-len(data.target_train) // 64)


# -- PNL's partial-set form -------------------------------------------------------------------

def _pnl(*overrides, partial_set=True):
    from pnl_da.methods import create_method
    from pnl_da.models.factory import create_model

    cfg = make_cfg(*overrides)
    return create_method(cfg.method, create_model(cfg, 10), 10, partial_set)


def test_pnl_partial_form_is_on_in_partial_set_runs_only_unless_told():
    assert _pnl().partial and not _pnl(partial_set=False).partial
    assert _pnl("method.partial=true", partial_set=False).partial
    assert not _pnl("method.partial=false").partial
    with pytest.raises(UsageError) as excinfo:
        make_cfg("method.partial=false", "method.partial_negatives=false")
    assert "method.partial=false" in one_line_error(excinfo)


def test_pnl_class_weights_follow_the_heads_target_predictions_after_the_ramp():
    method = _pnl()
    share = torch.tensor([0.3, 0.2, 0.2, 0.2, 0.1, 0, 0, 0, 0, 0])
    method.target_share.model_mean.copy_(share)
    method.set_progress(0.0)
    ramp = math.exp(-5)  # the sigmoid ramp's start: the weights are nearly all 1
    assert torch.allclose(method.class_weights(), 1 - ramp + ramp * share / 0.3)
    method.set_progress(1.0)
    assert torch.allclose(method.class_weights(), share / 0.3)


def _losses(method, batch_images, labels, target):
    from pnl_da.methods.base import Batch

    method.train()
    return method.losses(Batch({"weak": batch_images}, labels,
                               {"weak": target, "strong": target}), 0)


def test_pnl_partial_parts_each_act_on_the_classes_taken_for_absent():
    torch.manual_seed(0)
    images, target = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3, 9, 9, 9, 9])
    share = torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0, 0, 0])

    def run(*overrides):
        torch.manual_seed(1)
        method = _pnl("method.mcc_weight=0", *overrides)
        method.target_share.momentum = 1.0  # the scripted share stays as set
        method.target_share.model_mean.copy_(share)
        method.set_progress(1.0)
        torch.manual_seed(5)  # the same dropout masks in every call
        losses = _losses(method, images, labels, target)
        return method, losses

    method, full = run()
    # supervision: the source images of class 9 (weight 0) do not count
    _, unweighted = run("method.partial_supervision=false")
    torch.manual_seed(5)
    source = method.forward_all(images, target, target)[0]
    kept = labels < 4
    expected = sum(F.cross_entropy(z[kept], labels[kept]) for z in source.logits)
    assert torch.allclose(full["cls"], expected, atol=1e-5)
    assert not torch.allclose(unweighted["cls"], expected, atol=1e-5)
    # negatives: classes 4-9 are negatives of every target image, so the term grows
    _, no_negatives = run("method.partial_negatives=false")
    assert full["nl"] > no_negatives["nl"]
    # alignment: the discriminator's loss changes with the weights
    _, unaligned = run("method.partial_alignment=false")
    assert not torch.allclose(full["transfer"], unaligned["transfer"])


def test_a_partial_pnl_run_resumes_exactly(tmp_path):
    cfg = make_cfg("benchmark.target_classes=[0,1,2,3,4]", steps=16, eval_every=8)
    data = load_data(cfg)
    straight = Trainer(cfg, data, tmp_path / "straight")
    straight.fit()
    assert "target_share.model_mean" in straight.method.state_dict()
    assert_same_state(straight, resumed(cfg, data, tmp_path / "cut", 8))


def test_an_empty_target_after_filtering_is_a_data_error(tmp_path):
    from pnl_da.data.base import DomainData

    cfg = make_cfg("benchmark.target_classes=[0,1]")
    task = task_of(cfg)
    data = DomainData(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([5, 6]), "t",
                      "all")
    with pytest.raises(DataError) as excinfo:
        task.target_subset(data, "all")
    assert "holds no image" in one_line_error(excinfo)


def test_list_names_each_benchmarks_partial_protocol(capsys):
    code, out, _ = run_cli(capsys, "list", "benchmarks")
    assert code == 0
    lines = [line.strip() for line in out.splitlines() if "partial-set" in line]
    assert len(lines) == 4  # digits, office31, officehome, visda2017 (folders: its data decide)
    assert "keeps 10 of 31 classes: back_pack, bike, calculator" in "\n".join(lines)


def test_office31_partial_protocol_on_image_lists_with_pada(tmp_path, capsys):
    """tllib's layout (lists and JPEG files, read through the cache and data workers' path):
    the protocol keeps back_pack and bike of the three fake classes, PADA's pass reads them."""
    from tests.fake_datasets import make_office31
    from tests.test_office import TINY

    make_office31(tmp_path)  # classes back_pack, bike, bike_helmet; 4 images each
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", "office31", "A->W", "benchmark.partial=true",
                           "method=pada", "--data-root", str(tmp_path), "--out", str(out), *TINY)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert len(result["target_classes"]) == 10
    rows = {r.split(",")[0]: int(r.split(",")[1])
            for r in (out / "per_class.csv").read_text().splitlines()[1:-1]}
    assert rows["back_pack"] == rows["bike"] == 4 and rows["bike_helmet"] == 0
    weights = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["class_weight"]
    # refreshed at step 2 of 4 (one pass: 8 target images, 4 a step): no longer all 1
    assert len(weights) == 31 and min(weights.values()) < 1.0 == max(weights.values())
