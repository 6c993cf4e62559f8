"""Your own images as domains (``pnl-da run folders``): the layouts that are read, the input
that is refused (one line, exit code), and the same pipeline as the built-in benchmarks."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pnl_da.data.folders import Skipped, load_folder, source_classes, walk_images
from pnl_da.errors import DataError
from tests.fake_datasets import write_digits_pngs
from tests.test_cli import FAST, assert_one_line_error, run_cli

LENET = ["backbone=lenet", *FAST, "data.workers=0"]


def assert_error_line(code, err, expected_code, *fragments):
    """The error is one line, the last; progress lines (decoding ...) may come before it."""
    assert code == expected_code, err
    assert "Traceback" not in err and err.count("pnl-da: error: ") == 1, err
    assert_one_line_error(code, err.strip().splitlines()[-1], expected_code, *fragments)

def image(path: Path, mode: str = "RGB", size=(20, 24), value: int = 0) -> Path:
    """A small real image file of the given PIL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    if mode == "I;16":
        array = rng.integers(0, 65536, size[::-1], dtype=np.uint16)
        Image.fromarray(array).save(path)
        return path
    base = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    converted = base.convert("P") if mode == "P" else base.convert(mode)
    converted.save(path)
    return path


def shop(root: Path, classes=("boot", "clog", "sandal"), per_class: int = 3,
         target_labeled=True):
    """catalogue/<class>/*.png and webcam/ (class folders, or loose unlabeled images)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            image(root / "catalogue" / name / f"{i}.png", value=10 * c + i)
            where = root / "webcam" / name if target_labeled else root / "webcam"
            image(where / f"{name}-{i}.png", value=100 + 10 * c + i)
    return root


@pytest.fixture(scope="module")
def digits_pngs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits-pngs")
    write_digits_pngs(root)
    return root


def test_the_folders_pipeline_is_the_benchmarks_one_result_for_result(capsys, tmp_path,
                                                                       digits_pngs):
    """The bundled digits as PNG files, listed in their original order (a tllib image list),
    train to the digits run's exact accuracy with the same seed and options: the files are
    decoded to the same tensors and go through the same streams."""
    options = ["trainer.steps=6", "trainer.eval_every=3", "trainer.progress=false",
               "trainer.device=cpu"]
    code, out, err = run_cli(capsys, "run", "digits", "uci->mnist-sample", *options,
                             "--out", str(tmp_path / "digits"))
    assert code == 0, err
    code, out, err = run_cli(capsys, "run", "folders", "image_list/uci.txt->mnist-sample",
                             "backbone=lenet", *options, "--data-root", str(digits_pngs),
                             "--out", str(tmp_path / "folders"))
    assert code == 0, err
    assert "no target labels" in out and "input 28x28, 1 channel (lenet)" in err
    # the flat target has no labels: scored on its labeled copy, it matches to the last digit
    code, out, err = run_cli(capsys, "evaluate", str(tmp_path / "folders"), "--domain",
                             "mnist-sample-labeled", "--data-root", str(digits_pngs))
    assert code == 0, err
    digits = json.loads((tmp_path / "digits" / "result.json").read_text())
    assert json.loads(out.splitlines()[-1]) == digits["metrics"]
    folders = json.loads((tmp_path / "folders" / "result.json").read_text())
    assert folders["validation"] == digits["validation"]  # label-free scores: equal as well


def test_a_folder_run_without_target_labels_reports_label_free_scores(capsys, tmp_path):
    root = shop(tmp_path / "data", target_labeled=False)
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "run", "folders", "catalogue->webcam", *LENET,
                             "--data-root", str(root), "--out", str(out_dir))
    assert code == 0, err
    result = json.loads((out_dir / "result.json").read_text())
    assert result["target_labels"] is False and result["headline"] == "snd"
    assert set(result["metrics"]) >= {"entropy", "im", "snd"} and result["heads"] == {}
    assert "no target labels, so no accuracy" in out and "SND" in out
    assert not (out_dir / "per_class.csv").exists()
    code, out, err = run_cli(capsys, "evaluate", str(out_dir))  # the same scores again
    assert code == 0, err
    assert "no labels, so no accuracy" in out
    assert json.loads(out.splitlines()[-1]) == pytest.approx(result["metrics"], rel=1e-6)
    config = (out_dir / "config.yaml").read_text()
    assert "classes:\n  - boot\n  - clog\n  - sandal" in config and "image_size: 28" in config
    # the report makes a table of the label-free score, never beside accuracies
    code, out, err = run_cli(capsys, "report", str(tmp_path), "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "## folders: SND, label-free: no target labels" in out


def test_a_labeled_target_with_some_of_the_classes_is_scored_on_them(capsys, tmp_path):
    root = shop(tmp_path / "data", classes=("a", "b", "c"))
    for name in ("b", "c"):
        for file in (root / "webcam" / name).iterdir():
            file.unlink()
        (root / "webcam" / name).rmdir()
    code, out, err = run_cli(capsys, "run", "folders", "catalogue->webcam", *LENET,
                             "--data-root", str(root), "--out", str(tmp_path / "run"))
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "accuracy" in result["metrics"] and "target accuracy" in out
    per_class = (tmp_path / "run" / "per_class.csv").read_text().splitlines()
    assert per_class[1].startswith("a,3,") and per_class[2] == "b,0,"


def test_every_kind_of_file_is_read_or_skipped_and_counted(tmp_path, capsys):
    root = tmp_path / "shop"
    for i, mode in enumerate(("RGB", "L", "I;16", "CMYK", "RGBA", "P", "LA", "1")):
        suffix = ".jpg" if mode in ("CMYK", "L") else ".tif" if mode == "I;16" else ".png"
        image(root / "häagen dazs" / f"bild {i}{suffix}", mode, value=i)
    image(root / "plain" / "deeper" / "still" / "x.PNG")  # deeper folders, upper-case suffix
    (root / "plain" / "notes.txt").write_text("not an image")
    (root / "plain" / ".DS_Store").write_text("hidden")
    image(root / "plain" / ".hidden" / "y.png")
    (root / "plain" / "link.png").symlink_to(root / "plain" / "deeper" / "still" / "x.PNG")
    (root / "plain" / "loop").symlink_to(root / "plain")  # a link back up: read once
    (root / "plain" / "dead.png").symlink_to(root / "nowhere.png")
    image(root / "loose.png")  # at the top, in no class: skipped, as ImageFolder does
    classes = source_classes(str(tmp_path), "shop")
    assert classes == ("häagen dazs", "plain")
    images = load_folder(root, classes, required=True)
    err = capsys.readouterr().err
    assert images.labels.count(0) == 8 and images.labels.count(1) == 2
    assert "plain/deeper/still/x.PNG" in images.paths and "plain/link.png" in images.paths
    assert err.count("\n") == 1 and "skipped 5 files" in err
    assert "2 hidden" in err and "1 not an image" in err and "1 broken links" in err
    assert "1 images outside the class folders" in err
    # and every one of them decodes (grey, 16-bit, CMYK, RGBA, palette, bilevel)
    from pnl_da.data.image_cache import decode

    for path in images.paths:
        assert decode(root / path, 16).shape == (16, 16, 3)


def test_listing_reads_directory_entries_only(tmp_path, monkeypatch):
    for i in range(30):
        (tmp_path / "c" / f"{i % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "c" / f"{i % 3}" / f"{i}.jpg").write_bytes(b"")
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    found = walk_images(tmp_path / "c", Skipped())
    assert len(found) == 30 and found == sorted(found) and not opened


@pytest.mark.parametrize("layout,code,fragments", [
    ("missing", 3, ["source folder", "does not exist", "--data-root"]),
    ("no_class_folders", 3, ["has no class folders", "ImageFolder"]),
    ("one_class", 3, ["at least two class folders"]),
    ("empty_class", 3, ["'sandal'", "holds no images"]),
    ("unknown_target_class", 3, ["'slipper'", "the source does not have", "only some of them"]),
    ("target_mixture", 3, ["class folders and also images at its top"]),
    ("empty_target", 3, ["is empty"]),
    ("corrupt", 3, ["cannot read image", "broken.png", "data.skip_bad_images=true"]),
    ("truncated", 3, ["cannot read image", "cut.png"]),
    ("zero_bytes", 3, ["cannot read image", "empty.png"]),
    ("dollar_brace", 2, ["'${"]),
])
def test_bad_folders_are_one_line_with_the_exit_code_and_write_nothing(capsys, tmp_path,
                                                                       layout, code, fragments):
    root = shop(tmp_path / "data")
    task = "catalogue->webcam"
    if layout == "missing":
        task = "katalog->webcam"
    elif layout == "no_class_folders":
        image(root / "flat" / "a.png")
        task = "flat->webcam"
    elif layout == "one_class":
        image(root / "single" / "only" / "a.png")
        task = "single->webcam"
    elif layout == "empty_class":
        for file in (root / "catalogue" / "sandal").iterdir():
            file.unlink()
    elif layout == "unknown_target_class":
        image(root / "webcam" / "slipper" / "a.png")
    elif layout == "target_mixture":
        image(root / "webcam" / "loose.png")
    elif layout == "empty_target":
        (root / "empty").mkdir()
        task = "catalogue->empty"
    elif layout == "corrupt":
        (root / "catalogue" / "boot" / "broken.png").write_bytes(b"this is no png at all")
    elif layout == "truncated":
        data = (root / "catalogue" / "boot" / "0.png").read_bytes()
        (root / "catalogue" / "boot" / "cut.png").write_bytes(data[:len(data) // 2])
    elif layout == "zero_bytes":
        (root / "catalogue" / "boot" / "empty.png").write_bytes(b"")
    elif layout == "dollar_brace":
        image(root / "catalogue" / "${oops}" / "a.png")
    out_dir = tmp_path / "run"
    before = sorted(p for p in root.rglob("*"))
    got, _, err = run_cli(capsys, "run", "folders", task, *LENET, "--data-root", str(root),
                          "--out", str(out_dir))
    assert_error_line(got, err, code, *fragments)
    assert not out_dir.exists()  # nothing written, not even an empty folder
    assert sorted(p for p in root.rglob("*")) == before  # and nothing in the data


def test_skip_bad_images_skips_and_counts_them(capsys, tmp_path):
    root = shop(tmp_path / "data")
    (root / "catalogue" / "boot" / "broken.png").write_bytes(b"no image")
    code, out, err = run_cli(capsys, "run", "folders", "catalogue->webcam", *LENET,
                             "data.skip_bad_images=true", "--data-root", str(root),
                             "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "skipped 1 unreadable images of catalogue" in err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["skipped_images"] == {"catalogue": 1}


def test_read_only_data_stays_untouched_and_runs_resume_and_sweep(capsys, tmp_path):
    """The decoded-image cache goes to the cache folder, never into the data; a folder task
    resumes and sweeps like a benchmark's."""
    root = shop(tmp_path / "data")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    os.chmod(root, 0o555)
    try:
        common = ["folders", "catalogue->webcam", *LENET, "--data-root", str(root)]
        assert run_cli(capsys, "run", *common, "--out", str(tmp_path / "a"))[0] == 0
        code, _, err = run_cli(capsys, "run", *common, "--out", str(tmp_path / "a"),
                               "--resume")
        assert code == 0 and "already finished" in err
        code, out, err = run_cli(capsys, "run", *common, "--multirun", "seed=0,1",
                                 "--out", str(tmp_path / "sweep"))
        assert code == 0, err
        assert len(list((tmp_path / "sweep").rglob("result.json"))) == 2
    finally:
        os.chmod(root, 0o755)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_show_config_names_the_classes_and_the_input_format(capsys, tmp_path):
    root = shop(tmp_path / "data")
    code, out, err = run_cli(capsys, "run", "folders", "catalogue->webcam", "--data-root",
                             str(root), "--show-config")
    assert code == 0, err
    assert "name: resnet50.tv_in1k" in out and "image_size: 224" in out  # the default
    assert "steps: 20000" in out  # tllib's Office recipe follows the ResNet
    assert "- 0.485" in out and "classes:\n  - boot\n  - clog\n  - sandal" in out
    code, out, err = run_cli(capsys, "run", "folders", "catalogue->webcam", "backbone=dtn",
                             "--data-root", str(root), "--show-config")
    assert "image_size: 32" in out and "channels: 3" in out and "steps: 3000" in out
    assert "rotate: 10.0" in out  # the digits recipe's views come with DTN


def test_an_image_list_domain_maps_its_class_names_to_the_sources(capsys, tmp_path):
    root = shop(tmp_path / "data")
    lists = root / "lists"
    lists.mkdir()
    (lists / "classes.txt").write_text("sandal\nboot\n")  # the other order than the source's
    (lists / "cam.txt").write_text("../webcam/boot/boot-0.png 1\n"
                                   "../webcam/sandal/sandal-0.png 0\n")
    code, out, err = run_cli(capsys, "run", "folders", "catalogue->lists/cam.txt", *LENET,
                             "--data-root", str(root), "--out", str(tmp_path / "run"))
    assert code == 0, err
    per_class = (tmp_path / "run" / "per_class.csv").read_text().splitlines()
    assert per_class[1].startswith("boot,1,") and per_class[3].startswith("sandal,1,")
    (lists / "classes.txt").write_text("sandal\nslipper\n")
    code, _, err = run_cli(capsys, "run", "folders", "catalogue->lists/cam.txt", *LENET,
                           "--data-root", str(root), "--out", str(tmp_path / "run2"))
    assert_error_line(code, err, 3, "'slipper'", "the source does not have")


def test_errors_found_in_the_data_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        source_classes(str(tmp_path), "nothing-here")


def test_compare_analyze_and_torchrun_work_on_folders(capsys, tmp_path):
    """Every command of a benchmark task works on a folder task, the target without labels."""
    from tests.test_distributed import torchrun

    root = shop(tmp_path / "data", per_class=4, target_labeled=False)
    code, out, err = run_cli(capsys, "compare", "folders", "catalogue->webcam",
                             "--methods", "source_only,pnl", "--seeds", "0", *LENET,
                             "--data-root", str(root), "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "label-free scores (no target labels)" in table and "SND (label-free" in table
    assert "| pnl |" in table and "| source_only |" in table
    code, out, err = run_cli(capsys, "analyze", str(tmp_path / "cmp" / "pnl" / "seed0"),
                             "--images", "10", "--out", str(tmp_path / "an"))
    assert code == 0, err
    assert (tmp_path / "an" / "tsne.png").is_file() and "proxy A-distance" in out
    two = torchrun("run", "folders", "catalogue->webcam", *LENET, "--data-root", root,
                   "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("no target labels") == 1  # process 0 speaks, once
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["processes"] == 2 and result["target_labels"] is False


def test_semi_supervised_on_your_own_folders(capsys, tmp_path):
    """`pnl-da ssl folders`: scored on a labeled test folder by its error, on an unlabeled
    folder by the label-free scores; --labels keeps a balanced subset and records it."""
    root = shop(tmp_path / "data", per_class=4)
    for c, name in enumerate(("boot", "clog", "sandal")):
        image(root / "test" / name / "0.png", value=200 + c)
    ssl = ["ssl", "folders", "--labeled", "catalogue", "--data-root", str(root), *LENET,
           "trainer=digits"]
    code, out, err = run_cli(capsys, *ssl, "--unlabeled", "webcam", "--test", "test",
                             "--out", str(tmp_path / "scored"))
    assert code == 0, err
    result = json.loads((tmp_path / "scored" / "result.json").read_text())
    assert result["dataset"] == "folders" and "error" in result["metrics"]
    assert "test error" in out and "all the labels" in out
    (root / "loose").mkdir()
    for i in range(3):
        image(root / "loose" / f"{i}.png", value=300 + i)
    code, out, err = run_cli(capsys, *ssl, "--unlabeled", "loose", "--labels", "6",
                             "--out", str(tmp_path / "subset"))
    assert code == 0, err
    assert "no labels to score on" in out
    record = json.loads((tmp_path / "subset" / "labeled_indices.json").read_text())
    assert len(record["labeled"]) == 6 and record["train_size"] == 12
    assert "6 labeled and 9 unlabeled training images" in err  # 6 kept, 6 + 3 without labels
    code, _, err = run_cli(capsys, *ssl, "--out", str(tmp_path / "none"))
    assert_one_line_error(code, err, 2, "--unlabeled required")
    code, _, err = run_cli(capsys, "ssl", "mnist-sample", "--labels", "20", "--labeled", "x")
    assert_one_line_error(code, err, 2, "--labeled names a folder of your own images")


def test_folder_names_with_spaces_quotes_and_unicode_run_and_sweep(capsys, tmp_path):
    """(A comma separates tasks: 'A->B,C->D'.)"""
    root = shop(tmp_path / "data")
    (root / "catalogue").rename(root / "cata logue it's")
    (root / "webcam").rename(root / "web cäm [2]")
    task = "cata logue it's->web cäm [2]"
    code, out, err = run_cli(capsys, "run", "folders", task, *LENET, "--data-root", str(root),
                             "--out", str(tmp_path / "one"))
    assert code == 0, err
    code, out, err = run_cli(capsys, "run", "folders", task, *LENET, "--multirun",
                             "method=source_only,pnl", "--data-root", str(root),
                             "--out", str(tmp_path / "sweep"))
    assert code == 0, err
    found = sorted(p.parent.relative_to(tmp_path / "sweep").as_posix()
                   for p in (tmp_path / "sweep").rglob("result.json"))
    assert found == ["cata logue it's2web cäm [2]/pnl/seed0",
                     "cata logue it's2web cäm [2]/source_only/seed0"]


def test_a_folder_run_resumed_ends_with_the_uninterrupted_runs_weights(tmp_path):
    import torch

    from pnl_da.config import quoted
    from pnl_da.engine.tasks import compose, load_data
    from pnl_da.engine.trainer import Trainer

    root = shop(tmp_path / "data", per_class=4, target_labeled=False)
    cfg = compose(["benchmark=folders", "benchmark.source=catalogue",
                   "benchmark.target=webcam", f"data.root={quoted(str(root))}",
                   "backbone=lenet", "trainer.steps=12", "trainer.eval_every=4",
                   "trainer.progress=false", "trainer.device=cpu", "data.workers=0"])
    data = load_data(cfg)
    straight = Trainer(cfg, data, tmp_path / "straight")
    straight.fit()
    Trainer(cfg, data, tmp_path / "stopped").fit(stop_at=8)  # as if killed after step 8
    resumed = Trainer(cfg, data, tmp_path / "stopped")
    assert resumed.resume() and resumed.step == 8
    resumed.fit()
    a, b = straight.method.state_dict(), resumed.method.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
