"""Semi-supervised mode: configuration, models, methods, the engine with two optimisers,
evaluation, the command line and a short real-data run."""

import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from pnl_da.cli import main
from pnl_da.config import to_yaml as to_yaml_text
from pnl_da.data.registry import get_ssl_dataset
from pnl_da.engine.evaluate import batches_for, evaluate
from pnl_da.engine.results import oracle_best
from pnl_da.engine.tasks import (
    SPLIT_FILE,
    SemiSupervised,
    compose,
    default_out_dir,
    load_saved,
    task_of,
)
from pnl_da.engine.trainer import Trainer
from pnl_da.errors import UsageError
from pnl_da.losses.distribution import DistributionAlignment
from pnl_da.methods import create_method
from pnl_da.methods.fixmatch import confident_pseudo_label_loss
from pnl_da.methods.pnl_paper import stability
from pnl_da.models.averaging import ema_update
from pnl_da.models.factory import create_backbone, create_model
from pnl_da.models.heads import Classifier, DualClassifier
from tests.fake_datasets import write_mnist_idx


def load_ssl_data(cfg):
    """(RunData, the labeled-split record) of a semi-supervised configuration."""
    task = SemiSupervised(cfg)
    return task.load(), task.split


def ssl_cfg(*overrides, dataset="mnist-sample", labels=20, steps=12, eval_every=6):
    """A semi-supervised config; ``steps=None`` (or a trainer.epochs override) keeps the preset's
    run length."""
    length = ([] if steps is None or any(o.startswith("trainer.epochs=") for o in overrides)
              else [f"trainer.steps={steps}"])
    return compose([f"dataset={dataset}", f"dataset.labels={labels}", *length,
                    f"trainer.eval_every={eval_every}",
                    "trainer.progress=false", "trainer.device=cpu", *overrides], mode="ssl")


# -- configuration -----------------------------------------------------------------------------

def test_pnl_paper_resolves_to_the_numbers_of_method_md_section_4():
    cfg = ssl_cfg("method=pnl_paper", dataset="cifar10", labels=4000, steps=None)
    m, t = cfg.method, cfg.trainer
    assert cfg.ssl.model == "dual" and cfg.backbone.name == "convlarge"
    assert cfg.backbone.head_weight_norm and m.extra_heads == 1  # class + consistency head
    assert (m.stabilization_threshold, m.stabilization_scale) == (0.8, 100.0)
    assert (m.consistency_scale, m.rampup_epochs, m.logit_distance) == (10.0, 5.0, 0.01)
    assert (m.weight, m.k, m.selection, m.replacement) == (2.0, 2, "random", True)
    assert (t.epochs, m.epochs, t.schedule) == (100, 100, "cosine")
    assert (t.lr, t.momentum, t.nesterov, t.weight_decay) == (0.1, 0.9, True, 1e-4)
    assert (t.batch_size, t.unlabeled_batch_size) == (50, 50)  # 100 per batch, 50 labeled
    weak = cfg.data.weak
    assert (weak.translate * 32, weak.padding, weak.flip) == (4.0, "reflection", 0.5)
    assert list(cfg.dataset.normalize_mean) == [0.4914, 0.4822, 0.4465]
    assert list(cfg.dataset.normalize_std) == [0.2470, 0.2435, 0.2616]


def test_ssl_methods_and_da_methods_live_in_separate_groups():
    with pytest.raises(UsageError, match="unknown method 'fixmatch'"):
        compose(["method=fixmatch", "benchmark.source=uci", "benchmark.target=mnist-sample"])
    with pytest.raises(UsageError, match="semi-supervised"):
        ssl_cfg("method=dann")
    assert ssl_cfg().method.align == "none"  # SSL's pnl has no domain alignment


# -- models ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,channels,size", [("convlarge", 3, 32), ("convlarge", 1, 28),
                                                ("wrn28_2", 3, 32)])
def test_ssl_backbones_give_128_features(name, channels, size):
    net, width = create_backbone(name, channels, size)
    assert width == 128
    assert net(torch.randn(2, channels, size, size)).shape == (2, 128)


def test_convlarge_has_nine_weight_normalised_convolutions_and_leaky_relu():
    net, _ = create_backbone("convlarge", 3, 32)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9  # 3 x 3x3 (128), 3 x 3x3 (256), 3x3 valid + 2 x 1x1
    assert all(hasattr(c, "parametrizations") and "weight" in c.parametrizations for c in convs)
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.1}


def test_convlarge_blocks_keep_the_size_then_halve_it_and_the_512_convolution_is_valid():
    # Laine & Aila's table: 3x3 "same" convolutions in the first two blocks, max-pool and
    # dropout 0.5 after each, then a 3x3 "valid" convolution (8x8 -> 6x6) and two 1x1
    net, _ = create_backbone("convlarge", 3, 32)
    sizes = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    net(torch.randn(2, 3, 32, 32))
    assert sizes == [32, 32, 32, 16, 16, 16, 6, 6, 6]
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]


def test_convlarge_heads_are_weight_normalised_and_other_backbones_heads_are_plain():
    for name, weight_normalised in (("convlarge", True), ("lenet", False), ("wrn28_2", False)):
        cfg = ssl_cfg(f"backbone={name}", dataset="cifar10" if name != "lenet" else "mnist-sample",
                      labels=40)
        model = create_model(cfg, 10, dual=task_of(cfg).dual_model)
        heads = [h for net in model.networks for h in net.heads]
        assert len(heads) == 2
        assert all(hasattr(h, "parametrizations") == weight_normalised for h in heads), name


def test_wrn28_2_is_the_fixmatch_network():
    # 1,467,610 parameters with a 10-class head: the "1.47M" of USB's and FixMatch's tables
    # (4 groups of widths 16, 32, 64, 128; 4 blocks per group for depth 28)
    net, width = create_backbone("wrn28_2", 3, 32)
    assert sum(p.numel() for p in net.parameters()) + width * 10 + 10 == 1_467_610
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 25 and {m.momentum for m in norms} == {0.001}  # TF's decay 0.999


def test_lenet_is_tllibs():
    # conv 20 -> pool -> relu -> conv 50 -> dropout2d 0.5 -> pool -> relu -> fc 500 -> dropout
    layers = [(type(m).__name__, getattr(m, "p", None)) for m in create_backbone("lenet", 1, 28)[0]]
    assert layers == [("Conv2d", None), ("MaxPool2d", None), ("ReLU", None), ("Conv2d", None),
                      ("Dropout2d", 0.5), ("MaxPool2d", None), ("ReLU", None),
                      ("Flatten", None), ("Linear", None), ("ReLU", None), ("Dropout", 0.5)]


def test_dual_classifier_runs_two_separate_networks():
    a = Classifier(torch.nn.Flatten(), 4, 3, heads=2)
    b = Classifier(torch.nn.Flatten(), 4, 3, heads=2)
    dual = DualClassifier(a, b)
    x = torch.randn(5, 1, 2, 2)
    _, logits = dual(x)
    assert len(logits) == 4 and dual.prediction_heads == 2
    assert torch.equal(logits[0], a(x)[1][0]) and torch.equal(logits[1], b(x)[1][0])
    assert torch.equal(logits[2], a(x)[1][1]) and torch.equal(logits[3], b(x)[1][1])
    assert dual.heads[0] is a.heads[0] and dual.heads[1] is b.heads[0]  # each network's own


# -- losses -----------------------------------------------------------------------------------

def test_fixmatch_loss_is_zero_without_confident_images_and_counts_confident_ones():
    weak = torch.softmax(torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.1, 0.0]]), 1)  # 1st confident
    strong = torch.zeros(2, 3, requires_grad=True)
    loss, rate = confident_pseudo_label_loss(weak, strong, threshold=0.95)
    assert rate.item() == 0.5
    assert loss.item() == pytest.approx(np.log(3) / 2)  # CE of a uniform strong view, halved
    none, rate = confident_pseudo_label_loss(weak, strong, threshold=0.999)
    assert none.item() == 0.0 and rate.item() == 0.0


def test_distribution_alignment_lifts_an_under_predicted_class():
    align = DistributionAlignment(3, momentum=0.0)  # momentum 0: the mean is the last batch
    starved = torch.tensor([[0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])  # class 2 is never predicted
    align.train()
    align(starved)
    assert torch.allclose(align.model_mean, starved.mean(0))
    image = torch.tensor([[0.45, 0.15, 0.40]])  # argmax 0, but class 2 is under-predicted
    align.eval()
    lifted = align(image)
    assert lifted.argmax().item() == 2 and lifted.sum().item() == pytest.approx(1.0)
    assert torch.allclose(align.model_mean, starved.mean(0))  # evaluation does not update it
    uniform = DistributionAlignment(3).eval()  # a model with no bias is left as it is
    assert torch.allclose(uniform(image), image)


def test_ema_update_moves_the_teacher_towards_the_student():
    student, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = teacher.weight.detach().clone()
    ema_update(teacher, student, decay=0.9)
    assert torch.allclose(teacher.weight, 0.9 * before + 0.1 * student.weight)


def test_mean_teacher_starts_as_the_plain_average_of_the_student_weights():
    cfg = ssl_cfg("method=mean_teacher")
    data, _ = load_ssl_data(cfg)
    method = Trainer(cfg, data).method
    student, teacher = method.model, method.teacher
    first = [p.detach().clone() for p in student.parameters()]
    method.after_step()  # first update: the teacher becomes the student, not 0.1% of it
    assert all(torch.equal(t, s) for t, s in zip(teacher.parameters(), first))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    method.after_step()  # second: the mean of both
    for t, s in zip(teacher.parameters(), first):
        assert torch.allclose(t, s + 0.5)
    method.ema_updates.fill_(10_000)
    assert method.ema_decay() == cfg.method.ema_decay  # later: the configured decay


def test_eval_ema_scores_the_average_of_the_weights_and_checkpoints_it(tmp_path):
    cfg = ssl_cfg("method=fixmatch", "method.eval_ema=0.9", steps=12, eval_every=6)
    data, _ = load_ssl_data(cfg)
    trainer = Trainer(cfg, data, tmp_path / "run")
    method = trainer.method
    assert method.eval_model() is method.weight_average
    weights = []  # the model's weights after every step, to average by hand
    after_step = method.after_step

    def record():
        weights.append([p.detach().clone() for p in method.model.parameters()])
        after_step()
    method.after_step = record
    trainer.fit()
    expected = weights[0]  # warm-up: decay min(0.9, 1 - 1/(n+1)) after n updates
    for n, step_weights in enumerate(weights[1:], start=1):
        decay = min(0.9, 1 - 1 / (n + 1))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, step_weights)]
    for got, want in zip(method.weight_average.parameters(), expected):
        assert torch.allclose(got, want, atol=1e-6)
    assert not all(torch.equal(a, m) for a, m in zip(method.weight_average.parameters(),
                                                      method.model.parameters()))
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert int(saved["method"]["average_updates"]) == 12
    assert any(k.startswith("weight_average.") for k in saved["method"])


def test_a_run_length_given_on_the_command_line_replaces_the_presets():
    # pnl_paper's schedule counts epochs; trainer.steps given on the command line wins
    cfg = ssl_cfg("method=pnl_paper", steps=30)
    assert (cfg.trainer.steps, cfg.trainer.epochs, cfg.method.epochs) == (30, 0, 0)
    cfg = ssl_cfg("trainer.epochs=3")  # and epochs replace the digits preset's 2000 steps
    assert (cfg.trainer.steps, cfg.trainer.epochs) == (0, 3)


def test_mean_teacher_evaluation_names_the_teacher(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["ssl", "mnist-sample", "--labels", "20", "--out", str(out),
                 "method=mean_teacher", "trainer.steps=4", "trainer.eval_every=4",
                 "trainer.progress=false", "trainer.device=cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    report = capsys.readouterr().out
    assert "head    a (teacher (EMA))" in report and "reported: head a (teacher (EMA))" in report


def test_eval_ema_result_names_it_and_evaluate_reproduces_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["ssl", "mnist-sample", "--labels", "20", "--out", str(out), "method=fixmatch",
                 "method.eval_ema=0.99", "trainer.steps=10", "trainer.eval_every=10",
                 "trainer.progress=false", "trainer.device=cpu"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert "EMA of the weights (decay 0.99)" in result["prediction_is"]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0  # restores and scores the same averaged weights
    report = capsys.readouterr().out.strip().splitlines()
    assert json.loads(report[-1]) == result["metrics"]
    assert "  reported: head a (the model, EMA of the weights (decay 0.99))" in report


def test_stability_needs_agreement_and_confidence():
    confident = torch.tensor([[6.0, 0.0], [6.0, 0.0], [0.1, 0.0]])
    other_view = torch.tensor([[6.0, 0.0], [0.0, 6.0], [0.1, 0.0]])
    stable, distance = stability(confident, other_view, threshold=0.8)
    assert stable.tolist() == [True, False, False]  # agree+confident, disagree, unconfident
    assert distance[0] == 0 and distance[1] > 1


# -- the engine ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["method.eval_ema=0.9"],
                                   ["method.selection=targeted", "method.share_floor=0.8"]])
def test_dual_mode_has_two_optimisers_and_resume_equals_an_uninterrupted_run(tmp_path, extra):
    cfg = ssl_cfg(*extra, steps=12, eval_every=6)
    data, _ = load_ssl_data(cfg)
    straight = Trainer(cfg, data, tmp_path / "straight")
    assert len(straight.optimizers) == 2
    nets = straight.method.model.networks
    for optimizer, net in zip(straight.optimizers, nets):  # each optimiser owns one network
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        assert owned == {id(p) for p in net.parameters()}
    straight.fit()

    first = Trainer(cfg, data, tmp_path / "resumed")
    first.fit(stop_at=6)
    saved = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    assert len(saved["optimizers"]) == 2
    assert any(k.startswith("model.networks.1.") for k in saved["method"])  # both models
    assert "dist_align.1.model_mean" in saved["method"]  # pnl's running class distribution
    if "method.share_floor=0.8" in extra:  # the gate's running shares resume too
        assert "class_share.1.model_mean" in saved["method"]
    second = Trainer(cfg, data, tmp_path / "resumed")
    assert second.resume() and second.step == 6
    second.fit()
    a, b = straight.method.state_dict(), second.method.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_checkpoint_with_another_number_of_optimisers_is_refused_before_anything_loads():
    # A changed configuration is refused earlier (config.yaml); this guards a checkpoint that
    # was edited or copied from another run: two networks' optimiser states, one optimiser here.
    cfg = ssl_cfg()
    data, _ = load_ssl_data(cfg)
    donor = Trainer(cfg, data)
    donor.fit(stop_at=2)
    state = donor.state_dict()
    state["optimizers"] = state["optimizers"][:1]
    fresh = Trainer(cfg, data)
    before = {k: v.clone() for k, v in fresh.method.state_dict().items()}
    with pytest.raises(UsageError, match=r"holds 1 optimiser\(s\), this run has 2"):
        fresh.load_state_dict(state)
    assert fresh.step == 0
    assert all(torch.equal(before[k], v) for k, v in fresh.method.state_dict().items())
    state["optimizers"] = donor.state_dict()["optimizers"]
    fresh.load_state_dict(state)  # the complete checkpoint loads
    assert fresh.step == 2


def test_the_labeled_unlabeled_and_test_images_are_those_the_split_names():
    cfg = ssl_cfg(labels=30)
    data, record = load_ssl_data(cfg)
    dataset = get_ssl_dataset("mnist-sample")
    train, test = dataset.load(cfg.data.root, "train"), dataset.load(cfg.data.root, "test")
    labeled = torch.tensor(record["labeled"])
    assert record["train_size"] == len(train) == 3999 and len(test) == 999
    assert torch.equal(data.source.images, train.images[labeled])
    assert torch.equal(data.source.labels, train.labels[labeled])
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[labeled] = False  # the unlabeled pool: every other training image, none twice
    assert torch.equal(data.target_train.images, train.images[rest])
    assert torch.equal(data.target_eval.images, test.images)
    assert torch.equal(data.target_eval.labels, test.labels)


def test_shared_mode_is_one_network_with_two_heads():
    cfg = ssl_cfg("ssl.model=shared")
    data, _ = load_ssl_data(cfg)
    trainer = Trainer(cfg, data)
    assert len(trainer.optimizers) == 1 and len(trainer.method.model.heads) == 2
    trainer.fit()


@pytest.mark.parametrize("method", ["supervised", "fixmatch", "freematch", "flexmatch",
                                    "mean_teacher", "pnl_paper"])
def test_every_ssl_method_trains_and_evaluates(method):
    # pnl_paper brings Conv-Large and a 100-epoch schedule; LeNet and 4 steps keep it quick
    # (trainer.steps on the command line replaces the preset's epochs)
    extra = ["backbone=lenet"] if method == "pnl_paper" else []
    cfg = ssl_cfg(f"method={method}", *extra, steps=4, eval_every=4)
    data, _ = load_ssl_data(cfg)
    trainer = Trainer(cfg, data)
    before = [p.detach().clone() for p in trainer.method.model.parameters()]
    result = trainer.fit()
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.method.model.parameters()))
    assert set(result["evaluation"]["heads"]) >= {"a", "mean"}
    if method == "supervised":  # the lower bound: one network, one head, one optimiser
        assert isinstance(trainer.method.model, Classifier)
        assert len(trainer.method.model.heads) == 1 and len(trainer.optimizers) == 1


def test_any_timm_model_works_as_an_ssl_backbone():
    cfg = ssl_cfg("backbone.name=resnet18", dataset="uci", steps=2, eval_every=2)
    data, _ = load_ssl_data(cfg)
    trainer = Trainer(cfg, data)
    assert type(trainer.method.model.networks[0].backbone).__name__ == "ResNet"
    assert trainer.fit()["steps_trained"] == 2


def test_epochs_set_the_number_of_steps():
    cfg = ssl_cfg("trainer.epochs=2", "trainer.batch_size=10", "trainer.unlabeled_batch_size=40")
    data, _ = load_ssl_data(cfg)
    images = len(data.source) + len(data.target_train)
    assert Trainer(cfg, data).total_steps == 2 * (images // 50)


# -- command line, run directory, evaluation ---------------------------------------------------

def test_ssl_run_directory_split_and_evaluation_on_other_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["ssl", "mnist-sample", "--labels", "20", "--out", str(out),
                 "trainer.steps=10", "trainer.eval_every=5", "trainer.progress=false",
                 "trainer.device=cpu"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "mnist-sample" and result["labels"] == 20
    assert result["metrics"]["error"] == pytest.approx(100 - result["metrics"]["accuracy"])
    assert result["prediction"] == "mean" and "oracle_best_test_error" in result
    split = json.loads((out / "labeled_indices.json").read_text())
    assert len(split["labeled"]) == 20 and split["split_seed"] == 0
    capsys.readouterr()

    # the same run scored on MNIST-format files under another data root
    root = tmp_path / "other"
    write_mnist_idx(root)
    assert main(["evaluate", str(out), "--dataset", "mnist", "--data-root", str(root)]) == 0
    report = capsys.readouterr().out.strip().splitlines()
    last = json.loads(report[-1])
    assert 0 <= last["accuracy"] <= 100 and last["error"] == pytest.approx(100 - last["accuracy"])
    assert "  reported: head mean (mean of both softmaxes)" in report

    # other classes or another input format are refused before any file is read, naming the
    # datasets that would do (CIFAR-10: other classes; SVHN: digits, but 32x32 colour)
    for other in ("cifar10", "svhn"):
        assert main(["evaluate", str(out), "--dataset", other, "--data-root", str(root)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "same classes and input format" in err
        assert "mnist, mnist-sample, uci" in err


class _FixedLogits(torch.nn.Module):
    """Three heads, the last an extra (consistency) head that is not a prediction."""
    prediction_heads = 2

    def forward(self, x):
        n = len(x)
        return None, [torch.tensor([[2.0, 0, 0]]).repeat(n, 1),   # a: class 0, not sure
                      torch.tensor([[0, 3.0, 0]]).repeat(n, 1),   # b: class 1, sure
                      torch.tensor([[0, 0, 1e3]]).repeat(n, 1)]   # would win a 3-way mean


def test_the_mean_prediction_averages_the_two_prediction_heads_softmaxes_only():
    batches = [(torch.zeros(4, 1), torch.tensor([0, 1, 1, 2]))]
    result = evaluate(_FixedLogits(), batches, 3, nullcontext)
    assert {h: s["accuracy"] for h, s in result["heads"].items()} == {
        "a": 25.0, "b": 50.0, "mean": 50.0}
    assert result["confusion"]["mean"][:, 1].tolist() == [1, 2, 1]  # every image called 1


def test_prediction_names_say_what_each_head_is():
    from pnl_da.methods import METHODS

    one_head = {"a": {}, "mean": {}}
    two_heads = {"a": {}, "b": {}, "mean": {}}
    assert METHODS["supervised"].prediction_names(one_head) == {"a": "the model",
                                                                "mean": "the model"}
    assert METHODS["pnl"].prediction_names(two_heads)["mean"] == "mean of both softmaxes"
    assert METHODS["pnl"].prediction_names(two_heads)["b"] == "submodel B"
    assert METHODS["mean_teacher"].prediction_names(two_heads)["a"] == "teacher (EMA)"
    assert METHODS["pnl"].prediction_names(two_heads, 0.999)["a"] == (
        "submodel A, EMA of the weights (decay 0.999)")


def test_result_json_errors_are_the_final_networks_mistakes_on_the_holdout(tmp_path):
    out = tmp_path / "run"
    assert main(["ssl", "mnist-sample", "--labels", "20", "--out", str(out),
                 "trainer.steps=12", "trainer.eval_every=6", "trainer.progress=false",
                 "trainer.device=cpu"]) == 0
    result = json.loads((out / "result.json").read_text())
    cfg = load_saved(out / "config.yaml")
    model = create_model(cfg, 10, dual=task_of(cfg).dual_model)
    method = create_method(cfg.method, model, 10)
    method.load_state_dict(torch.load(out / "checkpoints" / "last.pt",
                                      weights_only=False)["method"])
    model.eval()
    test = get_ssl_dataset("mnist-sample").load(cfg.data.root, "test")
    x = torch.cat([b for b, _ in batches_for(task_of(cfg), test, torch.device("cpu"))])
    with torch.no_grad():  # each network on its own: its first head is its prediction
        probs = [torch.softmax(net(x)[1][0], 1) for net in model.networks]
    predictions = {"a": probs[0].argmax(1), "b": probs[1].argmax(1),
                   "mean": (probs[0] + probs[1]).argmax(1)}
    errors = {h: 100 * (p != test.labels).double().mean().item() for h, p in predictions.items()}
    assert len(test) == 999 and len(set(errors.values())) > 1  # the heads differ here
    for head, error in errors.items():
        assert result["heads"][head]["error"] == pytest.approx(error, abs=1e-9), head
    assert result["prediction"] == "mean"
    assert result["metrics"]["error"] == pytest.approx(errors["mean"], abs=1e-9)


def test_result_json_oracle_figure_follows_the_reported_prediction(tmp_path):
    # head a is best at step 6, the reported mean at step 12: the oracle names step 12
    records = [{"step": 6, "accuracy": {"a": 90.0, "b": 60.0, "mean": 80.0}},
               {"step": 12, "accuracy": {"a": 70.0, "b": 75.0, "mean": 85.0}}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    final = {h: {"accuracy": acc, "mean_class_accuracy": acc}
             for h, acc in records[-1]["accuracy"].items()}
    result = SemiSupervised(ssl_cfg()).summarize({"heads": final}, 1.0,
                                                 {"steps_trained": 12, "train_time_s": 1.0},
                                                 tmp_path, 12)
    assert result["prediction"] == "mean" and result["metrics"]["error"] == 15.0
    assert result["oracle_best_test_error"] == {"step": 12, "error": 15.0}


def test_same_split_seed_same_subset_and_resume_refuses_another(tmp_path, capsys):
    """The split seed, where given, alone draws the labeled subset (the run seed does not
    change it), and a resume never goes on with another subset than the run's own."""
    args = ["trainer.steps=4", "trainer.eval_every=4", "trainer.progress=false",
            "trainer.device=cpu"]
    b = tmp_path / "b"
    assert main(["ssl", "mnist-sample", "--labels", "30", "--split-seed", "7", "seed=2",
                 "--out", str(b), *args]) == 0
    saved = json.loads((b / "labeled_indices.json").read_text())
    assert saved["split_seed"] == 7 and len(saved["labeled"]) == 30
    assert json.loads((b / "result.json").read_text())["split_seed"] == 7  # not the run seed
    _, same = load_ssl_data(ssl_cfg("dataset.split_seed=7", "seed=1", labels=30))
    assert same["labeled"] == saved["labeled"]  # another run seed, the same subset
    # without a split seed the run seed draws the subset: another one
    _, default = load_ssl_data(ssl_cfg("seed=2", labels=30))
    assert default["split_seed"] == 2 and default["labeled"] != saved["labeled"]

    # a resume whose saved subset is not the one the config draws now is refused, in one line
    split = b / "labeled_indices.json"
    kept = split.read_text()
    (b / "result.json").unlink()  # an unfinished run, so --resume has work to do
    split.write_text(json.dumps({**saved, "labeled": default["labeled"]}))
    resume = ["ssl", "mnist-sample", "--labels", "30", "--split-seed", "7", "seed=2",
              "--out", str(b), "--resume", *args]
    capsys.readouterr()
    assert main(resume) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "labeled subset" in err and str(split) in err
    assert not (b / "result.json").exists()
    split.write_text(kept)  # with its own subset the same resume goes through
    assert main(resume) == 0 and (b / "result.json").is_file()


def test_the_split_seed_names_its_own_default_folder_and_unset_means_the_run_seed():
    from pnl_da.config import to_yaml
    from pnl_da.engine.tasks import comparable

    unset, same, other = (ssl_cfg("seed=3"), ssl_cfg("seed=3", "dataset.split_seed=3"),
                          ssl_cfg("seed=3", "dataset.split_seed=5"))
    assert default_out_dir(unset) == default_out_dir(same)
    assert default_out_dir(same).name == "seed3"
    assert default_out_dir(other).name == "seed3-split5"
    # `--resume --split-seed 3` goes on with a run made without one: the same subset
    assert comparable(to_yaml(unset)) == comparable(to_yaml(same))
    assert comparable(to_yaml(unset)) != comparable(to_yaml(other))


def test_a_resume_rewrites_a_deleted_split_record_and_counts_earlier_wall_time(tmp_path):
    from pnl_da.engine.run import execute

    cfg = ssl_cfg(steps=8, eval_every=4)
    out = tmp_path / "run"
    first = Trainer(cfg, load_ssl_data(cfg)[0], out)  # as if killed after its step-4 checkpoint
    first.fit(stop_at=4)
    (out / "config.yaml").write_text(to_yaml_text(cfg))
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=False)["wall_time_s"]
    assert saved > 0 and not (out / "labeled_indices.json").exists()
    second = Trainer(cfg, load_ssl_data(cfg)[0], out)
    assert second.resume() and second.earlier_wall_time == saved
    result = execute(cfg, out, resume=True, log=lambda m: None)
    record = json.loads((out / "labeled_indices.json").read_text())
    assert record["labeled"] == load_ssl_data(cfg)[1]["labeled"]
    assert result["wall_time_s"] >= saved


def test_check_saved_split_accepts_only_the_subset_the_run_started_with(tmp_path):
    def check_saved_split(out_dir, record):
        task = SemiSupervised(ssl_cfg())
        task.split = record  # as drawn by load()
        task.check_resume(out_dir)

    record = {"split_seed": 3, "labeled": [4, 1, 9]}
    check_saved_split(tmp_path, record)  # nothing saved yet: nothing to compare
    (tmp_path / SPLIT_FILE).write_text(json.dumps(record))
    check_saved_split(tmp_path, record)
    with pytest.raises(UsageError, match="labeled subset"):
        check_saved_split(tmp_path, {**record, "labeled": [4, 1, 8]})


def test_oracle_best_is_the_step_with_the_highest_test_accuracy_of_the_reported_head(tmp_path):
    """The oracle figure picks the best logged evaluation of the reported prediction (falling
    back to the mean of the heads where a record lacks it), never the worst or the last."""

    records = [{"step": 100, "accuracy": {"a": 61.5, "b": 70.25, "mean": 66.0}},
               {"step": 200, "accuracy": {"a": 83.125, "b": 64.0, "mean": 74.5}},
               {"step": 300, "accuracy": {"a": 72.0, "b": 68.5, "mean": 71.0}}]
    path = tmp_path / "metrics.jsonl"
    assert oracle_best(path, "a") is None  # no metrics yet
    path.write_text("".join(json.dumps({**r, "lr": 0.1}) + "\n\n" for r in records))
    for head in ("a", "b", "mean"):
        best = max(records, key=lambda r: r["accuracy"][head])
        assert oracle_best(path, head) == {"step": best["step"],
                                           "error": 100 - best["accuracy"][head]}
    single = [{**r, "accuracy": {"mean": r["accuracy"]["mean"]}} for r in records]
    path.write_text("".join(json.dumps(r) + "\n" for r in single))  # a one-head run
    best = max(records, key=lambda r: r["accuracy"]["mean"])
    assert oracle_best(path, "a")["step"] == best["step"]


@pytest.mark.parametrize("argv,code,words", [
    (["ssl", "mnist-sample", "--labels", "25"], 2, "not divisible"),
    (["ssl", "mnist-sample", "--labels", "0"], 2, "--labels"),
    (["ssl", "mnist-sample", "--labels", "-10"], 2, "--labels"),
    (["ssl", "mnist-sample", "--labels", "50000"], 2, "--labels"),
    (["ssl", "mnist-sample"], 2, "--labels N is required"),
    (["ssl", "imagenet", "--labels", "10"], 2, "unknown SSL dataset"),
    (["ssl", "office31", "--labels", "31"], 2, "pnl-da run office31"),
    (["run", "cifar10", "A->B"], 2, "pnl-da ssl cifar10"),
    (["run", "digits", "uci->mnist-sample", "--labels", "20"], 2, "pnl-da ssl"),
    (["ssl", "cifar10", "--labels", "40", "method=dann"], 2, "unknown method"),
    (["ssl", "mnist-sample", "--labels", "20", "method.eval_ema=1.5"], 2, "method.eval_ema"),
    (["ssl", "mnist-sample", "--labels", "20", "method=mean_teacher", "method.eval_ema=0.9"], 2,
     "already scores its EMA teacher"),
    # numbers that could only crash after the run folder is written, or train nothing
    (["ssl", "mnist-sample", "--labels", "20", "seed=-1"], 2, "'seed'; use a number >= 0"),
    (["ssl", "mnist-sample", "--labels", "20", "--split-seed", "-1"], 2, "(--split-seed)"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.batch_size=0"], 2,
     "'trainer.batch_size'; use a number > 0"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.unlabeled_batch_size=-3"], 2,
     "trainer.unlabeled_batch_size"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.lr=-1"], 2, "'trainer.lr'"),
    # the bounds named are the true ones: 0 is refused too, unless trainer.epochs sets the length
    (["ssl", "mnist-sample", "--labels", "20", "trainer.steps=0"], 2,
     "'trainer.steps'; use a number >= 1"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.steps=-5"], 2,
     "'trainer.steps'; use a number >= 1"),
    (["ssl", "mnist-sample", "--labels", "20", "method=pnl_paper", "trainer.epochs=-1"], 2,
     "'trainer.epochs'; use a number >= 1"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.eval_every=0"], 2, "trainer.eval_every"),
    (["ssl", "mnist-sample", "--labels", "20", "method=pnl_paper", "trainer.steps=30",
      "trainer.epochs=2"], 2, "both set the run's length"),
    (["ssl", "mnist-sample", "--labels", "20", "--split-seed", "3", "dataset.split_seed=7"], 2,
     "given twice"),
    (["ssl", "mnist-sample", "--labels", "20", "method=fixmatch", "ssl.model=shared"], 2,
     "fixmatch trains one network"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.steps=[1"], 2,
     "cannot read override 'trainer.steps=[1'"),
    (["ssl", "mnist-sample", "--labels", "20", "trainer.stepz=1"], 2, "`pnl-da ssl ..."),
    # options that mean nothing in a semi-supervised run of the method
    (["ssl", "mnist-sample", "--labels", "20", "method.align=dann"], 2,
     "a semi-supervised run has one dataset"),
    (["ssl", "mnist-sample", "--labels", "20", "method=supervised",
      "trainer.unlabeled_batch_size=128"], 2, "supervised reads no unlabeled images"),
    (["ssl", "mnist-sample", "--labels", "20", "method.positive_threshold=0",
      "method.positive_weight=2"], 2, "method.positive_threshold=0"),
    (["ssl", "mnist-sample", "--labels", "3999"], 2, "use at most --labels 3450"),
    (["run", "digits", "uci->mnist-sample", "--split-seed", "2"], 2,
     "--split-seed belongs to semi-supervised runs"),
])
def test_bad_ssl_input_is_one_line_and_the_right_exit_code(argv, code, words, capsys, tmp_path):
    out = tmp_path / "out" / "mnist-sample-20" / "seed0"  # nested, as the default run folders
    assert main(argv + ["--out", str(out)] if argv[0] == "ssl" else argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_or_truncated_dataset_files_are_data_errors(tmp_path, capsys):
    args = ["--data-root", str(tmp_path), "--out", str(tmp_path / "out" / "cifar10-40" / "seed0")]
    assert main(["ssl", "cifar10", "--labels", "40", *args]) == 3
    err = capsys.readouterr().err
    assert "pnl-da download cifar10" in err and len(err.strip().splitlines()) == 1
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"\x80\x02}q")  # a truncated pickle
    assert main(["ssl", "cifar10", "--labels", "40", *args]) == 3
    err = capsys.readouterr().err
    assert "data_batch_1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# -- a short real-data run ---------------------------------------------------------------------

def test_pnl_beats_supervised_on_mnist_sample_with_20_labels(tmp_path):
    """Real MNIST digits, 20 labels, 400 steps, seed 0: PNL (two heads on one LeNet teaching
    each other aimed pseudo-negative labels, plus confident positives and distribution
    alignment, on the unlabeled pool; shared mode for speed, dual mode is trained in the resume
    test) must beat labeled-only training by at least 5 points of test error. Full-length
    figures over 5 seeds: benchmarks/results/ssl_mnist.md."""
    errors = {}
    for method in ("supervised", "pnl"):
        shared = ["ssl.model=shared"] if method == "pnl" else []  # supervised: one network
        cfg = ssl_cfg(f"method={method}", *shared, steps=400, eval_every=400)
        data, _ = load_ssl_data(cfg)
        result = Trainer(cfg, data).fit()
        errors[method] = 100 - result["evaluation"]["heads"][cfg.method.predict]["accuracy"]
    assert errors["pnl"] < errors["supervised"] - 5, errors
