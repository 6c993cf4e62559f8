"""Each PNL option changes what the method trains on, checked against the option's definition.

The expected values are recomputed here from the model's own logits (model in eval mode: no
dropout, so a separate forward pass gives the same outputs as the method's joint one).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import pnl_da.methods.pnl as pnl_module
from pnl_da.losses.negative import negative_learning_loss, select_negatives
from pnl_da.methods import create_method, total_loss
from pnl_da.methods.base import Batch
from pnl_da.methods.pnl import sigmoid_rampup
from pnl_da.models import create_classifier
from tests.conftest import make_cfg

C = 10


def _pnl(*overrides, progress=0.5):
    cfg = make_cfg("method=pnl", "method.align=none", "method.ramp=0", *overrides)
    torch.manual_seed(0)
    method = create_method(cfg.method, create_classifier(cfg.backbone, C, 2, 28), C)
    method.generator = torch.Generator().manual_seed(0)
    method.set_progress(progress)
    method.eval()  # no dropout: outputs are a function of the inputs only
    return method


def _batch():
    g = torch.Generator().manual_seed(0)
    return Batch({"weak": torch.randn(8, 1, 28, 28, generator=g)},
                 torch.randint(0, C, (8,), generator=g),
                 {"weak": torch.randn(8, 1, 28, 28, generator=g),
                  "strong": torch.randn(8, 1, 28, 28, generator=g)})


def _logits(method, images):
    with torch.no_grad():
        return method.model(images)[1]


def _record_selection(monkeypatch):
    """Replace select_negatives inside PNL by a wrapper that keeps the generator
    probabilities it was given and the mask it returned."""
    seen = []

    def recording(probs, k, strategy, **kwargs):
        mask = select_negatives(probs, k, strategy, **kwargs)
        seen.append({"probs": probs.clone(), "mask": mask,
                     "learner_probs": kwargs["learner_probs"].clone()})
        return mask

    monkeypatch.setattr(pnl_module, "select_negatives", recording)
    return seen


def _record_learner_logits(monkeypatch):
    seen = []

    def recording(logits, negatives, *args, **kwargs):
        seen.append(logits.detach().clone())
        return negative_learning_loss(logits, negatives, *args, **kwargs)

    monkeypatch.setattr(pnl_module, "negative_learning_loss", recording)
    return seen


@pytest.mark.parametrize("generator_view,learner_view", [("same", "weak"), ("weak", "strong")])
def test_generator_view_decides_which_view_the_learner_is_trained_on(
        monkeypatch, generator_view, learner_view):
    # method.md section 2: with generator_view=weak the generator reads the weak view and the
    # learner is trained on the strong one; with "same" both read the target view
    method = _pnl(f"method.generator_view={generator_view}")
    probs_seen, logits_seen = _record_selection(monkeypatch), _record_learner_logits(monkeypatch)
    batch = _batch()
    method.losses(batch, 0)
    weak, strong = _logits(method, batch.target["weak"]), _logits(method, batch.target["strong"])
    assert not torch.allclose(weak[0], strong[0], atol=1e-3)  # the views are told apart
    learner_ref = strong if learner_view == "strong" else weak
    assert len(logits_seen) == len(probs_seen) == 2  # exchange=both: A -> B and B -> A
    for (gen, learn), picked, learner in zip([(0, 1), (1, 0)], probs_seen, logits_seen):
        assert torch.allclose(picked["probs"], torch.softmax(weak[gen], 1), atol=1e-5)
        assert torch.allclose(learner, learner_ref[learn], atol=1e-5)
        # what targeted selection reads as "the learner still believes": the learner's own
        # softmax on its own view
        assert torch.allclose(picked["learner_probs"], torch.softmax(learner_ref[learn], 1),
                              atol=1e-5)


def test_distribution_alignment_reshapes_the_generator_probabilities(monkeypatch):
    # ReMixMatch alignment: p~ = normalise(p * uniform / running_mean), each generator head
    # with its own running mean, updated by this batch (momentum 0.999) before it is applied
    method = _pnl("method.dist_align=true")
    method.train()
    method.model.eval()  # alignment in training mode (it updates), the network without dropout
    skews = [0, 5]
    for head, cls in enumerate(skews):  # head A over-predicts class 0, head B class 5
        mean = torch.full((C,), 0.5 / (C - 1))
        mean[cls] = 0.5
        method.dist_align[head].model_mean.copy_(mean)
    seen = _record_selection(monkeypatch)
    batch = _batch()
    method.losses(batch, 0)
    weak = _logits(method, batch.target["weak"])
    for (gen, _), picked, cls in zip([(0, 1), (1, 0)], seen, skews):
        raw = torch.softmax(weak[gen], 1)
        old = torch.full((C,), 0.5 / (C - 1))
        old[cls] = 0.5
        running = 0.999 * old + 0.001 * raw.mean(0)
        aligned = raw * (1.0 / C) / running
        expected = aligned / aligned.sum(1, keepdim=True)
        assert torch.allclose(picked["probs"], expected, atol=1e-5)
        assert not torch.allclose(picked["probs"], raw, atol=1e-3)  # alignment did something


def test_distribution_alignment_never_makes_the_generators_own_argmax_a_negative(monkeypatch):
    # method.md section 2: the generator's argmax is never a negative. Alignment divides by the
    # running mean, so a class the generator over-predicts can lose the top of the aligned
    # probabilities; it must still not be pushed down. k = C - 1: every other class is marked.
    method = _pnl("method.dist_align=true", f"method.k={C - 1}")
    method.model.eval()
    batch = _batch()
    raw = torch.softmax(_logits(method, batch.target["weak"])[0], 1)
    top = int(raw.argmax(1)[0])  # image 0's class under head A
    mean = torch.full((C,), 1e-3 / (C - 1))
    mean[top] = 1 - 1e-3  # head A (as seen by its running mean) predicts it almost always
    method.dist_align[0].model_mean.copy_(mean)
    seen = _record_selection(monkeypatch)
    method.losses(batch, 0)
    picked = seen[0]  # A -> B
    own = raw.argmax(1) == top
    assert (picked["probs"][own].argmax(1) != top).all()  # alignment moved the top class...
    assert not picked["mask"][own, top].any()  # ...and the generator's own top is spared
    assert (picked["mask"][own].sum(1) == C - 2).all()  # the aligned argmax is spared too
    # without alignment the same selection marks every class but the argmax
    plain = select_negatives(raw, C - 1, "random", generator=torch.Generator().manual_seed(0))
    assert (plain.sum(1) == C - 1).all() and not plain[own, top].any()


def test_total_loss_sums_every_term_but_the_metrics_a_method_declares():
    # no name is guessed from: a term that ends in _rate is a loss unless declared a metric
    losses = {"cls": torch.tensor(1.0), "x_rate": torch.tensor(2.0),
              "domain_acc": torch.tensor(4.0)}
    assert total_loss(losses).item() == 7.0
    assert total_loss(losses, frozenset({"domain_acc"})).item() == 3.0
    dann = create_method(make_cfg("method=dann").method,
                         create_classifier(make_cfg("method=dann").backbone, C, 1, 28), C)
    assert dann.logged_only() == {"domain_acc"}
    assert _pnl().logged_only() == frozenset()  # align=none: no discriminator


def test_positive_threshold_adds_cross_entropy_on_the_generators_confident_argmax():
    # the positive term: per exchange pair, CE of the learner against the generator's argmax,
    # counted where the generator's top probability reaches the threshold, averaged over the
    # whole batch (FixMatch's convention), summed over pairs and scaled by positive_weight
    batch = _batch()
    weak = _logits(_pnl(), batch.target["weak"])  # same seed: the same weights as below
    confidence = [torch.softmax(z, 1).max(1).values for z in weak]
    threshold = confidence[0].median().item()  # some images of head A pass, some do not
    # generator_view=same: the learner reads the weak view too, so its logits are weak[learn]
    method = _pnl(f"method.positive_threshold={threshold}", "method.positive_weight=0.5",
                  "method.generator_view=same")
    assert torch.allclose(_logits(method, batch.target["weak"])[0], weak[0])
    losses = method.losses(batch, 0)
    expected = 0.0
    for gen, learn in [(0, 1), (1, 0)]:
        probs = torch.softmax(weak[gen], 1)
        used = (probs.max(1).values >= threshold).float()
        ce = F.cross_entropy(weak[learn], probs.argmax(1), reduction="none")
        expected += (ce * used).mean().item()
    assert 0 < (confidence[0] >= threshold).sum() < len(confidence[0])
    assert expected > 0
    assert losses["positive"].item() == pytest.approx(0.5 * expected, rel=1e-4)


def _pairwise_abs_cosine(a, b):
    """Mean |cos| between every class vector of head A and every one of head B."""
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=2).abs().mean()


def test_head_diversity_penalty_is_added_and_vanishes_for_orthogonal_heads():
    # method.md section 5: a penalty on |W_A^T W_B| keeps the heads apart, so it must be a
    # positive term (weight * mean |cosine|) that is smallest, 0, when the heads are orthogonal
    method = _pnl("method.diversity=0.3")
    heads = method.model.heads
    batch = _batch()
    losses = method.losses(batch, 0)
    expected = 0.3 * _pairwise_abs_cosine(heads[0].weight, heads[1].weight).item()
    assert expected > 0
    assert losses["diversity"].item() == pytest.approx(expected, rel=1e-5)
    rest = total_loss({k: v for k, v in losses.items() if k != "diversity"})
    assert (total_loss(losses) - rest).item() == pytest.approx(expected, rel=1e-4)
    a = heads[0].weight.detach()
    with torch.no_grad():  # head B in the orthogonal complement of head A's class vectors
        projector = torch.eye(a.shape[1]) - a.T @ torch.linalg.solve(a @ a.T, a)
        heads[1].weight.copy_(torch.randn(C, a.shape[1]) @ projector)
    orthogonal = method.losses(batch, 0)["diversity"].item()
    with torch.no_grad():  # collapsed heads: the worst case
        heads[1].weight.copy_(a)
    collapsed = method.losses(batch, 0)["diversity"].item()
    assert orthogonal == pytest.approx(0.0, abs=1e-5)
    assert orthogonal < expected < collapsed
    assert collapsed == pytest.approx(0.3 * _pairwise_abs_cosine(a, a).item(), rel=1e-5)


@pytest.mark.parametrize("length", [0.3, 1.0])
def test_sigmoid_rampup_follows_its_formula_then_stays_at_one(length):
    # method.md section 2: w_nl ramps as exp(-5 (1 - t/T)^2) for t < T, then stays 1
    for fraction in (0.0, 0.1, 0.5, 0.9):
        t = fraction * length
        assert sigmoid_rampup(t, length) == pytest.approx(math.exp(-5 * (1 - t / length) ** 2))
    assert sigmoid_rampup(0.0, length) < 0.01  # starts near 0
    for t in (length, length + 0.01, 1.0 + length):
        assert sigmoid_rampup(t, length) == 1.0
    assert sigmoid_rampup(0.0, 0.0) == 1.0  # no ramp: full weight from the first step


def test_negative_learning_weight_is_ramped_by_the_runs_progress():
    # the same step (same batch, same negatives) early in the ramp and after it: the nl loss
    # differs exactly by the ramp factor, and after the ramp it is weight * the raw loss
    batch = _batch()
    early = _pnl("method.ramp=0.5", "method.weight=2.0", progress=0.1)
    late = _pnl("method.ramp=0.5", "method.weight=2.0", progress=0.6)
    unramped = _pnl("method.weight=1.0", progress=0.6)
    nl_early, nl_late = early.losses(batch, 0)["nl"].item(), late.losses(batch, 0)["nl"].item()
    nl_raw = unramped.losses(batch, 0)["nl"].item()
    assert nl_raw > 0
    assert nl_late == pytest.approx(2.0 * nl_raw, rel=1e-5)
    assert nl_early == pytest.approx(2.0 * nl_raw * math.exp(-5 * (1 - 0.1 / 0.5) ** 2), rel=1e-5)


def test_confidence_above_every_prediction_leaves_no_negative_learning():
    # method.confidence reaches the selection: an untrained model is never 99.9% sure, so no
    # image gets negatives and the nl loss is exactly 0; without the gate it is not
    batch = _batch()
    gated = _pnl("method.confidence=0.999")
    top = max(torch.softmax(z, 1).max().item() for z in _logits(gated, batch.target["weak"]))
    assert top < 0.999
    assert gated.losses(batch, 0)["nl"].item() == 0.0
    assert _pnl().losses(batch, 0)["nl"].item() > 0
