import bz2
import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pnl_da.data.base import format_images
from pnl_da.data.digits import DIGITS, MNIST_SAMPLE_FILE
from pnl_da.data.streams import InfiniteSampler
from pnl_da.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]


def test_uci_is_scaled_into_a_centred_20px_box_like_mnist():
    data = DIGITS.domain("uci").load("unused", "train")
    assert data.images.shape == (1797, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.images[:, :, :4].max() == 0 and data.images[:, :, -4:].max() == 0
    assert data.images[:, :, :, :4].max() == 0 and data.images[:, :, :, -4:].max() == 0
    assert data.images.max() == 255
    assert torch.bincount(data.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179,
                                                    174, 180]


def test_mnist_sample_is_the_bundled_file_unchanged_and_its_readme_counts_are_true():
    data = DIGITS.domain("ms").load("unused", "test")  # no test split: the whole domain
    assert data.split == "all" and data.images.shape == (4998, 1, 28, 28)
    with np.load(REPO / "datasets" / MNIST_SAMPLE_FILE) as raw:  # read apart from the loader
        assert np.array_equal(data.images[:, 0].numpy(), raw["images"])
        assert np.array_equal(data.labels.numpy(), raw["labels"])
    readme = (REPO / "datasets" / "README.md").read_text()
    documented = re.search(r"per class:\s*([\d,\s]+)", readme).group(1)
    assert torch.bincount(data.labels).tolist() == [int(n) for n in documented.split(",")]


def test_shifted_domains_are_the_documented_functions_of_the_bundled_data():
    sample = DIGITS.domain("ms").load("unused", "all")
    inverted = DIGITS.domain("msi").load("unused", "all")
    assert torch.equal(inverted.images, 255 - sample.images)
    assert torch.equal(inverted.labels, sample.labels)

    thick = DIGITS.domain("mst").load("unused", "all").images.int()
    assert (thick >= sample.images.int()).all()  # a dilation only adds ink
    assert thick.float().mean() > 1.5 * sample.images.float().mean()
    pixel = sample.images.int()[7, 0]
    y, x = (pixel == pixel.max()).nonzero()[0].tolist()  # an inked pixel spreads to its 3x3
    assert (thick[7, 0, max(0, y - 1):y + 2, max(0, x - 1):x + 2] >= pixel[y, x]).all()

    blended = DIGITS.domain("mms").load("unused", "all")
    again = DIGITS.domain("mnist-m-sample").load("unused", "all")
    assert blended.images.shape == (4998, 3, 28, 28) and torch.equal(blended.images,
                                                                     again.images)
    assert torch.equal(blended.labels, sample.labels)
    # |patch - digit|: where the digit is full white the pixel is the patch's inverse, so the
    # digit's strokes stay visible against the photograph
    ink = sample.images.expand(-1, 3, -1, -1) == 255
    assert blended.images[ink].float().std() > 30  # colour from the photographs, not flat

    lowres = DIGITS.domain("ul").load("unused", "all").images
    assert lowres.shape == (1797, 1, 28, 28)
    box = lowres[:, :, 6:22, 6:22]
    assert lowres.sum() == box.sum()  # 16x16 centred: nothing outside it
    assert torch.equal(box[:, :, ::2, ::2], box[:, :, 1::2, 1::2])  # 2x2 blocks (nearest)
    assert not torch.equal(lowres, DIGITS.domain("uci").load("unused", "all").images)


def test_a_copy_of_mnist_sample_under_the_data_root_is_read_instead(tmp_path):
    (tmp_path / "mnist-sample").mkdir()
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    np.savez(tmp_path / "mnist-sample" / MNIST_SAMPLE_FILE, images=images,
             labels=np.array([7, 0, 7], dtype=np.uint8))
    data = DIGITS.domain("mnist-sample").load(str(tmp_path), "train")
    assert np.array_equal(data.images[:, 0].numpy(), images)
    assert data.labels.tolist() == [7, 0, 7]


def test_format_images_to_backbone_size_and_channels():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    y = format_images(x, 32, 3)
    assert y.shape == (3, 3, 32, 32) and y.dtype == torch.uint8
    assert torch.equal(y[:, 0], y[:, 1])
    rgb = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert format_images(rgb, 28, 1).shape == (2, 1, 28, 28)


def test_infinite_sampler_reshuffles_every_pass_and_covers_the_data():
    sampler = InfiniteSampler(100, 25, seed=0, device=torch.device("cpu"))
    passes = [torch.cat([sampler.next() for _ in range(4)]) for _ in range(3)]
    for p in passes:
        assert sorted(p.tolist()) == list(range(100))
    assert not torch.equal(passes[0], passes[1])
    small = InfiniteSampler(5, 8, seed=0, device=torch.device("cpu"))
    assert small.next().numel() == 8  # smaller than a batch: passes are chained


def test_task_parsing_accepts_names_and_letters_and_refuses_bad_tasks():
    s, t = DIGITS.parse_task("usps->M")
    assert (s.name, t.name) == ("usps", "mnist")
    with pytest.raises(UsageError, match="itself"):
        DIGITS.parse_task("mnist->m")
    with pytest.raises(UsageError, match="unknown domain"):
        DIGITS.parse_task("uci->kmnist")
    with pytest.raises(UsageError, match="SOURCE->TARGET"):
        DIGITS.parse_task("uci")


def write_mnist(root, n_train=30, n_test=20, compress=True):
    """MNIST in its real idx format, as torchvision reads it."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    opener = gzip.open if compress else open
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        with opener(raw / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with opener(raw / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
    return labels


def test_mnist_files_load_through_torchvision(tmp_path):
    write_mnist(tmp_path, compress=False)
    train = DIGITS.domain("mnist").load(str(tmp_path), "train")
    test = DIGITS.domain("mnist").load(str(tmp_path), "test")
    every = DIGITS.domain("mnist").load(str(tmp_path), "all")
    assert train.images.shape == (30, 1, 28, 28) and len(test) == 20 and len(every) == 50
    assert test.labels.tolist() == [i % 10 for i in range(20)]


def test_usps_files_load_through_torchvision(tmp_path):
    for name, n in (("usps.bz2", 12), ("usps.t.bz2", 7)):
        lines = []
        for i in range(n):
            pixels = " ".join(f"{j + 1}:{(i + j) % 20 / 10 - 1:.4f}" for j in range(256))
            lines.append(f"{i % 10 + 1} {pixels}")
        with bz2.open(tmp_path / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
    data = DIGITS.domain("usps").load(str(tmp_path), "train")
    assert data.images.shape == (12, 1, 16, 16) and data.labels.tolist()[:3] == [0, 1, 2]
    assert len(DIGITS.domain("u").load(str(tmp_path), "test")) == 7


@pytest.mark.parametrize("domain", ["mnist", "usps", "svhn"])
def test_missing_dataset_is_a_data_error_that_says_how_to_fix_it(tmp_path, domain):
    with pytest.raises(DataError, match="pnl-da download digits"):
        DIGITS.domain(domain).load(str(tmp_path), "train")


def test_download_without_network_is_a_clear_data_error(tmp_path, monkeypatch):
    from torchvision import datasets

    closed = "http://127.0.0.1:9/"  # discard port: refused at once, never reaches a network
    monkeypatch.setattr(datasets.MNIST, "mirrors", [closed])
    for cls in (datasets.USPS, datasets.SVHN):
        monkeypatch.setattr(cls, "split_list", {
            k: [closed + v[1], v[1], v[2]] for k, v in cls.split_list.items()})
    with pytest.raises(DataError, match="could not download mnist") as err:
        DIGITS.download(str(tmp_path))
    assert "usps" in str(err.value) and "svhn" in str(err.value)
    assert "MNIST/raw" in str(err.value) and "\n" not in str(err.value)
    # in words, not exception classes; and no empty MNIST/raw left behind
    assert str(err.value).count("no connection: Connection refused") == 3, str(err.value)
    assert "Error" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
