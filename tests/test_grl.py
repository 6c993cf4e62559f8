import math

import pytest
import torch

from pnl_da.methods import create_method
from pnl_da.models import create_classifier
from pnl_da.models.grl import WarmStartGRL, reverse_gradient, warm_start_coeff
from tests.conftest import make_cfg


@pytest.mark.parametrize("coeff", [0.0, 0.3, 1.0, 2.5])
def test_reverses_gradient_by_exactly_minus_lambda(coeff):
    x = torch.randn(5, 7, requires_grad=True)
    upstream = torch.randn(5, 7)
    y = reverse_gradient(x, coeff)
    assert torch.equal(y, x)  # identity forward
    y.backward(upstream)
    assert torch.allclose(x.grad, -coeff * upstream, atol=0, rtol=1e-6)


def test_warm_start_follows_progress_of_this_run():
    assert warm_start_coeff(0.0) == 0.0
    for p in (0.1, 0.5, 0.9):
        assert warm_start_coeff(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1)
    assert warm_start_coeff(1.0) == pytest.approx(0.9999092, abs=1e-6)
    grl = WarmStartGRL()
    x = torch.ones(3, requires_grad=True)
    grl.progress = 0.25
    grl(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -warm_start_coeff(0.25)))


def test_trainer_progress_drives_the_grl_for_any_run_length():
    # the coefficient depends on step / total steps, not on a fixed 1000-step horizon
    for steps in (100, 5000):
        cfg = make_cfg("method=dann", steps=steps)
        method = create_method(cfg.method, create_classifier(cfg.backbone, 10, 1, 28), 10)
        method.set_progress(50 / steps)
        assert method.alignment.grl.coeff == pytest.approx(warm_start_coeff(50 / steps))
