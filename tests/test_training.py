"""A short real-data run: UCI digits -> MNIST sample, LeNet, on the CPU.

Chance is 10%; source-only reaches about 55% here. The margins below are what a working
method must add within 300 steps (a tenth of the default schedule).
"""

import pytest

from pnl_da.engine.tasks import load_data
from pnl_da.engine.trainer import Trainer
from tests.conftest import make_cfg

STEPS = 300


@pytest.fixture(scope="module")
def accuracies():
    result = {}
    for method in ("source_only", "dann", "pnl"):
        cfg = make_cfg(f"method={method}", steps=STEPS, eval_every=STEPS)
        trainer = Trainer(cfg, load_data(cfg))
        result[method] = trainer.fit()["evaluation"]["heads"]["mean"]["accuracy"]
    return result


def test_source_only_learns_the_source_task(accuracies):
    assert accuracies["source_only"] > 40.0


def test_dann_beats_source_only(accuracies):
    assert accuracies["dann"] > accuracies["source_only"] + 3.0, accuracies


def test_pnl_beats_source_only_and_dann(accuracies):
    assert accuracies["pnl"] > accuracies["source_only"] + 15.0, accuracies
    assert accuracies["pnl"] > accuracies["dann"] + 5.0, accuracies
