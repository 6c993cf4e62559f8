import math

import pytest
import torch

from pnl_da.losses.negative import negative_learning_loss, select_negatives
from pnl_da.methods import create_method
from pnl_da.methods.base import Batch
from pnl_da.models import create_classifier
from tests.conftest import make_cfg

CLASSES = [2, 10, 31, 345]


def _probs(batch, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(batch, classes, generator=g) * 3, dim=1)


@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("strategy", ["random", "lowest", "sampled"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_selects_min_k_c_minus_1_classes_never_the_argmax(classes, strategy, k):
    probs = _probs(256, classes)
    mask = select_negatives(probs, k, strategy, generator=torch.Generator().manual_seed(1))
    assert mask.shape == probs.shape and mask.dtype == torch.bool
    assert (mask.sum(1) == min(k, classes - 1)).all()
    assert not mask.gather(1, probs.argmax(1, keepdim=True)).any()


@pytest.mark.parametrize("classes", CLASSES)
def test_random_with_replacement_gives_one_to_k_distinct_classes(classes):
    probs = _probs(512, classes)
    mask = select_negatives(probs, 2, "random", replacement=True,
                            generator=torch.Generator().manual_seed(3))
    counts = mask.sum(1)
    assert ((counts >= 1) & (counts <= min(2, classes - 1))).all()
    assert not mask.gather(1, probs.argmax(1, keepdim=True)).any()
    if classes == 10:  # 1 in 9 draws repeats: both counts occur
        assert (counts == 1).any() and (counts == 2).any()


@pytest.mark.parametrize("classes", CLASSES)
def test_threshold_marks_classes_below_tau_at_most_k(classes):
    probs = _probs(256, classes)
    tau, k = 0.02, 4
    mask = select_negatives(probs, k, "threshold", tau=tau)
    below = (probs < tau)
    below.scatter_(1, probs.argmax(1, keepdim=True), False)
    assert (mask <= below).all()  # only classes below tau
    assert (mask.sum(1) == below.sum(1).clamp(max=min(k, classes - 1))).all()
    # the chosen ones are the lowest of those below tau
    worst_chosen = torch.where(mask, probs, torch.zeros_like(probs)).max(1).values
    best_unchosen = torch.where(below & ~mask, probs, torch.ones_like(probs)).min(1).values
    assert (worst_chosen <= best_unchosen).all()


@pytest.mark.parametrize("classes", CLASSES)
def test_targeted_picks_the_learners_likeliest_among_the_generators_sure_negatives(classes):
    gen, learner = _probs(256, classes, seed=0), _probs(256, classes, seed=1)
    tau, k = 0.05, 3
    mask = select_negatives(gen, k, "targeted", tau=tau, learner_probs=learner)
    allowed = gen < tau
    allowed.scatter_(1, gen.argmax(1, keepdim=True), False)
    assert (mask <= allowed).all()  # reliable: below tau in the generator, never its argmax
    assert (mask.sum(1) == allowed.sum(1).clamp(max=min(k, classes - 1))).all()
    # among those, the learner's most probable classes (where the loss still has a gradient)
    least_chosen = torch.where(mask, learner, torch.ones_like(learner)).min(1).values
    most_unchosen = torch.where(allowed & ~mask, learner, torch.zeros_like(learner)).max(1).values
    assert (least_chosen >= most_unchosen).all()


def test_runner_up_is_targeted_without_the_learners_own_argmax():
    gen, learner = _probs(512, 10, seed=2), _probs(512, 10, seed=3)
    targeted = select_negatives(gen, 2, "targeted", tau=0.2, learner_probs=learner)
    runner_up = select_negatives(gen, 2, "runner_up", tau=0.2, learner_probs=learner)
    learner_top = learner.argmax(1, keepdim=True)
    assert targeted.gather(1, learner_top).any()  # the case it exists for occurs here
    assert not runner_up.gather(1, learner_top).any()
    spared = ~targeted.gather(1, learner_top).squeeze(1)  # images where both rules agree
    assert torch.equal(runner_up[spared], targeted[spared])


@pytest.mark.parametrize("strategy", ["targeted", "runner_up"])
def test_targeted_needs_the_learners_probabilities(strategy):
    with pytest.raises(ValueError, match="learner"):
        select_negatives(_probs(4, 10), 2, strategy)


def test_targeted_negatives_carry_more_gradient_than_random_ones():
    # the learner is confidently wrong on class 3, which the generator rules out
    gen = torch.full((1, 10), 0.01).index_fill_(1, torch.tensor([0]), 0.91)
    logits = torch.zeros(1, 10).index_fill_(1, torch.tensor([3]), 5.0).requires_grad_()
    mask = select_negatives(gen, 1, "targeted", learner_probs=torch.softmax(logits, 1))
    assert mask[0].nonzero().flatten().tolist() == [3]
    negative_learning_loss(logits, mask).backward()
    assert logits.grad[0, 3] > 0.5  # gradient descent lowers the wrong class's logit


@pytest.mark.parametrize("strategy", ["random", "lowest", "sampled", "targeted"])
def test_classes_outside_allowed_are_never_marked_and_the_next_ones_are_taken(strategy):
    gen, learner = _probs(256, 10, seed=4), _probs(256, 10, seed=5)
    allowed = torch.ones(10, dtype=torch.bool)
    allowed[[2, 7]] = False
    kwargs = {"learner_probs": learner, "tau": 1.0}  # tau 1: every non-argmax is a candidate
    mask = select_negatives(gen, 3, strategy, allowed=allowed, **kwargs)
    assert not mask[:, ~allowed].any()
    # still k per image: the skipped classes are replaced, not just dropped
    assert (mask.sum(1) == 3).all()
    unrestricted = select_negatives(gen, 3, strategy, **kwargs)
    assert unrestricted[:, ~allowed].any()  # without the gate those classes are picked


def test_random_with_replacement_respects_allowed():
    allowed = torch.tensor([True, False, True, True, False])
    mask = select_negatives(_probs(512, 5, seed=6), 3, "random", replacement=True,
                            allowed=allowed, generator=torch.Generator().manual_seed(0))
    assert not mask[:, ~allowed].any() and mask.any()


def test_share_floor_spares_a_class_the_generator_has_stopped_predicting(monkeypatch):
    import pnl_da.methods.pnl as pnl_module

    seen = []

    def recording(probs, k, strategy, **kwargs):
        mask = select_negatives(probs, k, strategy, **kwargs)
        seen.append((kwargs["allowed"], mask))
        return mask

    monkeypatch.setattr(pnl_module, "select_negatives", recording)
    method = _pnl("method.share_floor=0.8", "method.k=9")  # k=9: every non-argmax class
    method.train()
    for share in method.class_share:  # class 4 has vanished from both generators' predictions
        share.model_mean.fill_(0.1).index_fill_(0, torch.tensor([4]), 0.0)
    method.losses(_batch(), 0)
    assert len(seen) == 2
    for allowed, mask in seen:
        assert not allowed[4] and allowed.sum() == 9
        assert not mask[:, 4].any() and mask.any()
    off = _pnl("method.k=9")  # default: no gate, no extra state in the checkpoint
    assert off.class_share is None
    assert not any(key.startswith("class_share") for key in off.state_dict())


@pytest.mark.parametrize("strategy", ["lowest", "threshold"])
def test_confidence_gate_drops_the_negatives_of_unsure_images_only(strategy):
    # images whose top probability is below `confidence` get no negatives; the others keep
    # exactly the negatives they get without the gate
    probs = _probs(256, 10, seed=7)
    top = probs.max(1).values
    confidence = top.median().item()  # half the images are sure, half are not
    sure = top >= confidence
    gated = select_negatives(probs, 3, strategy, tau=0.2, confidence=confidence)
    free = select_negatives(probs, 3, strategy, tau=0.2)
    assert sure.any() and (~sure).any() and free[~sure].any()
    assert not gated[~sure].any()
    assert torch.equal(gated[sure], free[sure])


def test_lowest_picks_the_least_likely_classes():
    probs = torch.tensor([[0.5, 0.3, 0.05, 0.1, 0.05 - 1e-3, 1e-3]])
    mask = select_negatives(probs, 2, "lowest")
    assert mask[0].nonzero().flatten().tolist() == [4, 5]


def test_sampled_prefers_unlikely_classes():
    probs = torch.tensor([[0.55, 0.44, 0.005, 0.005]]).repeat(4000, 1)
    mask = select_negatives(probs, 1, "sampled", generator=torch.Generator().manual_seed(0))
    freq = mask.float().mean(0)
    # weights 1 - p: 0.56 for class 1 vs 0.995 for classes 2, 3
    assert freq[0] == 0 and freq[1] < freq[2] and freq[1] < freq[3]
    assert freq[1].item() == pytest.approx(0.56 / (0.56 + 2 * 0.995), abs=0.03)


def test_selection_runs_on_the_device_of_its_input():
    probs = _probs(8, 31).to("meta")
    assert select_negatives(probs, 3, "lowest").device.type == "meta"


def test_empty_batch_and_empty_selection_give_zero_not_nan():
    empty = torch.zeros(0, 10, requires_grad=True)
    mask = select_negatives(torch.zeros(0, 10), 2, "random")
    loss = negative_learning_loss(empty, mask)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()  # still differentiable
    logits = torch.randn(4, 10, requires_grad=True)
    none = select_negatives(torch.softmax(logits, 1), 2, "threshold", tau=0.0)
    assert not none.any()
    loss = negative_learning_loss(logits, none)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_negative_learning_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    negatives = torch.tensor([[False, True, True], [True, False, False]])
    p = torch.softmax(logits, 1)
    eps = 1e-7
    row0 = (-math.log(1 - p[0, 1].item() + eps) - math.log(1 - p[0, 2].item() + eps)) / 2
    row1 = -math.log(1 - p[1, 0].item() + eps)
    expected = (row0 + row1) / 2
    assert negative_learning_loss(logits, negatives, eps).item() == pytest.approx(expected,
                                                                                 rel=1e-6)
    # an image without negatives does not dilute the mean
    with_empty = torch.cat([negatives, torch.zeros(1, 3, dtype=torch.bool)])
    logits3 = torch.cat([logits, torch.zeros(1, 3)])
    assert negative_learning_loss(logits3, with_empty, eps).item() == pytest.approx(expected,
                                                                                   rel=1e-6)


def _pnl(*overrides):
    cfg = make_cfg("method=pnl", "method.align=none", "method.ramp=0", *overrides)
    torch.manual_seed(0)
    method = create_method(cfg.method, create_classifier(cfg.backbone, 10, 2, 28), 10)
    method.generator = torch.Generator().manual_seed(0)
    method.set_progress(0.5)
    return method


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 28, 28, generator=g)
    return Batch({"weak": x}, torch.randint(0, 10, (8,), generator=g),
                 {"weak": torch.randn(8, 1, 28, 28, generator=g),
                  "strong": torch.randn(8, 1, 28, 28, generator=g)})


@pytest.mark.parametrize("step,learner,generator", [(0, 1, 0), (1, 0, 1)])
def test_alternate_exchange_trains_only_the_learner_head_with_nl(step, learner, generator):
    method = _pnl("method.exchange=alternate")
    method.eval()  # no dropout: the gradient is a function of the inputs only
    losses = method.losses(_batch(), step)
    heads = method.model.heads
    grads = torch.autograd.grad(losses["nl"], [heads[learner].weight, heads[generator].weight],
                                allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert grads[1] is None or grads[1].abs().sum() == 0


def test_both_exchange_trains_both_heads_with_nl():
    method = _pnl("method.exchange=both")
    method.eval()
    losses = method.losses(_batch(), 0)
    grads = torch.autograd.grad(losses["nl"], [h.weight for h in method.model.heads])
    assert all(g.abs().sum() > 0 for g in grads)


def test_a_ceiling_drops_the_negatives_of_images_at_or_above_their_own_bar():
    probs = _probs(64, 10, seed=3)
    top = probs.max(1).values
    bar = torch.where(torch.arange(64) % 2 == 0, top, top + 0.01)  # even images reach theirs
    capped = select_negatives(probs, 3, "lowest", ceiling=bar)
    free = select_negatives(probs, 3, "lowest")
    even = torch.arange(64) % 2 == 0
    assert not capped[even].any() and torch.equal(capped[~even], free[~even])
    # one number for every image
    assert torch.equal(select_negatives(probs, 3, "lowest", ceiling=float(top.median())),
                       free & (top < top.median()).unsqueeze(1))


def test_pnl_stacked_gives_negatives_only_where_the_positives_bar_leaves_an_image_out():
    # FreeMatch's bars start at 1/C, which every top probability reaches: no image is left out,
    # so there is no negative; FixMatch's 0.95 leaves out every image of a fresh model, so the
    # negatives are those of the plain method
    stacked = ["method.positive_threshold=0.95", "method.negatives_on=unconfident"]
    losses = _pnl(*stacked, "method.positives=freematch").losses(_batch(), 0)
    assert losses["nl"].item() == 0 and losses["positive"].item() > 0
    fixed = _pnl(*stacked, "method.positives=fixed").losses(_batch(), 0)
    plain = _pnl("method.positive_threshold=0.95").losses(_batch(), 0)
    assert fixed["nl"].item() == pytest.approx(plain["nl"].item()) and plain["nl"].item() > 0
    # FlexMatch's bars: a memory per target image, sized by the trainer; at first every image
    # passes, so again no image is left out
    method = _pnl(*stacked, "method.positives=flexmatch")
    method.bind_sizes(source=8, target=20)
    batch = _batch()
    batch.target_index = torch.arange(8) + 4
    assert method.losses(batch, 0)["nl"].item() == 0
    assert all(bars.remembered.shape == (20,) for bars in method.bars)
    assert float(method.bars[0].learning_effect.sum()) == 0  # nothing confident yet
