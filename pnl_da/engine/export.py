"""``pnl-da export RUN_DIR --format onnx|torchscript``: a finished run's model as one file that
needs no pnl-da, and beside it a JSON file with how to prepare an image and the class names.

The graph is what the run reports: normalised images (N, C, H, W) in, class probabilities out
(PNL: the mean of its two heads' softmaxes), the batch size free. The export checks itself
before it is put in place: the exported file, run by onnxruntime (or TorchScript), must give the
probabilities PyTorch gives on the run's evaluation images to 1e-4, at two batch sizes.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch

from pnl_da.errors import PnlError, UsageError, first_line

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4
CHECK_IMAGES = 64  # at most this many of the evaluation images take part in the check
INPUT, OUTPUT = "images", "probabilities"


def prediction_text(method: str, prediction: str, heads: int) -> str:
    if prediction in ("a", "b") or heads < 2:
        return f"the softmax of head {prediction if heads > 1 else 'a'} ({method})"
    return f"the mean of the {heads} heads' softmaxes ({method})"


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxruntime", "onnxscript")
                   if not _importable(m)]
        if missing:
            raise UsageError(f"--format onnx needs {', '.join(missing)}: pip install "
                             "'pnl-da[onnx]'")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def sample_images(task, log) -> tuple[torch.Tensor, str]:
    """Normalised images to check the export on: the run's evaluation images (a fixed
    subset), or, where its data cannot be read here, random images, said so."""
    from pnl_da.engine import validators
    from pnl_da.engine.evaluate import batches_for
    from pnl_da.errors import DataError

    try:
        _, data = task.scoring_data(None, None)
        chosen = validators.subset(len(data), CHECK_IMAGES, seed=3)
        x = torch.cat([b for b, _ in batches_for(task, data, torch.device("cpu"),
                                                  indices=chosen)])
        return x.float(), f"{len(x)} of the run's evaluation images ({data.name})"
    except DataError as exc:
        log(f"warning: the run's evaluation images cannot be read here ({first_line(exc)}); "
            f"checking the export on {CHECK_IMAGES} random images instead")
        spec = task.input_format()
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(CHECK_IMAGES, spec.channels, spec.crop, spec.crop, generator=generator)
        return task.normalizer()(x), f"{CHECK_IMAGES} random images"


def _quiet():
    """The exporters print their progress and warn about their own deprecations."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT],
                                    output_names=[OUTPUT],
                                    dynamic_shapes={"images": {0: batch}}, verbose=False)
        program.save(str(path))


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])


def write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path))


def run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with _quiet(), torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(x)


def export_run(run_dir: Path, fmt: str = "onnx", out: Path | None = None,
               data_root: str | None = None, log=print) -> dict:
    """Export, check, and put the model file and its JSON in place; returns the JSON's
    content (with the files and the check's result)."""
    from pnl_da.engine.evaluate import Probabilities
    from pnl_da.engine.evaluate_run import finished_run_config, load_method
    from pnl_da.engine.tasks import task_of
    from pnl_da.files import temporary_beside, write_json

    check_format(fmt)
    cfg = finished_run_config(Path(run_dir), data_root)
    task = task_of(cfg)
    out = Path(out) if out else Path(run_dir) / "export" / f"model{FORMATS[fmt]}"
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file, e.g. "
                         f"{out / ('model' + FORMATS[fmt])}")
    device = torch.device("cpu")  # an export is read on any machine: float32 on the CPU
    method = load_method(Path(run_dir), task, device)
    # inference only: no gradients recorded in the graph or asked of its user
    model = Probabilities(method.eval_model(), cfg.method.predict).eval().requires_grad_(False)
    images, which = sample_images(task, log)
    with torch.no_grad():
        expected = model(images)
    heads = int(getattr(model.model, "prediction_heads", 1))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_beside(out)
    except OSError as exc:
        raise UsageError(f"cannot write {out} ({exc.strerror or exc}); pass --out with a "
                         "writable file") from None
    try:
        write, run = (write_onnx, run_onnx) if fmt == "onnx" else \
            (write_torchscript, run_torchscript)
        write(model, images[:2], tmp)
        # two batch sizes, neither the example's: the batch dimension is free
        odd = min(len(images), 7)
        got = torch.cat([run(tmp, images[:odd]), run(tmp, images[odd:])]) if \
            len(images) > odd else run(tmp, images)
        difference = float((got.float() - expected).abs().max())
        if not difference <= TOLERANCE:
            raise PnlError(f"the exported {fmt} model differs from the run's by up to "
                           f"{difference:.2e} on {which} (more than {TOLERANCE:g}); nothing "
                           "was written: report it with the run's config.yaml")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    spec = task.input_format()
    description = {
        "format": fmt, "model": out.name,
        "input": {"name": INPUT, "shape": ["batch", spec.channels, spec.crop, spec.crop],
                  "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", len(task.class_names)],
                   "is": prediction_text(cfg.method.name, cfg.method.predict, heads)},
        "preprocessing": spec.describe(),
        "classes": list(task.class_names),
        "run": {"folder": str(Path(run_dir).resolve()), "method": cfg.method.name,
                "backbone": cfg.backbone.name, "seed": int(cfg.seed)},
        "check": {"images": which, "max_abs_difference": difference,
                  "tolerance": TOLERANCE},
    }
    json_path = out.with_name(out.name + ".json")  # model.onnx.json: one per exported file
    write_json(json_path, description)
    return {**description, "files": [str(out), str(json_path)]}

