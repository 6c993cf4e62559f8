import pytest

from pnl_da.engine.threads import share_cores

share_cores()  # before torch is imported, as the command line does: beside a demo, share cores
import torch  # noqa: E402

from pnl_da.engine.tasks import compose  # noqa: E402

TASK = ["benchmark.source=uci", "benchmark.target=mnist-sample"]


def make_cfg(*overrides: str, steps: int = 20, eval_every: int = 10):
    """A real configuration, shortened for tests (CPU, no progress bar)."""
    return compose(TASK + [f"trainer.steps={steps}", f"trainer.eval_every={eval_every}",
                           "trainer.progress=false", "trainer.device=cpu", *overrides])


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)
    yield


def one_line_error(excinfo) -> str:
    """The message of a raised error, checked to be the contract's single non-empty line."""
    message = str(excinfo.value)
    assert message and "\n" not in message and message.strip() == message
    return message


@pytest.fixture(autouse=True, scope="session")
def _image_cache(tmp_path_factory):
    """Decoded images go to a folder of the test session, not the user's cache (subprocesses
    started by tests inherit it)."""
    import os

    os.environ["PNL_DA_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))
    yield
