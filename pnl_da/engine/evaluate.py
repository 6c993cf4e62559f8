"""Accuracy and mean per-class accuracy of each head and of the heads' mean."""

from __future__ import annotations

import torch

from pnl_da.data.base import DomainData
from pnl_da.data.streams import eval_batches

HEAD_NAMES = ("a", "b")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows: true class, columns: predicted class."""
    index = target.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def scores(confusion: torch.Tensor) -> dict[str, float]:
    """Accuracy and the mean of per-class accuracies over the classes present (percent)."""
    confusion = confusion.double()
    total = confusion.sum()
    per_class_count = confusion.sum(dim=1)
    present = per_class_count > 0
    per_class = confusion.diag()[present] / per_class_count[present]
    return {"accuracy": float(confusion.diag().sum() / total.clamp_min(1) * 100),
            "mean_class_accuracy": float(per_class.mean() * 100) if present.any() else 0.0}


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Accuracy (percent) of each true class; None for a class absent from the split."""
    counts = confusion.sum(dim=1).double()
    return [float(confusion[c, c] / counts[c] * 100) if counts[c] > 0 else None
            for c in range(confusion.shape[0])]


def per_class_table(confusion: torch.Tensor, class_names) -> str:
    """CSV of the per-class accuracies, the mean over present classes last."""
    accuracies = per_class_accuracy(confusion)
    names = list(class_names) or [str(c) for c in range(len(accuracies))]
    lines = ["class,images,accuracy"]
    for name, count, acc in zip(names, confusion.sum(dim=1).tolist(), accuracies):
        lines.append(f"{name},{count},{'' if acc is None else f'{acc:.3f}'}")
    present = [a for a in accuracies if a is not None]
    lines.append(f"mean,{int(confusion.sum())},{sum(present) / max(1, len(present)):.3f}")
    return "\n".join(lines) + "\n"


def batches_for(task, data, device: torch.device, shard: tuple[int, int] = (0, 1),
                indices: torch.Tensor | None = None):
    """The evaluation batches of a domain split of ``task`` (pnl_da/engine/tasks.py: its
    configuration and normalisation), in order, without augmentation; with ``shard=(rank,
    size)``, the share of process ``rank`` of ``size`` (torchrun); with ``indices``, only those
    images."""
    cfg = task.cfg
    batch_size = cfg.trainer.eval_batch_size
    normalize = task.normalizer()
    if isinstance(data, DomainData):
        if indices is not None:
            data = DomainData(data.images.index_select(0, indices),
                              data.labels.index_select(0, indices), data.name, data.split)
        return eval_batches(data, batch_size, device, normalize, shard)
    from pnl_da.data.loader_stream import eval_loader
    from pnl_da.data.transforms import build_views

    views = build_views(cfg.data.image_size)
    return eval_loader(data.decoded, views["eval"], min(batch_size, 256), cfg.data.workers,
                       device, normalize, shard, indices)


def in_eval_mode(model, batches, autocast, cuda_graphs: bool = False):
    """(features, the prediction heads' logits, labels) of each batch, the model in eval mode
    without gradients; its mode is restored after the last batch (or an error). Only the
    prediction heads: pnl_paper's consistency heads are left out. ``cuda_graphs``: the model's
    backbone replays CUDA graphs (trainer.cuda_graphs), so each batch is a new step."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in batches:
                if cuda_graphs:  # see Trainer.train_step (marking imports inductor: seconds)
                    torch.compiler.cudagraph_mark_step_begin()
                with autocast():
                    features, logits = model(x)
                yield features, logits[:getattr(model, "prediction_heads", len(logits))], y
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model, batches, autocast, cuda_graphs: bool = False
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(predicted classes per head and for the mean of the heads' softmaxes, the batches'
    labels); ``cuda_graphs``: the model's backbone replays CUDA graphs (trainer.cuda_graphs),
    so each batch is a new step."""
    preds: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    for _, logits, y in in_eval_mode(model, batches, autocast, cuda_graphs):
        labels.append(y.cpu())
        probs = [torch.softmax(z.float(), dim=1) for z in logits]
        for name, p in zip(HEAD_NAMES, probs):
            preds.setdefault(name, []).append(p.argmax(1))
        preds.setdefault("mean", []).append(torch.stack(probs).mean(0).argmax(1))
    empty = torch.zeros(0, dtype=torch.long)  # a process whose share is no batch
    return ({name: torch.cat(chunks).cpu() for name, chunks in preds.items()},
            torch.cat(labels) if labels else empty)


def prediction_probs(model, logits, prediction: str = "mean") -> torch.Tensor:
    """The probabilities a run reports from its model's logits: head ``a`` or ``b``, or the
    mean of the prediction heads' softmaxes (pnl_paper's consistency heads left out)."""
    logits = logits[:getattr(model, "prediction_heads", len(logits))]
    heads = [torch.softmax(z.float(), dim=1) for z in logits]
    chosen = dict(zip(HEAD_NAMES, heads)).get(prediction) if prediction != "mean" else None
    return chosen if chosen is not None else torch.stack(heads).mean(0)


class Probabilities(torch.nn.Module):
    """A run's model as what it reports: normalised images in, class probabilities out (the
    graph ``pnl-da export`` writes and ``pnl-da predict`` runs)."""

    def __init__(self, model, prediction: str = "mean"):
        super().__init__()
        self.model, self.prediction = model, prediction

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, logits = self.model(images)
        return prediction_probs(self.model, logits, self.prediction)


@torch.no_grad()
def outputs(model, batches, autocast, prediction: str = "mean", cuda_graphs: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probabilities of the reported prediction, features, labels) of every image, on the
    CPU, in float: what the label-free validation scores read (labels: DEV's source only)."""
    probs, features, labels = [], [], []
    for feats, logits, y in in_eval_mode(model, batches, autocast, cuda_graphs):
        probs.append(prediction_probs(model, logits, prediction).cpu())
        features.append(feats.float().flatten(1).cpu())
        labels.append(y.cpu())
    return torch.cat(probs), torch.cat(features), torch.cat(labels)


@torch.no_grad()
def head_logits(model, batches, autocast, cuda_graphs: bool = False) -> list[torch.Tensor]:
    """The logits of each prediction head on every image of ``batches``, in eval mode, float,
    on the CPU (PADA's pass over the target: ``Method.refresh``)."""
    chunks: list[list[torch.Tensor]] = []
    for _, logits, _ in in_eval_mode(model, batches, autocast, cuda_graphs):
        if not chunks:
            chunks = [[] for _ in logits]
        for chunk, z in zip(chunks, logits):
            chunk.append(z.float().cpu())
    return [torch.cat(chunk) for chunk in chunks]


def evaluate(model, batches, num_classes: int, autocast, cuda_graphs: bool = False,
             reduce=None) -> dict:
    """``{"heads": {"a": {...}, "b": {...}, "mean": {...}}, "confusion": {name: matrix}}``;
    ``reduce`` sums the confusion matrices of every process (torchrun)."""
    preds, labels = predict(model, batches, autocast, cuda_graphs)
    # every process reports every head, though its share may hold no batch
    heads = getattr(model, "prediction_heads", None)
    names = [*HEAD_NAMES[:heads], "mean"] if heads else list(preds)
    result = {"heads": {}, "confusion": {}}
    for name in names:
        pred = preds.get(name, torch.zeros(0, dtype=torch.long))
        confusion = confusion_matrix(pred, labels, num_classes)
        if reduce is not None:
            confusion = reduce(confusion)
        result["heads"][name] = scores(confusion)
        result["confusion"][name] = confusion
    return result
