"""The options every method has, and those of the adversarial alignment (DANN / CDAN). Each
method's own dataclass (``options`` on its class) extends them; its defaults are the
domain-adaptation defaults, and a YAML under configs/ names only what it changes."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from pnl_da.choice import Predict, View


@dataclass
class MethodConfig:
    name: str = MISSING
    heads: int = 1  # classifier heads on the shared features
    source_view: View = View.none  # augmentation of the source (labeled) batch
    target_view: View = View.none  # augmentation of the target batch the alignment sees
    predict: Predict = Predict.mean  # test-time prediction: a | b | mean (of the softmaxes)
    # > 0: score the run with an exponential moving average of the weights with this decay
    # (USB scores every algorithm so, with 0.999); 0: the trained weights themselves
    eval_ema: float = 0.0


# Bounds of numeric options: name -> (lowest, highest or None, lowest excluded), checked at
# composition (pnl_da/config.py) for the method that has them.
COMMON_RANGES: dict[str, tuple] = {}
ADVERSARIAL_RANGES = {"trade_off": (0, None, False), "grl_alpha": (0, None, False),
                      "disc_hidden": (0, None, True), "randomized_dim": (0, None, True)}
ADVERSARIAL = ("trade_off", "disc_hidden", "grl_alpha", "entropy", "randomized",
               "randomized_dim")
CDAN_ONLY = ("entropy", "randomized", "randomized_dim")  # options of CDAN's conditioning


@dataclass
class AdversarialOptions:
    """Options of the adversarial alignment (DANN / CDAN), shared by every method that aligns."""

    trade_off: float = 1.0
    disc_hidden: int = 1024
    grl_alpha: float = 10.0  # coefficient 2 / (1 + exp(-alpha p)) - 1, p = progress of the run
    entropy: bool = False  # CDAN+E: entropy conditioning
    randomized: bool = False  # CDAN: randomized multilinear map instead of the full outer product
    randomized_dim: int = 1024
