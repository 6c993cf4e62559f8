"""tllib's own MCC and MDD losses on fixed inputs, written to the JSON fixture that
tests/test_mcc_mdd.py compares pnl-da's losses with (tests/fixtures/tllib_losses.json).

tllib is not a dependency: check its source out anywhere outside this repository and pass the
folder holding its ``tllib`` package. Its package __init__ files import optional dependencies
(numba), so the subpackages used are mounted bare, without them.

    python benchmarks/tllib_losses_fixture.py /tmp/tllib_src tests/fixtures/tllib_losses.json
"""

from __future__ import annotations

import importlib
import json
import sys
import types

import torch


def mount_tllib(root: str) -> None:
    """Make tllib's subpackages importable without running their __init__ files."""
    src = root.rstrip("/") + "/tllib"
    for name in ("", ".modules", ".self_training", ".alignment", ".utils"):
        module = types.ModuleType("tllib" + name)
        module.__path__ = [src + name.replace(".", "/")]
        sys.modules.setdefault("tllib" + name, module)


def tllib_modules(root: str):
    mount_tllib(root)
    return (importlib.import_module("tllib.self_training.mcc"),
            importlib.import_module("tllib.alignment.mdd"))


def logits(seed: int, shape, scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def main() -> int:
    mcc_module, mdd_module = tllib_modules(sys.argv[1])
    cases: dict[str, list] = {"mcc": [], "mdd": []}
    for seed, shape, scale, temperature in [(0, (16, 10), 1.0, 2.5), (1, (16, 10), 4.0, 2.5),
                                            (2, (7, 31), 2.0, 1.0), (3, (64, 10), 8.0, 2.5)]:
        z = logits(seed, shape, scale).requires_grad_(True)
        loss = mcc_module.MinimumClassConfusionLoss(temperature)(z)
        loss.backward()
        cases["mcc"].append({"temperature": temperature, "logits": z.detach().tolist(),
                             "loss": loss.item(), "grad": z.grad.tolist()})
    for seed, shape, scale, margin in [(10, (16, 10), 1.0, 4.0), (11, (16, 10), 6.0, 4.0),
                                       (12, (9, 31), 3.0, 1.0), (13, (32, 10), 30.0, 4.0)]:
        ys, ysa, yt, yta = (logits(seed * 10 + i, shape, scale).requires_grad_(True)
                            for i in range(4))
        mdd = mdd_module.ClassificationMarginDisparityDiscrepancy(margin)(ys, ysa, yt, yta)
        mdd.backward()
        cases["mdd"].append({"margin": margin, "y_s": ys.detach().tolist(),
                             "y_s_adv": ysa.detach().tolist(), "y_t": yt.detach().tolist(),
                             "y_t_adv": yta.detach().tolist(), "mdd": mdd.item(),
                             "grad_s_adv": ysa.grad.tolist(), "grad_t_adv": yta.grad.tolist()})
    source = ("thuml/Transfer-Learning-Library c4aa59e: tllib/self_training/mcc.py "
              "MinimumClassConfusionLoss, tllib/alignment/mdd.py "
              "ClassificationMarginDisparityDiscrepancy, float64, made by "
              "benchmarks/tllib_losses_fixture.py")
    with open(sys.argv[2], "w") as handle:
        json.dump({"source": source, **cases}, handle)
    print({k: [round(c.get("loss", c.get("mdd")), 6) for c in v] for k, v in cases.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
