import pytest
import torch

from pnl_da.losses.adversarial import (
    ConditionalDomainAdversarialLoss,
    DomainAdversarialLoss,
    MultiLinearMap,
    RandomizedMultiLinearMap,
)
from pnl_da.models.grl import WarmStartGRL, warm_start_coeff
from pnl_da.models.heads import DomainDiscriminator


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


def test_randomized_map_shape_and_formula():
    m, f, g, out = _randomized_on("cpu")
    assert out.shape == (4, 64)
    assert torch.allclose(out, (f @ m.Rf) * (g @ m.Rg) / 8.0)
    assert set(dict(m.named_buffers())) == {"Rf", "Rg"}  # saved with the model, moved by .to()


def test_randomized_map_runs_on_another_device():
    # "meta" is a real second device on every machine: the map must follow .to(device)
    m, f, g, out = _randomized_on("meta")
    assert out.device.type == "meta" and out.shape == (4, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_randomized_map_runs_on_cuda():
    m, f, g, out = _randomized_on("cuda")
    assert out.is_cuda and out.shape == (4, 64)


def test_cdan_entropy_weights_sum_to_batch_and_favour_confident_images():
    torch.manual_seed(0)
    disc = DomainDiscriminator(6 * 3, 16)
    loss_e = ConditionalDomainAdversarialLoss(disc, WarmStartGRL(), MultiLinearMap(), True)
    loss_p = ConditionalDomainAdversarialLoss(disc, WarmStartGRL(), MultiLinearMap(), False)
    f_s, f_t = torch.randn(8, 6), torch.randn(8, 6)
    p = torch.softmax(torch.randn(8, 3) * 5, 1)
    le, acc = loss_e(f_s, f_t, p, p)
    lp, _ = loss_p(f_s, f_t, p, p)
    assert torch.isfinite(le) and torch.isfinite(lp) and 0 <= acc <= 100
    uniform = torch.full((8, 3), 1 / 3)
    # with equal (uniform) predictions every weight is 1: CDAN+E equals CDAN
    a, _ = loss_e(f_s, f_t, uniform, uniform)
    b, _ = loss_p(f_s, f_t, uniform, uniform)
    assert torch.allclose(a, b, atol=1e-6)
