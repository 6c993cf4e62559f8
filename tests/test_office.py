"""Image-list benchmarks (Office-31 layout) on tiny generated data: lists, cache, pipeline,
bad input, and `pnl-da run office31 A->W` end to end with a tiny timm model."""

import json

import numpy as np
import pytest

from pnl_da.cli import main
from pnl_da.data.image_cache import decode, load_or_build
from pnl_da.data.image_list import check_files, read_image_list
from pnl_da.data.office import OFFICE31
from pnl_da.errors import DataError
from tests.fake_datasets import make_office31, write_jpeg

# 72 px: above the size held in memory (engine/tasks.py IN_MEMORY_SIZE), so that the cache and
# the data workers' crops are what these tests run
TINY = ["backbone.name=test_resnet", "backbone.pretrained=false", "data.image_size=72",
        "trainer.steps=4", "trainer.eval_every=2", "trainer.batch_size=4", "data.workers=0",
        "trainer.progress=false", "trainer.device=cpu"]


@pytest.fixture
def office(tmp_path):
    make_office31(tmp_path)
    return tmp_path


@pytest.mark.parametrize("method", ["pnl", "dann", "cdan"])
def test_run_office31_a_to_w_end_to_end(office, tmp_path, capsys, method):
    out = tmp_path / "run"
    code = main(["run", "office31", "A->W", f"method={method}", "--data-root", str(office),
                 "--out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["source"] == "amazon" and result["target"] == "webcam"
    assert 0 <= result["metrics"]["accuracy"] <= 100
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and "data_wait_fraction" in records[0]
    assert "skipped_images" not in result


def test_result_json_counts_the_images_a_run_was_allowed_to_skip(office, tmp_path, capsys):
    bad = office / "office31/webcam/images/bike/frame_0001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    out = tmp_path / "run"
    code = main(["run", "office31", "A->W", "method=dann", "data.skip_bad_images=true",
                 "--data-root", str(office), "--out", str(out), *TINY])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "result.json").read_text())["skipped_images"] == {"webcam": 1}


def test_missing_office31_names_the_download_command(tmp_path, capsys):
    code = main(["run", "office31", "A->W", "--data-root", str(tmp_path), "--out",
                 str(tmp_path / "o"), *TINY])
    err = capsys.readouterr().err
    assert code == 3 and "pnl-da download office31" in err and err.count("\n") == 1


def test_missing_listed_file_lists_the_first_few_and_the_count(office):
    base = office / "office31"
    for i in range(4):
        (base / f"amazon/images/bike/frame_{i:04d}.jpg").unlink()
    with pytest.raises(DataError, match=r"4 of 12 images .* missing, e\.g\. .*bike/frame_0000"):
        OFFICE31.domain("A").load(str(office), "all")


def test_list_built_from_class_folders_when_missing(tmp_path):
    make_office31(tmp_path, lists=False)
    data = OFFICE31.domain("webcam").load(str(tmp_path), "all")
    assert len(data) == 12 and sorted(set(data.images.labels)) == [0, 1, 2]


def test_class_folders_the_benchmark_does_not_know_are_named_not_dropped(tmp_path):
    base = make_office31(tmp_path, lists=False)
    (base / "webcam/images/Calculator").mkdir()  # office31's class is "calculator"
    (base / "webcam/images/.thumbnails").mkdir()  # hidden folders are no classes
    with pytest.raises(DataError, match="does not have: 'Calculator' .*; rename them"):
        OFFICE31.domain("webcam").load(str(tmp_path), "all")


def test_a_data_root_that_is_the_benchmark_folder_itself_points_to_its_parent(office):
    with pytest.raises(DataError, match=f"pass the folder that holds it: --data-root {office}$"):
        OFFICE31.domain("amazon").load(str(office / "office31"), "all")


def test_paths_with_spaces_and_label_range(tmp_path):
    rng = np.random.default_rng(0)
    write_jpeg(tmp_path / "my domain/cls a/img 1.jpg", rng, (40, 50))
    (tmp_path / "list.txt").write_text("my domain/cls a/img 1.jpg 2\n")
    parsed = read_image_list(tmp_path / "list.txt", num_classes=31)
    assert parsed.paths == ["my domain/cls a/img 1.jpg"] and parsed.labels == [2]
    check_files(tmp_path, parsed)  # the file is found, spaces and all
    decoded = load_or_build(tmp_path, parsed, "spaced", 16, tmp_path / "c", log=lambda m: None)
    assert decoded.array.shape == (1, 16, 16, 3) and decoded.labels == [2]
    (tmp_path / "bad.txt").write_text("a.jpg 31\n")
    with pytest.raises(DataError, match="class index 31 is out of range 0..30"):
        read_image_list(tmp_path / "bad.txt", num_classes=31)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_odd_image_modes_are_converted_not_crashed_on(tmp_path, mode):
    from PIL import Image

    path = tmp_path / f"img.{'png' if mode in ('RGBA', 'P', 'I;16') else 'jpg'}"
    if mode == "I;16":
        Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)).save(path)
    else:
        write_jpeg(path, np.random.default_rng(0), (30, 40), mode=mode)
    out = decode(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_truncated_jpeg_is_named_or_skipped_and_counted(office):
    base = office / "office31"
    bad = base / "amazon/images/bike/frame_0001.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    images = read_image_list(base / "image_list/amazon.txt", 31)
    with pytest.raises(DataError, match="frame_0001.jpg"):
        load_or_build(base, images, "amazon", 20, office / "cache", log=lambda m: None)
    decoded = load_or_build(base, images, "amazon", 20, office / "cache2", skip_bad=True,
                            log=lambda m: None)
    assert len(decoded.labels) == 11 and decoded.skipped == ["amazon/images/bike/frame_0001.jpg"]


def test_a_cache_that_skipped_images_serves_only_runs_that_allow_it_while_they_stay_bad(office):
    base = office / "office31"
    bad = base / "amazon/images/bike/frame_0001.jpg"
    good = bad.read_bytes()
    bad.write_bytes(good[:300])
    images = read_image_list(base / "image_list/amazon.txt", 31)
    cache, quiet = office / "cache", (lambda m: None)
    assert len(load_or_build(base, images, "amazon", 20, cache, skip_bad=True,
                             log=quiet).labels) == 11
    with pytest.raises(DataError, match="frame_0001.jpg"):  # not silently 11 images
        load_or_build(base, images, "amazon", 20, cache, log=quiet)
    logged = []
    again = load_or_build(base, images, "amazon", 20, cache, skip_bad=True, log=logged.append)
    assert len(again.labels) == 11 and "skipped 1 unreadable images" in logged[0]
    bad.write_bytes(good)  # mended: decoded again, all 12 images
    mended = load_or_build(base, images, "amazon", 20, cache, skip_bad=True, log=quiet)
    assert len(mended.labels) == 12 and mended.skipped == []


def test_cache_gives_direct_decoding_pixels_and_is_rebuilt_when_the_list_changes(office):
    base = office / "office31"
    images = read_image_list(base / "image_list/amazon.txt", 31)
    first = load_or_build(base, images, "amazon", 24, office / "cache", log=lambda m: None)
    for i in (0, 5, 11):
        assert np.array_equal(first.array[i], decode(base / images.paths[i], 24))
    again = load_or_build(base, images, "amazon", 24, office / "cache", log=print)
    assert again.path == first.path  # reused
    (base / "image_list/amazon.txt").write_text(
        "\n".join(f"{p} {y}" for p, y in zip(images.paths[:6], images.labels[:6])) + "\n")
    changed = read_image_list(base / "image_list/amazon.txt", 31)
    rebuilt = load_or_build(base, changed, "amazon", 24, office / "cache", log=lambda m: None)
    assert rebuilt.path != first.path and len(rebuilt.labels) == 6


def test_cache_is_rebuilt_when_an_image_is_replaced_under_the_same_name(office):
    base = office / "office31"
    images = read_image_list(base / "image_list/amazon.txt", 31)
    first = load_or_build(base, images, "amazon", 24, office / "cache", log=lambda m: None)
    replaced = base / images.paths[3]
    write_jpeg(replaced, np.random.default_rng(99), (40, 56))
    logged = []
    rebuilt = load_or_build(base, images, "amazon", 24, office / "cache", log=logged.append)
    assert "changed since its cache was built" in logged[0]
    assert np.array_equal(rebuilt.array[3], decode(replaced, 24))
    assert not np.array_equal(rebuilt.array[3], first.array[3])  # not the old pixels
    logged.clear()
    load_or_build(base, images, "amazon", 24, office / "cache", log=logged.append)
    assert logged == []  # unchanged since: reused without a word


def test_pretrained_weights_offline_without_a_file_is_a_clear_error(office, tmp_path, capsys):
    args = [a for a in TINY if not a.startswith("backbone.pretrained")]
    code = main(["run", "office31", "A->W", "backbone.pretrained=true", "--data-root",
                 str(office), "--out", str(tmp_path / "o"), *args])
    lines = capsys.readouterr().err.strip().splitlines()
    # the network is asked after the data is read (its decode-cache notes come first)
    assert code == 3 and lines[-1].startswith("pnl-da: error: ") and "backbone.weights" in lines[-1]
    assert all(line.startswith("decoding ") for line in lines[:-1]), lines


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_weights_from_a_local_file_are_loaded(tmp_path, suffix):
    import timm
    import torch

    from pnl_da.models.factory import create_backbone

    reference = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    with torch.no_grad():
        for p in reference.parameters():
            p.fill_(0.125)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(reference.state_dict(), str(path))
    net, width = create_backbone("test_resnet", 3, 32, pretrained=True, weights=str(path))
    assert width == reference.num_features
    assert all(torch.all(p == 0.125) for p in net.parameters())
    # another architecture's weights: a data error naming the file, not torch's message
    with pytest.raises(DataError, match=f"backbone.weights {path} cannot be loaded into "
                                        "'resnet18'"):
        create_backbone("resnet18", 3, 32, pretrained=True, weights=str(path))
    # a ViT is loaded non-strictly by timm: the mismatch must not leave a random network
    with pytest.raises(DataError, match="tensors of 'test_vit': it is another architecture's"):
        create_backbone("test_vit", 3, 32, pretrained=True, weights=str(path))


def test_mean_class_accuracy_matches_a_hand_computed_confusion_matrix():
    import torch

    from pnl_da.engine.evaluate import per_class_accuracy, per_class_table, scores

    # rows: true class; 3 classes with 10, 5 and 0 images (the third is absent)
    confusion = torch.tensor([[8, 2, 0], [1, 3, 1], [0, 0, 0]])
    assert per_class_accuracy(confusion) == [80.0, 60.0, None]
    s = scores(confusion)
    assert s["accuracy"] == pytest.approx(11 / 15 * 100)
    assert s["mean_class_accuracy"] == pytest.approx((80 + 60) / 2)
    table = per_class_table(confusion, ["car", "bus", "train"]).splitlines()
    assert table[1:] == ["car,10,80.000", "bus,5,60.000", "train,0,", "mean,15,70.000"]


def test_visda_run_reports_mean_class_accuracy_and_writes_the_per_class_table(tmp_path,
                                                                              capsys):
    from tests.fake_datasets import make_visda

    make_visda(tmp_path)
    out = tmp_path / "run"
    code = main(["run", "visda2017", "S->R", "method=dann", "--data-root", str(tmp_path),
                 "--out", str(out), *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads((out / "result.json").read_text())
    assert result["headline"] == "mean_class_accuracy" and "mean class accuracy" in captured.out
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[1].startswith("aeroplane,2,") and rows[-1].startswith("mean,24,")
    assert float(rows[-1].split(",")[2]) == pytest.approx(
        result["metrics"]["mean_class_accuracy"], abs=1e-3)


def test_loader_batches_do_not_depend_on_workers_and_resume_exactly(office):
    import torch

    from pnl_da.data.loader_stream import LoaderStream
    from pnl_da.data.streams import Normalizer
    from pnl_da.data.transforms import build_views

    base = office / "office31"
    images = read_image_list(base / "image_list/amazon.txt", 31)
    decoded = load_or_build(base, images, "amazon", 37, office / "cache", log=lambda m: None)
    views = ("weak", "strong")

    def stream(workers):
        return LoaderStream(decoded, 4, 7, torch.device("cpu"), build_views(32), views,
                            workers, Normalizer([0.5] * 3, [0.25] * 3))

    def take(s, n):
        batches = []
        for _ in range(n):
            batches.append(s.next(views))
            # the indices it reports are those of the images served (their labels agree)
            labels = torch.tensor(decoded.labels)[s.last_index]
            assert torch.equal(labels, batches[-1][1]) and len(set(s.last_index.tolist())) == 4
        return batches

    serial, parallel = take(stream(0), 7), take(stream(2), 7)  # 7 batches: passes 0, 1, 2
    for (a, ya), (b, yb) in zip(serial, parallel):
        assert torch.equal(ya, yb) and all(torch.equal(a[v], b[v]) for v in views)
    assert serial[0][0]["weak"].shape == (4, 3, 32, 32)
    assert not torch.equal(serial[0][0]["weak"], serial[0][0]["strong"])
    resumed = stream(0)
    resumed.load_state_dict({"consumed": 4 * 5})
    for (a, ya), (b, yb) in zip(serial[5:], take(resumed, 2)):
        assert torch.equal(ya, yb) and all(torch.equal(a[v], b[v]) for v in views)


def test_image_lists_apply_data_weak_and_strong_on_the_device_and_resume_them(office):
    """data.weak / data.strong are applied after the workers' crops (image lists once ignored
    them); their draws are checkpointed, so a resumed stream gives the same batches."""
    import torch

    from pnl_da.config import AugmentConfig
    from pnl_da.data.loader_stream import LoaderStream
    from pnl_da.data.streams import Normalizer
    from pnl_da.data.transforms import build_views

    base = office / "office31"
    images = read_image_list(base / "image_list/amazon.txt", 31)
    decoded = load_or_build(base, images, "amazon", 37, office / "cache", log=lambda m: None)

    def stream(augmentations=None):
        return LoaderStream(decoded, 4, 7, torch.device("cpu"), build_views(32), ("weak",), 0,
                            Normalizer([0.5] * 3, [0.25] * 3), augmentations=augmentations)

    rotated = {"weak": AugmentConfig(rotate=45.0, erase=1.0), "strong": AugmentConfig()}
    plain, turned = stream(), stream(rotated)
    first, second = plain.next(("weak",))[0]["weak"], turned.next(("weak",))[0]["weak"]
    assert first.shape == second.shape and not torch.equal(first, second)
    state = turned.state_dict()
    after = [turned.next(("weak",))[0]["weak"] for _ in range(2)]
    again = stream(rotated)
    again.load_state_dict(state)
    assert all(torch.equal(a, again.next(("weak",))[0]["weak"]) for a in after)


def test_two_domains_with_different_class_counts_are_refused(tmp_path, capsys):
    make_office31(tmp_path, domains=("amazon",), classes=3)
    make_office31(tmp_path, domains=("webcam",), classes=2, seed=1)
    code = main(["run", "office31", "A->W", "--data-root", str(tmp_path), "--out",
                 str(tmp_path / "o"), *TINY])
    err = capsys.readouterr().err
    assert code == 3 and "3 classes" in err and "2" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "config.yaml").exists()


def test_a_timm_network_of_fixed_input_size_refuses_another_before_any_file(office, tmp_path,
                                                                            capsys):
    out = tmp_path / "run"
    code = main(["run", "office31", "A->W", "--data-root", str(office), "--out", str(out),
                 *TINY, "backbone.name=vit_tiny_patch16_224", "data.image_size=64"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "backbone 'vit_tiny_patch16_224' cannot take 64x64 images" in err
    assert "data.image_size=224" in err and not out.exists()
