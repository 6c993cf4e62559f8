"""Confidence thresholds that move with training (FreeMatch), and FreeMatch's fairness term.

FreeMatch (Wang et al., ICLR 2023), as USB implements it (semilearn/algorithms/freematch):
a *global* threshold tau_t, the exponential moving average (decay m) of the mean top
probability of the weak-view predictions q_b on unlabeled images, starting at 1/C:

    tau_t = m tau_{t-1} + (1 - m) mean_b max_c q_b(c)

and *local* class statistics p~_t, the moving average of the mean prediction vector (from
1/C each). Class c's threshold is tau_t(c) = tau_t p~_t(c) / max_k p~_t(k) (the top class gets
tau_t itself). The statistics are updated from the current batch before its mask is computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAdaptiveThreshold(nn.Module):
    """FreeMatch's self-adaptive thresholds. ``forward(probs)`` folds a batch of weak-view
    probabilities (B, C) into the averages (in training) and returns each image's threshold,
    that of its predicted class. The averages are buffers: checkpointed with the method.

    ``label_hist`` (the moving average of the histogram of predicted classes, from 1/C each) is
    kept for the fairness term."""

    def __init__(self, num_classes: int, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        uniform = torch.full((num_classes,), 1.0 / num_classes)
        self.register_buffer("tau", torch.tensor(1.0 / num_classes))
        self.register_buffer("p_model", uniform.clone())
        self.register_buffer("label_hist", uniform.clone())

    @torch.no_grad()
    def observe(self, probs: torch.Tensor) -> None:
        confidence, predicted = probs.max(dim=1)
        hist = torch.bincount(predicted, minlength=len(self.p_model)).float() / len(predicted)
        for average, batch in ((self.tau, confidence.mean()), (self.p_model, probs.mean(0)),
                               (self.label_hist, hist)):
            average.mul_(self.decay).add_(batch, alpha=1 - self.decay)

    def class_thresholds(self) -> torch.Tensor:
        return self.tau * self.p_model / self.p_model.max()

    @torch.no_grad()
    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        probs = probs.detach().float()
        if self.training and len(probs):
            self.observe(probs)
        return self.class_thresholds()[probs.argmax(dim=1)]


def fairness_loss(strong_logits: torch.Tensor, mask: torch.Tensor, p_model: torch.Tensor,
                  label_hist: torch.Tensor) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness term, to be minimised:

        L_f = sum_c P(c) log Q(c),   P = SumNorm(p~ / h~),   Q = SumNorm(p_bar / h_bar)

    (that is -H(P, Q)), where p~ and h~ are the moving averages of the mean weak-view prediction
    and of the histogram of predicted classes, p_bar is the mean strong-view prediction of the
    images the mask keeps and h_bar the histogram of their strong-view argmax. Only p_bar carries
    a gradient; a class no kept image predicts gets weight 0 in Q (USB's 1/0 -> 0), and the log
    takes 1e-12 (USB's). Zero when the mask keeps nothing."""
    keep = mask.bool()
    if not keep.any():
        return strong_logits.new_zeros((), dtype=torch.float32)
    probs = F.softmax(strong_logits[keep].float(), dim=1)
    hist = torch.bincount(probs.detach().argmax(dim=1), minlength=probs.shape[1]).float()
    hist = hist / hist.sum()
    q = probs.mean(0) * torch.where(hist > 0, 1.0 / hist.clamp_min(1e-12), torch.zeros_like(hist))
    q = q / q.sum()
    p = (p_model / label_hist).float()
    p = p / p.sum()
    return (p * torch.log(q + 1e-12)).sum()


class CurriculumThreshold(nn.Module):
    """FlexMatch's flexible thresholds (Zhang et al., NeurIPS 2021; USB's
    semilearn/algorithms/flexmatch). A memory holds, for each unlabeled image, the class it was
    last predicted with confidence >= ``cutoff`` (tau), or -1. With sigma(c) the number of images
    remembered as class c, the learning effect of c is

        beta(c) = sigma(c) / max(max_k sigma(k), #images never remembered)   (warm-up)
        beta(c) = sigma(c) / max_k sigma(k)                                  (without)

    and class c's threshold is tau M(beta(c)) with the convex M(x) = x / (2 - x). An image's
    threshold is its predicted class's, from the learning effects *before* its batch is
    remembered (USB's order); beta starts at 0, so at first every image passes. While every
    image is remembered alike (all -1 at the start) beta is left as it is (USB's)."""

    def __init__(self, num_classes: int, cutoff: float = 0.95, warmup: bool = True):
        super().__init__()
        self.cutoff, self.warmup = cutoff, warmup
        self.register_buffer("learning_effect", torch.zeros(num_classes))
        self.register_buffer("remembered", torch.full((0,), -1, dtype=torch.long))

    def size(self, num_images: int) -> None:
        """One memory slot per unlabeled image (before the module moves to its device)."""
        self.remembered = torch.full((num_images,), -1, dtype=torch.long)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a method rebuilt to evaluate a run (no data bound) takes the memory's size from it
        stored = state_dict.get(prefix + "remembered")
        if stored is not None and stored.shape != self.remembered.shape:
            self.remembered = torch.full(stored.shape, -1, dtype=torch.long,
                                         device=self.remembered.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def class_thresholds(self) -> torch.Tensor:
        beta = self.learning_effect
        return self.cutoff * beta / (2 - beta)

    @torch.no_grad()
    def observe(self, probs: torch.Tensor, index: torch.Tensor) -> None:
        confidence, predicted = probs.max(dim=1)
        sure = confidence >= self.cutoff
        self.remembered[index.to(self.remembered.device)[sure]] = predicted[sure]
        counts = torch.bincount(self.remembered + 1, minlength=len(self.learning_effect) + 1)
        if int(counts.max()) == len(self.remembered):  # every image remembered alike
            return
        top = counts.max() if self.warmup else counts[1:].max()
        self.learning_effect.copy_(counts[1:].float() / top.float())

    @torch.no_grad()
    def forward(self, probs: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        probs = probs.detach().float()
        thresholds = self.class_thresholds()[probs.argmax(dim=1)]
        if self.training and len(probs):
            if index is None:
                raise ValueError("flexible thresholds need each unlabeled image's index")
            self.observe(probs, index)
        return thresholds
