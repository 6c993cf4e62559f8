"""Model selection without target labels: scores computed from target images only.

Every score here reads the model's predictions (and, for DEV, its features) on unlabeled target
images, never a target label, so that runs, or a sweep's settings, can be chosen on them. Each
says whether higher or lower is better (``BETTER``), and ``pnl-da report`` measures how well it
ranks runs against the true target accuracy.

* ``entropy``: the mean entropy of the predictions (lower is better: a confident model).
* ``im``: information maximisation (Shi and Sha 2012, SHOT's objective): the entropy of the mean
  prediction minus the mean entropy (higher is better: confident and diverse).
* ``snd``: soft neighbourhood density (Saito et al., ICCV 2021): the L2-normalised softmax
  outputs' similarity to every other target image, softmaxed with temperature 0.05; the mean
  entropy of those rows (higher is better: target images sit in dense clusters).
* ``dev``: deep embedded validation (You et al., ICML 2019), where the source has a held-out
  labeled split: the held-out source loss weighted by the density ratio target/source of its
  features (a logistic-regression domain classifier), with its control variate (lower is
  better).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BETTER = {"entropy": "lower", "im": "higher", "snd": "higher", "dev": "lower"}
SND_TEMPERATURE = 0.05  # the SND paper's
MAX_IMAGES = 2000  # SND compares every pair: a fixed subset bounds its cost


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Row-wise entropy (nats) of probability rows."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)


def mean_entropy(probs: torch.Tensor) -> float:
    return float(entropy(probs).mean())


def information_maximisation(probs: torch.Tensor) -> float:
    return float(entropy(probs.mean(0, keepdim=True))[0] - entropy(probs).mean())


def soft_neighbourhood_density(probs: torch.Tensor,
                               temperature: float = SND_TEMPERATURE) -> float:
    """Mean entropy of each image's softmaxed similarity to the others (itself left out)."""
    if probs.shape[0] < 2:
        return 0.0
    unit = F.normalize(probs.double(), dim=1)
    similarity = unit @ unit.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    return float(entropy(torch.softmax(similarity, dim=1)).mean())


def deep_embedded_validation(source_features: torch.Tensor, source_losses: torch.Tensor,
                             target_features: torch.Tensor, seed: int = 0) -> float:
    """DEV: the held-out source loss, weighted by the density ratio w(x) = p_t(x) / p_s(x)
    from a domain classifier on the features, minus its control variate."""
    from sklearn.linear_model import LogisticRegression

    features = torch.cat([source_features, target_features]).double().numpy()
    domains = [0] * len(source_features) + [1] * len(target_features)
    classifier = LogisticRegression(max_iter=1000, random_state=seed).fit(features, domains)
    p_target = torch.from_numpy(classifier.predict_proba(source_features.double().numpy())[:, 1])
    ratio = len(source_features) / len(target_features)
    weights = p_target / (1 - p_target).clamp_min(1e-12) * ratio
    weighted = weights * source_losses.double()
    variance = weights.var()
    eta = -torch.cov(torch.stack([weighted, weights]))[0, 1] / variance if variance > 0 else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)


def subset(count: int, limit: int = MAX_IMAGES, seed: int = 0) -> torch.Tensor:
    """A fixed subset of at most ``limit`` of ``count`` images (the same at every evaluation)."""
    if count <= limit:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit].sort()[0]


def scores(target_probs: torch.Tensor, source: tuple | None = None,
           target_features: torch.Tensor | None = None) -> dict[str, float]:
    """Every score of one evaluation; ``source=(features, losses)`` of a held-out labeled
    source split adds DEV."""
    out = {"entropy": mean_entropy(target_probs), "im": information_maximisation(target_probs),
           "snd": soft_neighbourhood_density(target_probs)}
    if source is not None and target_features is not None:
        out["dev"] = deep_embedded_validation(*source, target_features)
    return out
