import json

import pytest
import torch

from pnl_da.engine.tasks import load_data
from pnl_da.engine.trainer import Trainer
from tests.conftest import make_cfg


@pytest.mark.parametrize("method", ["pnl", "cdan"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, method):
    overrides = [f"method={method}"]
    if method == "cdan":
        overrides += ["method.randomized=true", "method.entropy=true"]
    cfg = make_cfg(*overrides, steps=24, eval_every=8)
    data = load_data(cfg)

    straight = Trainer(cfg, data, tmp_path / "straight")
    straight.fit()

    first = Trainer(cfg, data, tmp_path / "interrupted")
    first.fit(stop_at=16)  # as if killed after the checkpoint at step 16
    del first
    second = Trainer(cfg, data, tmp_path / "interrupted")
    assert second.resume() and second.step == 16
    second.fit()

    a, b = straight.method.state_dict(), second.method.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logs = [_metrics(tmp_path / name) for name in ("straight", "interrupted")]
    assert [r["step"] for r in logs[1]] == [8, 16, 24]  # nothing logged twice
    assert logs[0] == logs[1]


def _metrics(run_dir):
    """metrics.jsonl without its timings, which differ from run to run."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("steps_per_s"), r.pop("data_wait_fraction")
    return records


def test_a_different_seed_gives_different_weights(tmp_path):
    data = load_data(make_cfg("method=dann"))
    w = []
    for seed in (0, 1):
        t = Trainer(make_cfg("method=dann", f"seed={seed}", steps=5, eval_every=5), data)
        t.fit()
        w.append(t.method.model.heads[0].weight.detach().clone())
    assert not torch.equal(w[0], w[1])

