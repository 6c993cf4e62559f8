import math

import pytest
import torch
from torch import nn

from pnl_da.losses.adversarial import (
    ConditionalDomainAdversarialLoss,
    DomainAdversarialLoss,
    MultiLinearMap,
    RandomizedMultiLinearMap,
)
from pnl_da.methods import create_method
from pnl_da.methods.base import Batch
from pnl_da.models import create_classifier
from pnl_da.models.grl import WarmStartGRL, warm_start_coeff
from pnl_da.models.heads import DomainDiscriminator
from tests.conftest import make_cfg


def test_dann_loss_separates_separable_features():
    torch.manual_seed(0)
    f_s = torch.randn(64, 16) + 3.0  # two well separated clouds
    f_t = torch.randn(64, 16) - 3.0
    loss_fn = DomainAdversarialLoss(DomainDiscriminator(16, 64), WarmStartGRL())
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.1, momentum=0.9)
    first, _ = loss_fn(f_s, f_t)
    for _ in range(100):
        loss, acc = loss_fn(f_s, f_t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss_fn.eval()
    loss, acc = loss_fn(f_s, f_t)
    assert first.item() > 0.5
    assert loss.item() < 0.05
    assert acc.item() == 100.0


def test_dann_loss_reverses_gradient_into_features():
    torch.manual_seed(0)
    disc = DomainDiscriminator(8, 32)
    f_s = torch.randn(16, 8, requires_grad=True)
    f_t = torch.randn(16, 8)
    grl = WarmStartGRL()
    grl.progress = 1.0
    loss, _ = DomainAdversarialLoss(disc, grl)(f_s, f_t)
    (g_rev,) = torch.autograd.grad(loss, f_s)
    grl.progress = 0.0  # coefficient 0: nothing reaches the features
    loss0, _ = DomainAdversarialLoss(disc, grl)(f_s, f_t)
    (g_zero,) = torch.autograd.grad(loss0, f_s)
    assert g_rev.abs().sum() > 0 and g_zero.abs().sum() == 0
    # the same loss without reversal gives the opposite gradient
    logits = disc(torch.cat([f_s, f_t]))[:, 0]
    plain = 0.5 * (torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:16], torch.ones(16)) + torch.nn.functional.binary_cross_entropy_with_logits(
        logits[16:], torch.zeros(16)))
    (g_plain,) = torch.autograd.grad(plain, f_s)
    assert torch.allclose(g_rev, -warm_start_coeff(1.0) * g_plain, atol=1e-6)


def test_multilinear_map_is_the_flattened_outer_product():
    f, g = torch.randn(4, 5), torch.softmax(torch.randn(4, 3), 1)
    out = MultiLinearMap()(f, g)
    assert out.shape == (4, 15)
    assert torch.allclose(out.view(4, 3, 5), g[:, :, None] * f[:, None, :])


def _randomized_on(device):
    torch.manual_seed(0)
    m = RandomizedMultiLinearMap(5, 3, output_dim=64).to(device)
    f, g = torch.randn(4, 5, device=device), torch.softmax(torch.randn(4, 3, device=device), 1)
    return m, f, g, m(f, g)


def test_randomized_map_shape_and_buffers():
    m, f, g, out = _randomized_on("cpu")
    assert out.shape == (4, 64)
    assert set(dict(m.named_buffers())) == {"Rf", "Rg"}  # saved with the model, moved by .to()


def test_randomized_map_preserves_the_inner_products_of_the_full_map():
    # Why the randomized map may stand in for f (x) g (CDAN, section 3.1): in expectation over
    # the random matrices, <T(f, g), T(f', g')> = <f, f'> <g, g'> = <f (x) g, f' (x) g'>.
    # With a wide map the estimate is close for every pair, norms included.
    torch.manual_seed(1)
    m = RandomizedMultiLinearMap(6, 4, output_dim=400_000).double()
    f, g = torch.randn(5, 6, dtype=torch.float64), torch.softmax(torch.randn(5, 4), 1).double()
    random_map, full_map = m(f, g), MultiLinearMap()(f, g)
    estimate, exact = random_map @ random_map.T, full_map @ full_map.T
    scale = exact.diagonal().sqrt()
    assert torch.allclose(estimate / scale[:, None] / scale[None, :],
                          exact / scale[:, None] / scale[None, :], atol=0.03)


def test_randomized_map_runs_on_another_device():
    # "meta" is a real second device on every machine: the map must follow .to(device)
    m, f, g, out = _randomized_on("meta")
    assert out.device.type == "meta" and out.shape == (4, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_randomized_map_runs_on_cuda():
    m, f, g, out = _randomized_on("cuda")
    assert out.is_cuda and out.shape == (4, 64)


class _FixedLogits(nn.Module):
    """A discriminator that answers logit 0 for every row, whatever it is shown. The gradient
    of the BCE loss with respect to these logits is weight_i * (sigmoid(0) - label_i) / N, so
    it exposes the weight the loss gives each image."""

    def __init__(self, rows):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(rows, 1))

    def forward(self, x):
        return self.logits


def _entropy(p):
    return -(p * p.log()).sum(1)


def test_cdan_entropy_weights_sum_to_batch_and_favour_confident_images():
    # tllib's CDAN+E: w = 1 + exp(-H(g)), then w / sum(w) * N with N the source and target
    # images together (tllib normalises over the concatenated batch, not per domain)
    confident = torch.tensor([[0.98, 0.01, 0.01]])
    uniform = torch.full((1, 3), 1 / 3)
    p_s = torch.cat([confident, uniform])  # source: one confident row, one uniform row
    p_t = uniform.repeat(3, 1)  # target: three uniform rows (domains of unequal size)
    disc = _FixedLogits(5)
    loss_fn = ConditionalDomainAdversarialLoss(disc, WarmStartGRL(), MultiLinearMap(), True)
    loss, _ = loss_fn(torch.randn(2, 4), torch.randn(3, 4), p_s, p_t)
    (grad,) = torch.autograd.grad(loss, disc.logits)
    labels = torch.tensor([1.0, 1, 0, 0, 0])
    weights = grad[:, 0] * 5 / (0.5 - labels)
    assert weights[0] > weights[1]  # the confident image counts more than the unsure one
    assert weights.sum().item() == pytest.approx(5.0, rel=1e-5)
    raw = 1 + torch.exp(-_entropy(torch.cat([p_s, p_t])))
    assert torch.allclose(weights, raw / raw.sum() * 5, rtol=1e-4)
    # with logits 0 every row's BCE is log 2: normalised weights give a loss of exactly log 2
    assert loss.item() == pytest.approx(math.log(2), rel=1e-5)


def test_cdan_entropy_conditioning_off_or_on_equal_predictions_weights_all_images_alike():
    torch.manual_seed(0)
    disc = DomainDiscriminator(6 * 3, 16)
    loss_e = ConditionalDomainAdversarialLoss(disc, WarmStartGRL(), MultiLinearMap(), True)
    loss_p = ConditionalDomainAdversarialLoss(disc, WarmStartGRL(), MultiLinearMap(), False)
    f_s, f_t = torch.randn(8, 6), torch.randn(8, 6)
    uniform = torch.full((8, 3), 1 / 3)
    # with equal (uniform) predictions every weight is 1: CDAN+E equals CDAN
    a, _ = loss_e(f_s, f_t, uniform, uniform)
    b, _ = loss_p(f_s, f_t, uniform, uniform)
    assert torch.allclose(a, b, atol=1e-6)
    p = torch.softmax(torch.randn(8, 3) * 5, 1)  # unequal predictions: the weights differ
    a, _ = loss_e(f_s, f_t, p, p)
    b, _ = loss_p(f_s, f_t, p, p)
    assert not torch.allclose(a, b, atol=1e-4)


def _aligned_method(name, *overrides):
    cfg = make_cfg(f"method={name}", *overrides)
    torch.manual_seed(0)
    method = create_method(cfg.method, create_classifier(cfg.backbone, 10, 1, 28), 10)
    method.set_progress(0.5)
    method.eval()  # no dropout, fixed BatchNorm statistics: a function of the inputs only
    return method


def _digit_batch():
    g = torch.Generator().manual_seed(0)
    return Batch({"none": torch.randn(8, 1, 28, 28, generator=g)},  # DANN/CDAN: no augmentation
                 torch.randint(0, 10, (8,), generator=g),
                 {"none": torch.randn(8, 1, 28, 28, generator=g)})


@pytest.mark.parametrize("name", ["dann", "cdan"])
def test_transfer_loss_scales_linearly_with_trade_off(name):
    # losses["transfer"] = trade_off * adversarial loss: same weights, same batch, trade_off
    # 1 and 2 must give the same loss times 1 and 2
    batch = _digit_batch()
    one = _aligned_method(name, "method.trade_off=1.0").losses(batch, 0)["transfer"]
    two = _aligned_method(name, "method.trade_off=2.0").losses(batch, 0)["transfer"]
    assert one.item() > 0
    assert two.item() == pytest.approx(2 * one.item(), rel=1e-5)
