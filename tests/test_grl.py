import json
import math
from dataclasses import replace

import pytest
import torch

from pnl_da.data.base import DomainData
from pnl_da.engine.tasks import load_data
from pnl_da.engine.trainer import Trainer
from pnl_da.methods import create_method
from pnl_da.methods.base import Batch
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


def _ganin(progress, alpha):
    """Ganin et al.'s warm start, written out: 2 / (1 + exp(-alpha p)) - 1."""
    return 2 / (1 + math.exp(-alpha * progress)) - 1


@pytest.fixture(scope="module")
def digits_data():
    """The bundled digits task, with the evaluation set cut to 32 images (one evaluation per
    step below; what is evaluated does not matter for the GRL)."""
    data = load_data(make_cfg("method=dann"))
    full = data.target_eval
    return replace(data, target_eval=DomainData(full.images[:32], full.labels[:32], full.name,
                                                full.split))


@pytest.mark.parametrize("steps", [3, 5])
def test_trainer_progress_drives_the_grl_for_any_run_length(tmp_path, digits_data, steps):
    # method.md section 6: the coefficient follows p = progress of *this* run. Each record of
    # metrics.jsonl follows a step; the record after the s-th step (counted from 1) shows the
    # coefficient that step was trained with, p = (s - 1) / steps
    alpha = 4.0
    cfg = make_cfg("method=dann", f"method.grl_alpha={alpha}", "trainer.batch_size=16",
                   steps=steps, eval_every=1)
    Trainer(cfg, digits_data, tmp_path).fit()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for r in records:
        expected = _ganin((r["step"] - 1) / steps, alpha)
        assert r["grl_coeff"] == pytest.approx(expected, abs=1e-5), r["step"]
    assert records[-1]["grl_coeff"] > 0.5  # the last step is near the end of this run


def _dann(*overrides):
    cfg = make_cfg("method=dann", *overrides)
    torch.manual_seed(0)
    method = create_method(cfg.method, create_classifier(cfg.backbone, 10, 1, 28), 10)
    method.eval()  # no dropout: the gradient is a function of the inputs only
    return method


def test_method_grl_uses_the_configured_alpha():
    # the coefficient at a given progress is 2 / (1 + exp(-alpha p)) - 1 with method.grl_alpha,
    # and the gradient the features get from the domain loss scales with it
    g = torch.Generator().manual_seed(0)
    batch = Batch({"none": torch.randn(8, 1, 28, 28, generator=g)},
                  torch.randint(0, 10, (8,), generator=g),
                  {"none": torch.randn(8, 1, 28, 28, generator=g)})
    progress, grads, coeffs = 0.2, {}, {}
    for alpha in (2.0, 10.0):
        method = _dann(f"method.grl_alpha={alpha}")
        method.set_progress(progress)
        coeffs[alpha] = _ganin(progress, alpha)
        assert method.alignment.grl.coeff == pytest.approx(coeffs[alpha], rel=1e-6)
        transfer = method.losses(batch, 0)["transfer"]
        (grads[alpha],) = torch.autograd.grad(transfer, method.model.backbone[0].weight)
    assert coeffs[2.0] < 0.5 * coeffs[10.0]  # the two alphas are far apart here
    assert grads[10.0].abs().sum() > 0
    assert torch.allclose(grads[2.0] * coeffs[10.0], grads[10.0] * coeffs[2.0],
                          rtol=1e-4, atol=1e-9)
