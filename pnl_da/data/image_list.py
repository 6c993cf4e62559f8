"""Image lists in thuml Transfer-Learning-Library's format.

One image per line: ``relative/path label``. The path may contain spaces (the label is the
last whitespace-separated field); paths are relative to the benchmark's folder under the data
root (``<root>/office31/amazon/images/back_pack/frame_0001.jpg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pnl_da.errors import DataError


@dataclass
class ImageList:
    paths: list[str]  # relative to the benchmark folder, as written in the list
    labels: list[int]
    source: str  # where the list came from (file path, or the folders it was built from)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ImageListData:
    """A domain split as files: the folder the list's paths start from and the list (decoded
    into the image cache before training)."""

    base: Path
    images: ImageList
    name: str
    split: str

    @property
    def labels(self):
        import torch

        return torch.tensor(self.images.labels, dtype=torch.long)

    @property
    def labeled(self) -> bool:
        from pnl_da.data.base import is_labeled

        return is_labeled(self.images.labels)

    def __len__(self) -> int:
        return len(self.images)

    def keep_classes(self, kept: set[int]) -> ImageListData:
        """Only the images whose label is in ``kept`` (the target of a partial-set run)."""
        import dataclasses

        rows = [(p, y) for p, y in zip(self.images.paths, self.images.labels) if y in kept]
        images = ImageList([p for p, _ in rows], [y for _, y in rows], self.images.source)
        return dataclasses.replace(self, images=images)


def read_image_list(path: Path, num_classes: int | None = None) -> ImageList:
    """Parse a list file; a malformed line or a label out of range is a DataError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read image list {path} ({exc.strerror or exc})") from None
    paths, labels = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"image list {path}, line {number}: expected 'relative/path label', "
                            f"got {line[:80]!r}")
        label = int(parts[1])
        if num_classes is not None and not 0 <= label < num_classes:
            raise DataError(f"image list {path}, line {number}: class index {label} is out of "
                            f"range 0..{num_classes - 1}")
        paths.append(parts[0])
        labels.append(label)
    if not paths:
        raise DataError(f"image list {path} is empty")
    return ImageList(paths, labels, str(path))


def write_image_list(path: Path, image_list: ImageList) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p} {y}\n" for p, y in zip(image_list.paths, image_list.labels)))


def check_files(base: Path, image_list: ImageList, show: int = 3) -> None:
    """Every listed file must exist; name the first few missing ones and their count."""
    missing = [p for p in image_list.paths if not (base / p).is_file()]
    if missing:
        first = ", ".join(str(base / p) for p in missing[:show])
        raise DataError(f"{len(missing)} of {len(image_list)} images listed in "
                        f"{image_list.source} are missing, e.g. {first}; re-extract the "
                        "dataset or fix the list")
