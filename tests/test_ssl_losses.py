"""Where the semi-supervised losses send their gradient: Mean Teacher's consistency, FixMatch's
pseudo labels and pnl_paper's stabilization / pseudo-negative split. Tiny hand-made models and
batches, no training."""

import pytest
import torch
from torch import nn

from pnl_da.engine.tasks import compose
from pnl_da.losses.consistency import softmax_mse_per_image
from pnl_da.methods.base import Batch
from pnl_da.methods.fixmatch import FixMatch
from pnl_da.methods.mean_teacher import MeanTeacher
from pnl_da.methods.pnl_paper import PNLPaper, stability
from pnl_da.models.heads import Classifier


def method_cfg(name: str):
    """The packaged semi-supervised config of one method."""
    return compose([f"method={name}", "dataset=mnist-sample", "dataset.labels=20",
                    "trainer.device=cpu"], mode="ssl").method


def linear_model(classes: int = 3, width: int = 4) -> Classifier:
    # no BatchNorm: images in one forward cannot reach each other's gradient
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(width, width)), width, classes)


def grads(loss: torch.Tensor, tensors) -> list[torch.Tensor]:
    """d loss / d each tensor, zeros where the loss does not depend on it."""
    found = torch.autograd.grad(loss, list(tensors), retain_graph=True, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(found, tensors)]


# -- the softmax-MSE consistency ----------------------------------------------------------------

def test_softmax_mse_sends_gradient_to_the_prediction_and_never_to_the_target():
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3, requires_grad=True)
    loss = softmax_mse_per_image(logits, target).sum()
    d_logits, d_target = grads(loss, [logits, target])
    assert d_logits.abs().sum() > 0
    assert torch.count_nonzero(d_target) == 0


# -- Mean Teacher ------------------------------------------------------------------------------

def test_mean_teacher_consistency_trains_the_student_and_never_the_teacher():
    """The student on weak2 moves towards the teacher on weak: the consistency's gradient reaches
    the student's weights and its view, never the teacher's weights or view (even if the
    teacher's weights asked for gradients)."""
    torch.manual_seed(0)
    method = MeanTeacher(method_cfg("mean_teacher"), linear_model(), num_classes=3)
    method.set_progress(1.0)  # full consistency weight
    with torch.no_grad():  # a teacher unlike the student, so the consistency is not at 0
        for p in method.teacher.parameters():
            p.add_(torch.randn_like(p))
    method.teacher.requires_grad_(True)
    weak = torch.randn(5, 4, requires_grad=True)
    weak2 = torch.randn(5, 4, requires_grad=True)
    batch = Batch({"weak": torch.randn(2, 4)}, torch.tensor([0, 1]),
                  {"weak": weak, "weak2": weak2})
    consistency = method.losses(batch, step=0)["consistency"]
    assert consistency.requires_grad and consistency.item() > 0

    student = list(method.model.parameters())
    teacher = list(method.teacher.parameters())
    d = grads(consistency, [*student, *teacher, weak, weak2])
    d_student, d_teacher = d[:len(student)], d[len(student):-2]
    d_weak, d_weak2 = d[-2:]
    assert all(g.abs().sum() > 0 for g in d_student)
    assert all(torch.count_nonzero(g) == 0 for g in d_teacher)
    assert d_weak2.abs().sum() > 0 and torch.count_nonzero(d_weak) == 0


def test_mean_teacher_consistency_weight_ramps_linearly_as_usb_warms_up():
    # USB's unsup_warmup: weight * min(1, t / (0.4 T)); the same batch at three points of the
    # run scales the consistency by exactly that factor
    torch.manual_seed(0)
    method = MeanTeacher(method_cfg("mean_teacher"), linear_model(), num_classes=3)
    with torch.no_grad():
        for p in method.teacher.parameters():
            p.add_(torch.randn_like(p))
    batch = Batch({"weak": torch.randn(2, 4)}, torch.tensor([0, 1]),
                  {"weak": torch.randn(5, 4), "weak2": torch.randn(5, 4)})
    values = {}
    for progress in (0.1, 0.2, 0.4, 0.9):
        method.set_progress(progress)
        values[progress] = method.losses(batch, step=0)["consistency"].item()
    assert values[0.2] == pytest.approx(2 * values[0.1], rel=1e-5)
    assert values[0.4] == pytest.approx(4 * values[0.1], rel=1e-5)
    assert values[0.9] == pytest.approx(values[0.4], rel=1e-6)  # full weight after the ramp


# -- FixMatch ----------------------------------------------------------------------------------

def confident_model() -> Classifier:
    """Logits = 10 x the input: a one-hot input is a confident prediction of its class."""
    model = Classifier(nn.Flatten(), 3, 3)
    with torch.no_grad():
        model.heads[0].weight.copy_(10 * torch.eye(3))
        model.heads[0].bias.zero_()
    return model


def fixmatch_batch(weak: torch.Tensor, strong: torch.Tensor) -> Batch:
    return Batch({"weak": torch.eye(3)[:2]}, torch.tensor([0, 1]),
                 {"weak": weak, "strong": strong})


def test_fixmatch_pseudo_labels_train_the_strong_view_only():
    """The weak view only labels: the pseudo-label loss is the strong view's cross-entropy
    against the weak view's argmax, with gradient through the strong view and none through
    the weak one."""
    method = FixMatch(method_cfg("fixmatch"), confident_model(), num_classes=3)
    weak = torch.eye(3)[[0, 1, 2, 0]].requires_grad_(True)  # confident: classes 0, 1, 2, 0
    strong = torch.tensor([[0.0, 0.1, 0.0], [0.2, 0.0, 0.1], [0.1, 0.3, 0.0],
                           [0.0, 0.0, 0.2]], requires_grad=True)
    losses = method.losses(fixmatch_batch(weak, strong), step=0)
    assert losses["mask_rate"].item() == 1.0  # every weak view is above the threshold

    d_weak, d_strong = grads(losses["pseudo"], [weak, strong])
    assert torch.count_nonzero(d_weak) == 0
    assert (d_strong.abs().sum(1) > 0).all()  # every image's strong view is trained
    labels = weak.detach().argmax(1)  # the model's logits are 10 x its input
    expected = method.cfg.weight * nn.functional.cross_entropy(10 * strong.detach(), labels)
    assert losses["pseudo"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_fixmatch_pseudo_loss_is_exactly_zero_when_no_weak_view_is_confident():
    method = FixMatch(method_cfg("fixmatch"), confident_model(), num_classes=3)
    weak = torch.full((4, 3), 0.05)  # near-uniform: top probability ~1/3 < the threshold
    strong = torch.eye(3)[[0, 1, 2, 0]].requires_grad_(True)  # confident, but unlabeled
    assert method.cfg.threshold > 0.5
    losses = method.losses(fixmatch_batch(weak, strong), step=0)
    assert losses["pseudo"].item() == 0.0 and losses["mask_rate"].item() == 0.0
    assert torch.count_nonzero(grads(losses["pseudo"], [strong])[0]) == 0


# -- pnl_paper: who learns from whom -----------------------------------------------------------

class LogitTable(nn.Module):
    """A stand-in for pnl_paper's dual model: each input is a row number, and each of the four
    logit outputs (A_cls, B_cls, A_cons, B_cons) is that row of a learnable table."""

    heads = (None, None)  # two prediction heads, as PNL requires

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)
        self.features_dim, self.prediction_heads = 1, 2

    def forward(self, rows):
        rows = rows.long()
        return self.table.new_zeros(len(rows), 1), [self.table[h, rows] for h in range(4)]


SURE, UNSURE = 4.0, 0.5  # top softmax over 3 classes: 0.96 and 0.45 (threshold 0.8)


def peak(c: int, height: float = SURE) -> list[float]:
    logits = [0.0, 0.0, 0.0]
    logits[c] = height
    return logits


# One unlabeled image per case: A's and B's class logits on views v1 and v2; whether A then
# learns from B (stabilization) and B from A, by the documented rule: X learns from Y where Y
# is stable and X is not, or both are and X's two views disagree more.
CASES = {
    # name: (A_v1, A_v2, B_v1, B_v2, A_learns, B_learns)
    "B stable, A views disagree": (peak(1, 2.0), peak(0), peak(0), peak(0), True, False),
    "both stable, A less": (peak(0, 3.0), peak(0, 6.0), peak(0, 5.0), peak(0, 5.0), True, False),
    "both stable, B less": (peak(0, 5.0), peak(0, 5.0), peak(0, 3.0), peak(0, 6.0), False, True),
    "A stable, B unsure": (peak(0), peak(0), peak(2, UNSURE), peak(2, UNSURE), False, True),
    "neither stable": (peak(0, UNSURE), peak(0, UNSURE), peak(1), peak(2), False, False),
}


def test_pnl_paper_stabilizes_the_less_stable_submodel_and_gives_negatives_elsewhere():
    """On each unlabeled image a submodel X gets either a stabilization target (towards the
    other submodel) or pseudo-negative labels, never both; labeled images get neither."""
    cfg = method_cfg("pnl_paper")
    cases = list(CASES.values())
    n = len(cases)
    # rows: labeled v1 | unlabeled v1 (one per case) | labeled v2 | unlabeled v2
    table = torch.zeros(4, 2 * (n + 1), 3)
    table[:2, 0] = table[:2, n + 1] = torch.tensor([1.0, 0.0, 0.0])  # the labeled image
    for i, (a1, a2, b1, b2, _, _) in enumerate(cases, start=1):
        table[0, i], table[0, n + 1 + i] = torch.tensor(a1), torch.tensor(a2)
        table[1, i], table[1, n + 1 + i] = torch.tensor(b1), torch.tensor(b2)
    method = PNLPaper(cfg, LogitTable(table), num_classes=3)
    method.generator = torch.Generator().manual_seed(0)
    method.set_progress(1.0)  # ramps at 1

    # the cases are what their names say
    u1, u2 = slice(1, n + 1), slice(n + 2, 2 * n + 2)
    stable_a, _ = stability(table[0, u1], table[0, u2], cfg.stabilization_threshold)
    stable_b, _ = stability(table[1, u1], table[1, u2], cfg.stabilization_threshold)
    assert stable_a.tolist() == [False, True, True, True, False]
    assert stable_b.tolist() == [True, True, True, False, False]

    row = torch.arange(2 * (n + 1)).float()
    batch = Batch({"weak": row[:1], "weak2": row[n + 1:n + 2]}, torch.tensor([0]),
                  {"weak": row[1:n + 1], "weak2": row[n + 2:]})
    losses = method.losses(batch, step=0)
    d_stab, d_nl = grads(losses["stabilization"], [method.model.table])[0], \
        grads(losses["nl"], [method.model.table])[0]
    for head, learns in ((0, [c[4] for c in cases]), (1, [c[5] for c in cases])):
        stabilized = (d_stab[head, u1].abs().sum(1) > 0).tolist()
        negatives = (d_nl[head, u1].abs().sum(1) > 0).tolist()
        assert stabilized == learns, (head, stabilized)
        assert negatives == [not x for x in learns], (head, negatives)
    # the labeled image and the second views get neither term
    for d in (d_stab, d_nl):
        assert torch.count_nonzero(d[:, 0]) == 0 and torch.count_nonzero(d[:, n + 1:]) == 0
