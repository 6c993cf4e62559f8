"""MCC and MDD: pnl-da's losses against tllib's own code on fixed inputs
(tests/fixtures/tllib_losses.json, made by benchmarks/tllib_losses_fixture.py from tllib's
source outside this repository), and what each loss must do on inputs with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pnl_da.losses.confusion import MinimumClassConfusionLoss
from pnl_da.losses.margin import ClassificationMarginDisparityDiscrepancy

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "tllib_losses.json").read_text())


def tensor(values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("case", FIXTURE["mcc"], ids=lambda c: f"T{c['temperature']}")
def test_mcc_gives_tllibs_value_and_gradient(case):
    logits = tensor(case["logits"], grad=True)
    loss = MinimumClassConfusionLoss(case["temperature"])(logits.double())
    loss.backward()
    assert loss.item() == pytest.approx(case["loss"], abs=1e-5)
    assert torch.allclose(logits.grad, tensor(case["grad"]), atol=1e-5)


@pytest.mark.parametrize("case", FIXTURE["mdd"], ids=lambda c: f"margin{c['margin']}")
def test_mdd_gives_tllibs_value_and_gradients(case):
    y_s, y_t = tensor(case["y_s"]), tensor(case["y_t"])
    y_s_adv, y_t_adv = tensor(case["y_s_adv"], grad=True), tensor(case["y_t_adv"], grad=True)
    mdd = ClassificationMarginDisparityDiscrepancy(case["margin"])(y_s, y_s_adv, y_t, y_t_adv)
    mdd.backward()
    assert mdd.item() == pytest.approx(case["mdd"], abs=1e-5)
    assert torch.allclose(y_s_adv.grad, tensor(case["grad_s_adv"]), atol=1e-5)
    assert torch.allclose(y_t_adv.grad, tensor(case["grad_t_adv"]), atol=1e-5)


def test_mcc_is_zero_without_confusion_and_highest_when_every_class_is_confused():
    """One-hot predictions of distinct classes confuse nothing; identical uniform predictions
    put all the mass off the diagonal but 1/C of it."""
    sure = torch.eye(10) * 200.0  # ten images, each certain of its own class
    assert MinimumClassConfusionLoss(1.0)(sure).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(10, 10)
    assert MinimumClassConfusionLoss(1.0)(uniform).item() == pytest.approx(0.9, abs=1e-6)


def test_mdd_pushes_the_adversarial_head_to_agree_on_source_and_disagree_on_target():
    """Where the adversarial head copies the main head on the source and contradicts it on the
    target, MDD is near its largest (0); where it contradicts on the source, far below."""
    y = torch.eye(4) * 20.0
    other = torch.roll(y, 1, dims=1)  # every image's argmax moved to another class
    agree_then_differ = ClassificationMarginDisparityDiscrepancy(4.0)(y, y, y, other)
    differ_then_agree = ClassificationMarginDisparityDiscrepancy(4.0)(y, other, y, y)
    assert agree_then_differ.item() == pytest.approx(0.0, abs=1e-5)
    assert differ_then_agree.item() < -50.0


# -- the methods ----------------------------------------------------------------------------------

SHORT = ["trainer.steps=30", "trainer.eval_every=30", "trainer.progress=false",
         "trainer.device=cpu"]


def test_mdd_reversal_follows_tllibs_iteration_schedule():
    from pnl_da.methods.mdd import mdd_grl_coeff

    assert mdd_grl_coeff(0) == 0.0
    assert mdd_grl_coeff(1000) == pytest.approx(0.2 / (1 + torch.exp(torch.tensor(-1.0))).item()
                                                - 0.1)
    assert mdd_grl_coeff(100_000) == pytest.approx(0.1, abs=1e-9)


@pytest.mark.parametrize("method", ["mcc", "mdd"])
def test_mcc_and_mdd_train_log_their_term_and_evaluate_to_their_result(method, tmp_path,
                                                                        capsys):
    """A short run writes its transfer term, and the saved model (MDD: its perceptron head)
    scores what result.json says."""
    from tests.test_cli import run_cli

    out = tmp_path / method
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", f"method={method}", *SHORT,
                           "--out", str(out))
    assert code == 0, err
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["losses"]) == {"cls", "transfer", "total"}
    if method == "mdd":
        assert 0 < record["grl_coeff"] < 0.1
    result = json.loads((out / "result.json").read_text())
    code, stdout, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["accuracy"] == pytest.approx(
        result["metrics"]["accuracy"], abs=1e-9)


def test_the_mdd_gradient_trains_the_adversary_towards_mdd_and_the_features_away():
    """The adversary's gradient is that of -MDD (it ascends MDD); the backbone's is -coeff
    times it, through the reversal layer (it descends MDD)."""
    from omegaconf import OmegaConf

    from pnl_da.methods.base import Batch
    from pnl_da.methods.mdd import MDD, MDDConfig
    from pnl_da.models.heads import Classifier

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8))
    model = Classifier(backbone, 8, 3)
    method = MDD(OmegaConf.structured(MDDConfig()), model, 3).eval()  # no dropout
    x_s, x_t = torch.randn(6, 12), torch.randn(6, 12)
    batch = Batch({"none": x_s}, torch.tensor([0, 1, 2, 0, 1, 2]), {"none": x_t})
    transfer = method.losses(batch, step=5000)["transfer"]
    coeff = method.coeff
    weight, adversary = backbone[1].weight, list(method.adversary.parameters())
    reversed_grads = torch.autograd.grad(transfer, [weight, *adversary])

    def minus_mdd(features):
        return -method.discrepancy(model.heads[0](features[:6]), method.adversary(features[:6]),
                                   model.heads[0](features[6:]), method.adversary(features[6:]))

    features = torch.cat([model(x_s)[0], model(x_t)[0]])
    plain = torch.autograd.grad(minus_mdd(features), [weight, *adversary])
    assert 0 < coeff < 0.1 and plain[0].abs().sum() > 0
    assert torch.allclose(reversed_grads[0], -coeff * plain[0], atol=1e-7)
    for got, want in zip(reversed_grads[1:], plain[1:]):
        assert torch.allclose(got, want, atol=1e-7)


def test_pnl_stacks_mcc_and_its_options_are_checked(tmp_path, capsys):
    from tests.test_cli import assert_one_line_error, run_cli

    out = tmp_path / "pnl-mcc"
    code, _, err = run_cli(capsys, "run", "digits", "uci->ms", *SHORT, "--out", str(out))
    assert code == 0, err  # the default: PNL on DANN and MCC
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"cls", "transfer", "nl", "mcc"} <= set(record["losses"])
    for argv, fragment in [(["method.mcc_weight=0", "method.mcc_temperature=3"],
                            "method.mcc_weight=0"),
                           (["method=mcc", "method.temperature=0"], "'method.temperature'"),
                           (["method=mdd", "method.margin=-1"], "'method.margin'")]:
        code, _, err = run_cli(capsys, "run", "digits", "uci->ms", *argv, *SHORT,
                               "--out", str(tmp_path / "bad"))
        assert_one_line_error(code, err, 2, fragment)


def test_office_benchmarks_take_tllibs_mcc_and_mdd_recipes_and_the_command_line_wins():
    """configs/benchmark_method/: tllib's mcc.sh / mdd.sh settings for that benchmark and
    method only; other methods keep the benchmark's, and an override still wins."""
    from pnl_da.engine.tasks import compose
    from pnl_da.errors import UsageError

    def recipe(*overrides):
        cfg = compose(list(overrides))
        return (cfg.trainer.steps, cfg.trainer.batch_size, cfg.trainer.lr, cfg.trainer.lr_gamma,
                cfg.trainer.weight_decay, cfg.backbone.bottleneck_dim)

    assert recipe("benchmark=office31", "method=mcc") == (10000, 36, 0.005, 0.001, 1e-3, 1024)
    assert recipe("benchmark=office31", "method=mdd") == (20000, 32, 0.004, 2e-4, 5e-4, 1024)
    assert recipe("benchmark=officehome", "method=mdd")[-1] == 2048
    assert compose(["benchmark=visda2017", "method=mcc"]).method.temperature == 3.0
    assert recipe("benchmark=office31", "method=dann") == (20000, 32, 0.01, 0.001, 1e-3, 256)
    assert compose(["benchmark=officehome", "method=mdd"]).method.width == 2048
    assert recipe("method=mcc") == recipe("method=dann")  # digits: MCC has no recipe of its own
    assert recipe("method=mdd")[-1] == 1024  # tllib's MDD bottleneck, on digits too
    assert recipe("benchmark=office31", "method=mdd", "trainer.lr=0.02",
                  "backbone.bottleneck_dim=512")[2::3] == (0.02, 512)
    with pytest.raises(UsageError, match="benchmark_method follows benchmark= and method="):
        compose(["benchmark_method=office31_mcc"])
