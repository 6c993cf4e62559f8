"""PNL: mutual learning with pseudo-negative labels between two heads on one backbone
(method.md section 5), optionally stacked on DANN or CDAN alignment.

Each head is a generator for the other: its argmax on a target image rules out one class, and
k of the remaining classes become pseudo-negative labels that the learner head is trained to
give low probability to. Generator probabilities are detached, so the negative-learning term
reaches only the learner head (and the shared backbone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pnl_da.choice import Align, Choice, Toggle, View
from pnl_da.errors import UsageError
from pnl_da.losses.adversarial import class_weighted
from pnl_da.losses.confusion import MinimumClassConfusionLoss
from pnl_da.losses.distribution import DistributionAlignment
from pnl_da.losses.negative import STRATEGIES, negative_learning_loss, select_negatives
from pnl_da.losses.thresholds import CurriculumThreshold, SelfAdaptiveThreshold
from pnl_da.methods.base import Batch, Method, logged_weights
from pnl_da.methods.fixmatch import confident_pseudo_label_loss
from pnl_da.methods.options import ADVERSARIAL_RANGES, AdversarialOptions, MethodConfig

# Momentum of the running class shares behind ``share_floor``: about the last 100 steps, so a
# class being absorbed is noticed while it happens (distribution alignment's 0.999 averages
# over most of a short run).
SHARE_MOMENTUM = 0.99
# Partial-set form: a class whose weight (its running share of the target predictions over the
# largest class's, ramped in) is below this is taken for absent from the target.
ABSENT_WEIGHT = 0.1


def sigmoid_rampup(progress: float, length: float) -> float:
    """``exp(-5 (1 - t/T)^2)`` for t < T, then 1; ``length`` T as a fraction of the run."""
    if length <= 0 or progress >= length:
        return 1.0
    phase = 1.0 - progress / length
    return math.exp(-5.0 * phase * phase)


def exchange_pairs(exchange: str, step: int) -> list[tuple[int, int]]:
    """(generator head, learner head) pairs of this step; steps count from 0.

    ``both``: A teaches B and B teaches A every step. ``alternate``: A -> B on the 1st, 3rd, ...
    step, B -> A on the 2nd, 4th, ...
    """
    if exchange == "both":
        return [(0, 1), (1, 0)]
    return [(0, 1)] if step % 2 == 0 else [(1, 0)]


def head_diversity(weight_a: torch.Tensor, weight_b: torch.Tensor) -> torch.Tensor:
    """Mean |W_A^T W_B| over class pairs, with each class vector scaled to unit length."""
    return (F.normalize(weight_a, dim=1) @ F.normalize(weight_b, dim=1).T).abs().mean()


def check_k(cfg, num_classes: int) -> None:
    """k distinct negatives besides the generator's argmax: at most C-1 exist (random
    selection with replacement draws k times and may repeat a class)."""
    if cfg.k > num_classes - 1 and not (cfg.selection == "random" and cfg.replacement):
        raise UsageError(f"method.k={cfg.k} but the data have {num_classes} classes, so at "
                         f"most {num_classes - 1} can be negatives besides the argmax; use "
                         f"method.k={num_classes - 1} (every other class) or less")


# the switches of the partial-set form's parts (its ablation)
PARTIAL_PARTS = ("partial_supervision", "partial_alignment", "partial_negatives")

# How the k pseudo-negative labels are chosen: the strategies of pnl_da/losses/negative.py
Selection = Choice("Selection", {name: name for name in STRATEGIES})


class Exchange(Choice):
    both = "both"  # A teaches B and B teaches A every step
    alternate = "alternate"  # A -> B on odd steps, B -> A on even ones


class GeneratorView(Choice):
    weak = "weak"
    same = "same"


class Positives(Choice):
    """How the bar of the confident positive labels is set (PNL stacked on a thresholding
    method): FixMatch's one bar, FreeMatch's self-adaptive bars or FlexMatch's curriculum
    bars, one set per generator."""

    fixed = "fixed"  # method.positive_threshold itself
    freematch = "freematch"  # pnl_da/losses/thresholds.py SelfAdaptiveThreshold
    flexmatch = "flexmatch"  # CurriculumThreshold, topped by method.positive_threshold


class NegativesOn(Choice):
    all = "all"  # every unlabeled image gives negatives
    unconfident = "unconfident"  # only the images below their positive bar


@dataclass
class PNLConfig(MethodConfig, AdversarialOptions):
    name: str = "pnl"
    heads: int = 2
    source_view: View = View.weak
    target_view: View = View.weak
    align: Align = Align.dann  # adversarial alignment stacked under PNL
    k: int = 2  # pseudo-negative labels per image
    selection: Selection = Selection.random
    replacement: bool = False  # random: draw with replacement (authors' code)
    tau: float = 0.05  # threshold, targeted, runner_up: classes with generator probability < tau
    exchange: Exchange = Exchange.both
    # weak: the generator sees the target's weak view, the learner its strong view (a third
    # pass of the backbone); same: both see the one view the alignment sees. The default and
    # the weight of 2 were chosen by the digits study's rule on its two choice tasks
    # (benchmarks/results/digits_tasks.md)
    generator_view: GeneratorView = GeneratorView.weak
    weight: float = 2.0  # maximum weight of the negative-learning term
    ramp: float = 0.3  # fraction of training over which that weight ramps up (0: none)
    confidence: float = 0.0  # generator confidence below which an image gives no negatives
    diversity: float = 0.0  # weight of the |W_A^T W_B| head-diversity penalty
    # Confident positive pseudo labels beside the negatives (method.md section 4's prototype
    # "PNL plus confident positive pseudo-labels"): where the generator's top probability
    # reaches positive_threshold, its argmax is also a label for the learner. 0: off.
    positive_threshold: float = 0.0
    positive_weight: float = 1.0
    positives: Positives = Positives.fixed  # the positives' bar: fixed, freematch, flexmatch
    # all: negatives on every image; unconfident: only on those the positives' bar leaves out
    # (the seed paper's point: low-confidence images still carry negatives)
    negatives_on: NegativesOn = NegativesOn.all
    # Distribution alignment (ReMixMatch) of the generator's probabilities before negatives and
    # positives are chosen: lifts classes the generator under-predicts.
    dist_align: bool = False
    # No pseudo-negative label on a class whose running share of the generator's predictions
    # (about the last 100 steps) is below share_floor times its expected share: a class being
    # absorbed by another is not pushed further down. 0: off. The expected share is uniform (as
    # distribution alignment's target), so on a data set with rare classes (SVHN) these are
    # spared more often.
    share_floor: float = 0.0
    # MCC stacked under PNL (as align stacks DANN or CDAN): the minimum class confusion of each
    # head's target predictions (pnl_da/losses/confusion.py), averaged over the two heads, with
    # this weight (MCC's trade-off; 0: off) and temperature. On by default: it won the digits
    # study's rule against PNL on DANN alone (0, the previous default) and on MCC alone
    # (benchmarks/results/digits_tasks.md)
    mcc_weight: float = 1.0
    mcc_temperature: float = 2.5
    # Partial-set form (docs/method.md, partial-set adaptation): class weights w(c) = s(c) /
    # max s, with s the running share of target images the two heads predict as c (about the
    # last 100 steps), ramped in with the negatives' weight. They weigh the source loss
    # (partial_supervision) and DANN's discriminator (partial_alignment, as PADA does), and a
    # class whose weight is below ABSENT_WEIGHT is a pseudo-negative label of every target
    # image (partial_negatives). auto: on where the run is partial-set (benchmark.partial).
    partial: Toggle = Toggle.auto
    partial_supervision: bool = True
    partial_alignment: bool = True
    partial_negatives: bool = True


class PNL(Method):
    name = "pnl"
    options = PNLConfig
    summary = ("PNL: two heads teach each other pseudo-negative labels on target images, "
               "stacked on DANN/CDAN and MCC")
    ssl_summary = ("PNL: two submodels (two networks, or two heads with ssl.model=shared) teach "
                   "each other pseudo-negative labels on unlabeled images")

    order = 30
    ranges = {**ADVERSARIAL_RANGES, "k": (0, None, True), "tau": (0, 1, True),
              "confidence": (0, 1, False), "positive_threshold": (0, 1, False),
              "ramp": (0, 1, False), "share_floor": (0, None, False), "weight": (0, None, False),
              "positive_weight": (0, None, False), "diversity": (0, None, False),
              "mcc_weight": (0, None, False), "mcc_temperature": (0, None, True)}

    @classmethod
    def alignment_of(cls, cfg) -> str:
        return cfg.align

    @classmethod
    def check_classes(cls, cfg, num_classes: int) -> None:
        check_k(cfg, num_classes)

    @classmethod
    def inert_options(cls, cfg) -> dict[str, str]:
        """Besides the alignment's: the options of selections that do not read them, and the
        positive labels' weight while they are off."""
        inert = super().inert_options(cfg)
        if cfg.selection not in ("threshold", "targeted", "runner_up"):
            inert["tau"] = (f"method.selection={cfg.selection} does not read it (threshold, "
                            "targeted and runner_up do)")
        if cfg.selection != "random":
            inert["replacement"] = (f"method.selection={cfg.selection} does not read it "
                                    "(random does)")
        if not cfg.positive_threshold:
            for key in ("positive_weight", "positives", "negatives_on"):
                inert[key] = ("it shapes the confident positive pseudo labels, which are off "
                              "(method.positive_threshold=0)")
        if not cfg.mcc_weight:
            inert["mcc_temperature"] = ("it scales the stacked MCC loss, which is off "
                                        "(method.mcc_weight=0)")
        if cfg.partial == "false":
            for key in PARTIAL_PARTS:
                inert[key] = ("it is a part of the partial-set form, which is off "
                              "(method.partial=false)")
        elif cfg.align != "dann":
            inert["partial_alignment"] = (f"it weighs DANN's discriminator, and {cfg.name} "
                                          f"aligns with method.align={cfg.align}")
        return inert

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        if getattr(model, "prediction_heads", len(model.heads)) != 2:
            raise UsageError("PNL needs two classifier heads; leave method.heads at 2")
        self.check_classes(cfg, num_classes)
        # one running class distribution per generator head (each submodel has its own bias)
        self.dist_align = (nn.ModuleList(DistributionAlignment(num_classes) for _ in range(2))
                           if cfg.dist_align else None)
        self.class_share = (nn.ModuleList(DistributionAlignment(num_classes, SHARE_MOMENTUM)
                                          for _ in range(2))
                            if cfg.share_floor > 0 else None)
        self.confusion = (MinimumClassConfusionLoss(cfg.mcc_temperature)
                          if cfg.mcc_weight > 0 else None)
        # the positives' moving bars, one set per generator head (FreeMatch's or FlexMatch's)
        self.bars = None
        if cfg.positive_threshold > 0 and cfg.positives == "freematch":
            self.bars = nn.ModuleList(SelfAdaptiveThreshold(num_classes) for _ in range(2))
        elif cfg.positive_threshold > 0 and cfg.positives == "flexmatch":
            self.bars = nn.ModuleList(CurriculumThreshold(num_classes, cfg.positive_threshold)
                                      for _ in range(2))

    def bind_task(self, partial_set: bool) -> None:
        cfg = self.cfg
        self.partial = cfg.partial == "true" or (cfg.partial == "auto" and partial_set)
        # the running share of target images each class is predicted for, both heads together
        self.target_share = (DistributionAlignment(self.num_classes, SHARE_MOMENTUM)
                             if self.partial else None)

    def class_weights(self) -> torch.Tensor:
        """Partial-set form: w(c) = s(c) / max s, blended from 1 with the negatives' ramp."""
        share = self.target_share.model_mean
        ramp = sigmoid_rampup(self.progress, self.cfg.ramp)
        return 1 - ramp + ramp * share / share.max().clamp_min(1e-12)

    def logged_values(self) -> dict:
        values = super().logged_values()
        if self.partial:
            values["class_weight"] = logged_weights(self.class_weights())
        return values

    def bind_sizes(self, source: int, target: int) -> None:
        if self.cfg.positive_threshold > 0 and self.cfg.positives == "flexmatch":
            for bars in self.bars:
                bars.size(target)

    def positive_bar(self, head: int, probs: torch.Tensor, batch: Batch):
        """Each image's bar for a positive label from generator ``head`` (a number: one bar)."""
        if self.bars is None:
            return self.cfg.positive_threshold
        if self.cfg.positives == "flexmatch":
            return self.bars[head](probs, batch.target_index)
        return self.bars[head](probs)

    def views(self) -> dict[str, tuple[str, ...]]:
        target = (self.cfg.target_view,)
        if self.cfg.generator_view == "weak":
            target += ("strong",)
        return {"source": (self.cfg.source_view,), "target": target}

    def nl_weight(self) -> float:
        return self.cfg.weight * sigmoid_rampup(self.progress, self.cfg.ramp)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        inputs = [batch.source[cfg.source_view], batch.target[cfg.target_view]]
        if cfg.generator_view == "weak":
            inputs.append(batch.target["strong"])
        outputs = self.forward_all(*inputs)
        source, target_gen = outputs[0], outputs[1]
        target_learn = outputs[2] if cfg.generator_view == "weak" else target_gen

        weight = absent = None
        if self.partial:
            predicted = torch.cat([z.detach().argmax(dim=1) for z in target_gen.logits[:2]])
            self.target_share.observe(F.one_hot(predicted, self.num_classes).float())
            weight = self.class_weights()
            if cfg.partial_negatives:
                absent = (weight < ABSENT_WEIGHT).expand(len(target_learn.features), -1)
        losses = {"cls": self.supervised_loss(source, batch.labels, weight
                                              if cfg.partial_supervision else None)}
        self.align(source, target_gen, losses,
                   class_weighted(weight, batch.labels)
                   if weight is not None and cfg.partial_alignment and cfg.align == "dann"
                   else None)
        if self.confusion is not None:
            confusion = sum(self.confusion(z) for z in target_gen.logits[:2]) / 2
            losses["mcc"] = cfg.mcc_weight * confusion

        nl = source.features.new_zeros((), dtype=torch.float32)
        positive = nl
        for gen_head, learn_head in exchange_pairs(cfg.exchange, step):
            probs = torch.softmax(target_gen.logits[gen_head].detach().float(), dim=1)
            allowed = None
            if self.class_share is not None:
                share = self.class_share[gen_head]
                allowed = share.observe(probs) >= cfg.share_floor * share.target
            own_top = None
            if self.dist_align is not None:
                # the aligned probabilities choose the negatives, but the class the generator
                # itself predicts is never one (method.md section 2): alignment can move the
                # top class, and the image's most likely class must not be pushed down
                own_top = probs.argmax(dim=1)
                probs = self.dist_align[gen_head](probs)
            learner_logits = target_learn.logits[learn_head]
            bar = (self.positive_bar(gen_head, probs, batch) if cfg.positive_threshold > 0
                   else None)
            negatives = select_negatives(probs, cfg.k, cfg.selection, tau=cfg.tau,
                                         replacement=cfg.replacement, confidence=cfg.confidence,
                                         generator=self.generator,
                                         learner_probs=torch.softmax(
                                             learner_logits.detach().float(), dim=1),
                                         allowed=allowed, protected=own_top,
                                         ceiling=bar if cfg.negatives_on == "unconfident"
                                         else None)
            nl = nl + negative_learning_loss(learner_logits, negatives)
            if absent is not None:  # the classes taken for absent: negatives of every image
                nl = nl + negative_learning_loss(learner_logits, absent)
            if bar is not None:
                term, _ = confident_pseudo_label_loss(probs, learner_logits, bar)
                positive = positive + term
        losses["nl"] = self.nl_weight() * nl
        if cfg.positive_threshold > 0:
            losses["positive"] = cfg.positive_weight * positive
        if cfg.diversity > 0:
            heads = self.model.heads
            losses["diversity"] = cfg.diversity * head_diversity(heads[0].weight, heads[1].weight)
        return losses
