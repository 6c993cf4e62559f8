"""What a finished run reports: the prediction it is scored by, its headline metrics (or, with
no target labels, its label-free scores) and the oracle figure of a semi-supervised run."""

from __future__ import annotations

from pathlib import Path

from pnl_da.engine.metrics_log import metrics_records

RESULT = "result.json"
# The metric a benchmark reports first; VisDA's convention is the mean of per-class accuracies.
HEADLINE = {"visda2017": "mean_class_accuracy"}
# A target without labels is reported by the label-free validation scores
# (pnl_da/engine/validators.py); soft neighbourhood density first, as its paper proposes it for
# choosing among adaptation runs.
LABEL_FREE_HEADLINE = "snd"
LABEL_FREE_NAMES = {"snd": "SND", "im": "IM", "entropy": "entropy", "dev": "DEV"}


def chosen_prediction(evaluation: dict, predict: str) -> tuple[str, dict]:
    """(prediction used, its scores): the configured prediction when the model has it, else
    the mean of the heads."""
    heads = evaluation["heads"]
    name = predict if predict in heads else "mean"
    return name, heads[name]


def headline_metrics(scores: dict, error: bool = False) -> dict:
    """The reported metrics of one prediction: accuracy and mean class accuracy, and with
    ``error`` the test error (semi-supervised runs report it). Stored unrounded: every table
    and message rounds once, when it shows a number, so result.json, the run's summary line
    and ``evaluate`` always show the same digits (rounding 11.2649 to 11.265 first showed
    11.27 beside evaluate's 11.26)."""
    metrics = {"accuracy": scores["accuracy"],
               "mean_class_accuracy": scores["mean_class_accuracy"]}
    if error:
        metrics["error"] = 100 - scores["accuracy"]
    return metrics


def train_rate(fit: dict) -> float | None:
    """Training steps per second of this process (None when nothing was trained)."""
    return round(fit["steps_trained"] / fit["train_time_s"], 2) if fit["train_time_s"] else None


def oracle_best(metrics_path: Path, head: str) -> dict | None:
    """Best test accuracy over the logged evaluations: an oracle figure (it picks a step by
    looking at the test set), reported beside the final model's, never instead of it."""
    best = None
    for _, record in metrics_records(metrics_path):
        acc = record["accuracy"].get(head, record["accuracy"].get("mean"))
        if acc is not None and (best is None or acc > best["accuracy"]):
            best = {"step": record["step"], "accuracy": acc}
    if best is None:
        return None
    return {"step": best["step"], "error": 100 - best["accuracy"]}


def label_free_line(scores: dict) -> str:
    """``SND 3.21 (higher is better), IM ...``: the label-free scores with their direction."""
    from pnl_da.engine.validators import BETTER

    order = [LABEL_FREE_HEADLINE, *(k for k in LABEL_FREE_NAMES if k != LABEL_FREE_HEADLINE)]
    return ", ".join(f"{LABEL_FREE_NAMES[k]} {scores[k]:.4f} ({BETTER[k]} is better)"
                     for k in order if k in scores)
