"""``pnl-da predict`` and ``pnl-da export``: a run's model used on image files, and shipped as a
file that classifies images without pnl-da; and no file of a run folder runs code when read."""

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pnl_da.engine.checkpoint import LAST, save_checkpoint
from tests.fake_datasets import write_digits_pngs
from tests.test_cli import FAST, assert_one_line_error, run_cli

PNGS = 120  # images of each bundled set written as files: enough to tell classes apart
DOCS = Path(__file__).resolve().parents[1] / "docs" / "own-images.md"


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pngs")
    write_digits_pngs(root, limit=PNGS)
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, pngs) -> Path:
    """A finished folders run: UCI class folders -> the flat, unlabeled MNIST sample."""
    from pnl_da.cli import main

    out = tmp_path_factory.mktemp("runs") / "folders"
    assert main(["run", "folders", "uci->mnist-sample", "backbone=lenet", *FAST,
                 "trainer.steps=30", "trainer.eval_every=15", "--data-root", str(pngs),
                 "--out", str(out)]) == 0
    return out


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_reproduces_the_accuracy_evaluate_measures(capsys, tmp_path, pngs, folder_run):
    code, out, err = run_cli(capsys, "evaluate", str(folder_run), "--domain",
                             "mnist-sample-labeled", "--data-root", str(pngs))
    assert code == 0, err
    evaluated = json.loads(out.splitlines()[-1])["accuracy"]
    predictions = tmp_path / "p.csv"
    code, _, err = run_cli(capsys, "predict", str(folder_run), str(pngs / "mnist-sample"),
                           "--out", str(predictions), "--workers", "2", "--batch-size", "16")
    assert code == 0, err
    rows = rows_of(predictions)
    truth = {r["path"]: r["label"] for r in rows_of(pngs / "mnist-sample-labels.csv")}
    assert len(rows) == PNGS and [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    right = sum(r["class"] == truth[Path(r["path"]).name] for r in rows)
    assert 100 * right / len(rows) == pytest.approx(evaluated, abs=1e-9)
    assert all(0 < float(r["probability"]) <= 1 and r["error"] == "" for r in rows)


def test_top_k_an_unreadable_file_and_standard_output(capsys, tmp_path, pngs, folder_run):
    folder = tmp_path / "new images"
    shutil.copytree(pngs / "mnist-sample", folder / "a")
    (folder / "a" / "00003.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("skipped: no image suffix")
    code, out, err = run_cli(capsys, "predict", str(folder_run), str(folder), "--top-k", "3",
                             "--workers", "0")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "class", "probability", "class_2", "probability_2",
                             "class_3", "probability_3", "error"]
    assert len(rows) == PNGS
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("00003.png") and not bad[0]["class"]
    assert "UnidentifiedImageError" in bad[0]["error"]
    good = rows[0]
    assert float(good["probability"]) >= float(good["probability_2"]) >= \
        float(good["probability_3"])
    assert len({good["class"], good["class_2"], good["class_3"]}) == 3
    assert "1 of 120 files could not be read" in err


def test_predict_refuses_what_it_cannot_do_in_one_line(capsys, tmp_path, pngs, folder_run):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(folder_run, unfinished)
    (unfinished / "result.json").unlink()
    for argv, code, fragments in (
            ([str(unfinished), str(pngs)], 2, ["not a finished run", "--resume"]),
            ([str(folder_run), str(tmp_path / "nowhere")], 3, ["does not exist"]),
            ([str(folder_run)], 2, ["name the images"]),
            ([str(folder_run), str(pngs), "--top-k", "11"], 2, ["--top-k 11", "1 to 10"]),
            ([str(folder_run), str(pngs), "--out", str(tmp_path)], 2, ["is a folder"])):
        got, _, err = run_cli(capsys, "predict", *argv)
        assert_one_line_error(got, err, code, *fragments)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "kept.csv").write_text("an older file\n")
    got, _, err = run_cli(capsys, "predict", str(folder_run), str(empty), "--out",
                          str(tmp_path / "kept.csv"))
    assert_one_line_error(got, err, 3, "no images found")
    assert (tmp_path / "kept.csv").read_text() == "an older file\n"  # not replaced


def test_predict_of_a_run_above_the_in_memory_size_is_its_evaluation(capsys, tmp_path):
    """Above the in-memory size the evaluation reads the 256/224 cache through the workers'
    centre crop; predict decodes each file itself the same way: the same predictions."""
    from tests.fake_datasets import make_office31
    from tests.test_office import TINY

    make_office31(tmp_path, per_class=3)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", "office31", "A->W", *TINY, "--data-root",
                           str(tmp_path), "--out", str(out))
    assert code == 0, err
    accuracy = json.loads((out / "result.json").read_text())["metrics"]["accuracy"]
    code, text, err = run_cli(capsys, "predict", str(out),
                              str(tmp_path / "office31" / "webcam" / "images"), "--workers", "0")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    right = sum(r["class"] == Path(r["path"]).parent.name for r in rows)
    assert len(rows) == 9 and 100 * right / len(rows) == pytest.approx(accuracy, abs=1e-9)
    # and image for image, the probabilities of the evaluation's own batches
    from pnl_da.data.image_list import read_image_list
    from pnl_da.engine.evaluate import Probabilities, batches_for
    from pnl_da.engine.evaluate_run import finished_run_config, load_method
    from pnl_da.engine.tasks import task_of

    task = task_of(finished_run_config(out))
    _, data = task.scoring_data(None, None)
    model = Probabilities(load_method(out, task, torch.device("cpu")).eval_model()).eval()
    with torch.no_grad():
        probs = torch.cat([model(x) for x, _ in batches_for(task, data, torch.device("cpu"))])
    listed = read_image_list(tmp_path / "office31" / "image_list" / "webcam.txt").paths
    by_path = {Path(r["path"]).relative_to(tmp_path / "office31").as_posix(): r for r in rows}
    for path, p in zip(listed, probs):
        assert float(by_path[path]["probability"]) == pytest.approx(float(p.max()), abs=1e-5)


def test_predict_works_on_a_semi_supervised_run(capsys, tmp_path, pngs):
    out = tmp_path / "ssl"
    code, _, err = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", *FAST,
                           "--out", str(out))
    assert code == 0, err
    code, text, err = run_cli(capsys, "predict", str(out), str(pngs / "mnist-sample"),
                              "--workers", "0")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == PNGS and {r["class"] for r in rows} <= {str(d) for d in range(10)}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_agrees_with_the_run_and_describes_its_input(capsys, tmp_path, pngs,
                                                               folder_run, fmt):
    out = tmp_path / "shipped" / f"digits.{'onnx' if fmt == 'onnx' else 'pt'}"
    code, text, err = run_cli(capsys, "export", str(folder_run), "--format", fmt,
                              "--out", str(out))
    assert code == 0, err
    assert "its probabilities differ from PyTorch's by at most" in text
    spec = json.loads(out.with_name(out.name + ".json").read_text())
    assert spec["classes"] == [str(d) for d in range(10)]
    assert spec["preprocessing"]["channels"] == 1 and spec["preprocessing"]["crop"] == [28, 28]
    assert spec["check"]["max_abs_difference"] <= 1e-4
    assert "the run's evaluation images" in spec["check"]["images"]
    # the model's probabilities for files read as the JSON says, with no pnl-da code, are the
    # ones predict writes for them
    files = sorted((pngs / "mnist-sample").iterdir())[:9]
    batch = np.stack([read_as_documented(f, spec["preprocessing"]) for f in files])
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        probs = session.run(None, {spec["input"]["name"]: batch})[0]
    else:
        probs = torch.jit.load(str(out))(torch.from_numpy(batch)).numpy()
    assert probs.shape == (9, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    code, text, err = run_cli(capsys, "predict", str(folder_run), *map(str, files),
                              "--workers", "0")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["class"]) for r in rows] == probs.argmax(1).tolist()
    assert np.allclose([float(r["probability"]) for r in rows], probs.max(1), atol=1e-4)
    if fmt == "onnx":  # and the docs' lines, as written, classify one file the same way
        snippet = DOCS.read_text().split("```python\n", 1)[1].split("```", 1)[0]
        snippet = snippet.replace('"model.onnx.json"', repr(str(out.with_name(out.name +
                                                                             ".json"))))
        snippet = snippet.replace('"photo.jpg"', repr(str(files[0])))
        snippet = snippet.replace('spec["model"]', repr(str(out)))
        exec(compile(snippet, str(DOCS), "exec"), {})
        shown = capsys.readouterr().out.split()
        assert shown[0] == rows[0]["class"]
        assert float(shown[1]) == pytest.approx(float(rows[0]["probability"]), abs=1e-4)


def read_as_documented(path: Path, steps: dict) -> np.ndarray:
    """A file prepared as the JSON says, without pnl-da (docs/own-images.md's lines, batched)."""
    from PIL import Image

    image = Image.open(path).convert("RGB").resize(tuple(steps["resize"]), Image.BILINEAR)
    x = np.asarray(image, dtype=np.float32)
    h, w = steps["crop"]
    top, left = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
    x = x[top:top + h, left:left + w]
    if steps["channels"] == 1:
        x = np.round(x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = (x / 255 - np.array(steps["mean"], dtype=np.float32)) / np.array(steps["std"],
                                                                          dtype=np.float32)
    return x.transpose(2, 0, 1).astype(np.float32)


class Planted:
    """A pickled object whose loading would run code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_a_planted_pickle_runs_nowhere(capsys, tmp_path, pngs, folder_run):
    """A checkpoint that would run code when unpickled is refused by every command that reads
    one, in one line, and its code never runs."""
    marker = tmp_path / "ran"
    planted = tmp_path / "planted"
    shutil.copytree(folder_run, planted)
    state = {"step": 30, "method": {"weights": Planted(marker)}}
    save_checkpoint(state, planted / LAST)  # with a whole, checksummed header: as crafted
    # the file is live: an unguarded load would run it
    torch.load(planted / LAST, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    unfinished = tmp_path / "unfinished"
    shutil.copytree(planted, unfinished)
    (unfinished / "result.json").unlink()
    commands = [
        ["evaluate", str(planted), "--data-root", str(pngs)],
        ["predict", str(planted), str(pngs / "mnist-sample")],
        ["export", str(planted), "--format", "torchscript"],
        ["analyze", str(planted), "--data-root", str(pngs), "--images", "20"],
        ["run", "folders", "uci->mnist-sample", "backbone=lenet", *FAST, "trainer.steps=30",
         "trainer.eval_every=15", "--data-root", str(pngs), "--out", str(unfinished),
         "--resume"],
    ]
    for argv in commands:
        code, _, err = run_cli(capsys, *argv)
        line = err.strip().splitlines()[-1]
        assert code == 3 and "could run code" in line and "nothing in it was run" in line, err
        assert line.startswith("pnl-da: error: ") and "Traceback" not in err
        assert not marker.exists(), argv[0]
