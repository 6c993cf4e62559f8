"""``pnl-da predict RUN_DIR PATH...``: a finished run's prediction for image files, as CSV.

Files are found as they are read (folders walked one at a time, in sorted order), decoded by
DataLoader workers with the run's input format (pnl_da/data/transforms.py: what its evaluation
sees) and classified in batches, each row written as soon as its batch is done: memory does not
grow with the number of images. A file that cannot be read gets its error in the ``error``
column; the others go on. The probabilities are the ones the run reports (PNL: the mean of its
two heads' softmaxes), so the predictions of a run's evaluation images are its evaluation's.

timm's ``inference.py`` (its ``ImageDataset`` over a folder listing, one worker pool) is the
model; it is not used itself because it lists every file up front, stops at a file it cannot
read, and knows nothing of a run's heads or its input format.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pnl_da.errors import DataError, UsageError, first_line


def image_files(paths: list[str], unreadable: list[str]) -> Iterator[str]:
    """Every file named, and every image below every folder named (recursively, sorted; as
    folders are listed for training), one at a time. A named file is tried whatever its
    suffix; a folder that cannot be listed is noted in ``unreadable``."""
    from pnl_da.data.folders import Skipped, iter_images

    for given in paths:
        if Path(given).is_file():
            yield given
        else:
            yield from iter_images(Path(given), Skipped(), given.rstrip(os.sep) + os.sep,
                                   unreadable)


class FileBatches(IterableDataset):
    """Batches of (uint8 images of the readable files, every file's path, every file's error
    or ""). With W workers, worker w reads batches w, w + W, ...: the loader hands them back in
    order, so rows come out in the order the files were found."""

    def __init__(self, paths: list[str], spec, batch_size: int):
        self.paths, self.spec, self.batch_size = paths, spec, batch_size

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        chunk: list[str] = []
        index = 0
        for path in image_files(self.paths, []):
            chunk.append(path)
            if len(chunk) == self.batch_size:
                if index % workers == worker:
                    yield self._read(chunk)
                chunk, index = [], index + 1
        if chunk and index % workers == worker:
            yield self._read(chunk)

    def _read(self, chunk: list[str]):
        images, errors = [], []
        for path in chunk:
            try:
                images.append(self.spec.read(path))
                errors.append("")
            except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad files
                errors.append(f"{type(exc).__name__}: {first_line(exc, 120)}")
        if not images:
            empty = torch.zeros((0, self.spec.channels, self.spec.crop, self.spec.crop),
                                dtype=torch.uint8)
            return empty, chunk, errors
        return self.spec.channels_of(np.stack(images)), chunk, errors


def header(top_k: int) -> list[str]:
    extra = [name for k in range(2, top_k + 1) for name in (f"class_{k}", f"probability_{k}")]
    return ["path", "class", "probability", *extra, "error"]


def check_paths(paths: list[str]) -> None:
    """Every PATH must exist: one line naming the first that does not (nothing written)."""
    if not paths:
        raise UsageError("name the images to classify: files or folders, e.g. `pnl-da predict "
                         "RUN_DIR new-images/`")
    for given in paths:
        if not Path(given).exists():
            raise DataError(f"{given} does not exist; give image files or folders of them")


def predict_run(run_dir: Path, paths: list[str], out: Path | None = None, top_k: int = 1,
                batch_size: int | None = None, workers: int | None = None,
                device: str = "auto", log=print) -> dict:
    """Classify the images; the CSV goes to ``out`` (written whole or not at all: an
    interruption leaves an older file as it was) or to standard output. Returns counts
    (images, unreadable, classes)."""
    from pnl_da.engine.evaluate import Probabilities
    from pnl_da.engine.evaluate_run import finished_run_config, load_method
    from pnl_da.engine.tasks import task_of
    from pnl_da.engine.trainer import autocast, resolve_device

    cfg = finished_run_config(Path(run_dir))
    task = task_of(cfg)
    check_paths(paths)
    classes = task.class_names
    if not 1 <= top_k <= len(classes):
        raise UsageError(f"--top-k {top_k}: use 1 to {len(classes)} (the run's classes)")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: use a positive number")
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file, e.g. {out / 'predictions.csv'}")
    spec = task.input_format()
    target = resolve_device(device)
    probabilities = Probabilities(load_method(Path(run_dir), task, target).eval_model(),
                                  cfg.method.predict).eval()
    # under the autocast the run's evaluation uses (bf16 on a GPU)
    model = _Cast(probabilities, lambda: autocast(target, target.type == "cuda"))
    normalize = task.normalizer()
    batch = batch_size or min(256, int(cfg.trainer.eval_batch_size))
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    loader = DataLoader(FileBatches(list(paths), spec, batch), batch_size=None,
                        num_workers=workers, pin_memory=target.type == "cuda",
                        persistent_workers=False)
    counts = {"images": 0, "unreadable": 0}

    def write(handle) -> None:
        from tqdm import tqdm

        text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=False)
        writer = csv.writer(text)
        writer.writerow(header(top_k))
        bar = tqdm(disable=not sys.stderr.isatty(), unit="img", file=sys.stderr,
                   desc="predict", dynamic_ncols=True, mininterval=1.0)
        with torch.no_grad():
            for images, chunk, errors in loader:
                rows = iter(_classify(model, normalize, images, target, top_k))
                for path, error in zip(chunk, errors):
                    if error:
                        writer.writerow([path, "", "", *[""] * (2 * (top_k - 1)), error])
                        counts["unreadable"] += 1
                    else:
                        probs, labels = next(rows)
                        cells = [v for p, y in zip(probs, labels) for v in (classes[y],
                                                                              f"{p:.6f}")]
                        writer.writerow([path, *cells, ""])
                counts["images"] += len(chunk)
                bar.update(len(chunk))
        bar.close()
        if counts["images"] == 0:  # raised before the file is put in place
            raise DataError(f"no images found in {', '.join(paths)} (suffixes of "
                            "torchvision's ImageFolder); name image files or folders of them")
        text.flush()
        text.detach()

    if out is None:
        sys.stdout.flush()
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        from pnl_da.files import atomic_write

        atomic_write(out, write)
    if counts["unreadable"]:
        log(f"warning: {counts['unreadable']} of {counts['images']} files could not be read; "
            "their rows hold the reason in the error column")
    return {**counts, "classes": len(classes)}


class _Cast(torch.nn.Module):
    """The model under the autocast the run's evaluation uses (bf16 on a GPU)."""

    def __init__(self, model, cast):
        super().__init__()
        self.model, self.cast = model, cast

    def forward(self, x):
        with self.cast():
            return self.model(x)


def _classify(model, normalize, images: torch.Tensor, device, top_k: int):
    if not len(images):
        return []
    x = normalize.from_uint8(images.to(device, non_blocking=True))
    probs = model(x).float().cpu()
    values, labels = probs.topk(top_k, dim=1)
    return list(zip(values.tolist(), labels.tolist()))
