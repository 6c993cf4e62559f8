"""GPU-only checks, run by benchmarks/gpu_check.sh on a machine with CUDA."""

import pytest
import torch

from pnl_da.engine.tasks import load_data
from pnl_da.engine.trainer import Trainer
from tests.conftest import make_cfg

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("method", ["pnl", "cdan"])
def test_gpu_training_uses_bf16_channels_last_and_learns(method):
    cfg = make_cfg(f"method={method}", "trainer.device=cuda", steps=300, eval_every=300)
    trainer = Trainer(cfg, load_data(cfg))
    assert trainer.bf16 and trainer.channels_last
    assert trainer.source.images.is_cuda and trainer.target.images.is_cuda
    result = trainer.fit()
    accuracy = result["evaluation"]["heads"]["mean"]["accuracy"]
    assert accuracy > 40.0  # chance is 10%


def test_gpu_resume_continues_from_the_checkpoint(tmp_path):
    cfg = make_cfg("method=pnl", "trainer.device=cuda", steps=40, eval_every=20)
    data = load_data(cfg)
    first = Trainer(cfg, data, tmp_path)
    first.fit(stop_at=20)
    second = Trainer(cfg, data, tmp_path)
    assert second.resume() and second.step == 20
    second.fit()
    assert second.step == 40


def test_gpu_host_memory_stream_copies_batches_to_the_device():
    cfg = make_cfg("method=dann", "trainer.device=cuda", "data.on_device=false", steps=5,
                   eval_every=5)
    trainer = Trainer(cfg, load_data(cfg))
    assert not trainer.source.images.is_cuda and trainer.source.images.is_pinned()
    batch = trainer.next_batch()
    assert batch.labels.is_cuda and batch.source["none"].is_cuda
    trainer.fit()


def test_gpu_compiled_backbone_trains_and_checkpoints_like_eager(tmp_path):
    cfg = make_cfg("method=dann", "trainer.device=cuda", "trainer.compile=true", steps=20,
                   eval_every=20)
    trainer = Trainer(cfg, load_data(cfg), tmp_path)
    trainer.fit()
    keys = set(trainer.method.state_dict())
    assert not any("_orig_mod" in k for k in keys)  # checkpoints load into an eager model


def test_gpu_cuda_graph_backbone_learns_resumes_and_evaluates(tmp_path):
    # the backbone's forward and backward replay as CUDA graphs (reduce-overhead), whose outputs
    # are reused from step to step; training, evaluation and a resume must all still work
    cfg = make_cfg("method=pnl", "trainer.device=cuda", "trainer.cuda_graphs=true", steps=300,
                   eval_every=150)
    data = load_data(cfg)
    first = Trainer(cfg, data, tmp_path)
    assert first.cuda_graphs
    first.fit(stop_at=150)
    second = Trainer(cfg, data, tmp_path)
    assert second.resume() and second.step == 150
    accuracy = second.fit()["evaluation"]["heads"]["mean"]["accuracy"]
    assert accuracy > 40.0  # chance is 10%
    assert not any("_orig_mod" in k for k in second.method.state_dict())


@pytest.mark.parametrize("method,extra", [("pnl", ["ssl.model=dual"]),
                                          ("pnl_paper", ["backbone=lenet", "trainer=digits"])])
def test_gpu_ssl_methods_train_with_two_networks_and_beat_chance(method, extra):
    from pnl_da.engine.tasks import compose, load_data

    cfg = compose(["dataset=mnist-sample", "dataset.labels=20", f"method={method}",
                   "trainer.device=cuda", "trainer.progress=false", "trainer.steps=300",
                   "trainer.eval_every=300", *extra], mode="ssl")
    data = load_data(cfg)
    trainer = Trainer(cfg, data)
    assert trainer.bf16 and len(trainer.optimizers) == 2
    accuracy = trainer.fit()["evaluation"]["heads"]["mean"]["accuracy"]
    assert accuracy > 40.0  # chance is 10%; 20 labels
