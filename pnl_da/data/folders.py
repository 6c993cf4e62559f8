"""Your own images as domains: ``pnl-da run folders 'SRC->TGT' --data-root ROOT``.

A domain is a path below the data root (or an absolute one):

* a folder of class folders, torchvision's ``ImageFolder`` layout: the class names are the
  subfolder names, sorted; images may sit deeper inside a class folder;
* a folder of unlabeled images (a target only): images directly in it, or in subfolders whose
  names are not class names;
* an image list in tllib's format (``relative/path label`` per line), its class names one per
  line in ``classes.txt`` beside it (without one, the labels are the names). Paths are relative
  to the list's folder, or to its parent where the list sits in ``image_list/`` (tllib's).

The class names come from the source; a labeled target uses the same names (a subset of them).
Hidden files and folders, and files that are not images, are skipped and counted in one line.
Listing walks each folder once with ``os.scandir`` and reads nothing but directory entries.

torchvision's ``make_dataset`` is not used to list: it stops at the first empty class without
naming the others, counts nothing it skips, descends into hidden folders, and follows a
symlinked folder into a loop forever. Its image suffixes and class order are kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pnl_da.data.base import Benchmark, Domain
from pnl_da.data.image_list import ImageList, ImageListData, read_image_list
from pnl_da.errors import DataError, UsageError

CLASSES_FILE = "classes.txt"
UNLABELED = -1


def image_suffixes() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(s.lower() for s in IMG_EXTENSIONS)


@dataclass
class Skipped:
    """What a listing left out, counted for one warning line."""

    hidden: int = 0
    not_images: int = 0
    broken_links: int = 0
    outside_classes: int = 0  # images at the top of a source, in no class folder
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, path: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 2:
            self.examples.append(path)

    def line(self, where: Path) -> str | None:
        parts = [(self.hidden, "hidden"), (self.not_images, "not an image (by suffix)"),
                 (self.broken_links, "broken links"),
                 (self.outside_classes, "images outside the class folders")]
        shown = [f"{n:,} {what}" for n, what in parts if n]
        if not shown:
            return None
        return (f"warning: skipped {sum(n for n, _ in parts):,} files under {where}: "
                f"{', '.join(shown)} (e.g. {', '.join(self.examples)})")


def iter_images(folder: Path, skipped: Skipped, prefix: str = "",
                unreadable: list[str] | None = None) -> Iterator[str]:
    """Every image below ``folder`` (suffixes of torchvision's ImageFolder, any case), one at
    a time, as paths relative to it with ``prefix`` before them, in sorted order, depth first.
    Symlinked files and folders are followed, each folder once (a link back up is no loop). A
    folder that cannot be listed is an error, or, given ``unreadable``, noted there."""
    suffixes = image_suffixes()
    seen: set[tuple[int, int]] = set()
    stack = [(str(folder), prefix)]
    while stack:
        path, relative = stack.pop()
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(path) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            if unreadable is None:
                raise DataError(f"cannot list {path} ({exc.strerror or exc}); make it readable "
                                "or leave it out") from None
            unreadable.append(f"{path} ({exc.strerror or exc})")
            continue
        folders = []
        for entry in listed:
            name = relative + entry.name
            if entry.name.startswith("."):
                skipped.add("hidden", name)
            elif entry.is_dir():
                folders.append((entry.path, name + "/"))
            elif entry.is_file():
                if entry.name.lower().endswith(suffixes):
                    yield name
                else:
                    skipped.add("not_images", name)
            else:
                skipped.add("broken_links", name)
        stack.extend(reversed(folders))  # depth first, in sorted order


def walk_images(folder: Path, skipped: Skipped, prefix: str = "") -> list[str]:
    """``iter_images`` as a list."""
    return list(iter_images(folder, skipped, prefix))


@dataclass(frozen=True)
class Top:
    """What a domain folder holds at its top: subfolders and images (hidden ones left out)."""

    folders: tuple[str, ...]
    images: tuple[str, ...]


def top_of(folder: Path) -> Top:
    suffixes = image_suffixes()
    folders, images = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(entry.name)
                elif entry.is_file() and entry.name.lower().endswith(suffixes):
                    images.append(entry.name)
    except OSError as exc:
        raise DataError(f"cannot list {folder} ({exc.strerror or exc}); make it readable") \
            from None
    return Top(tuple(sorted(folders)), tuple(sorted(images)))


def domain_path(root: str, name: str) -> Path:
    """The folder or list a domain name means: below the data root, or absolute."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else Path(root) / path


def _missing(path: Path, role: str, root: str) -> DataError:
    if path.exists():
        return DataError(f"{role} {path} is neither a folder nor an image list (.txt); pass a "
                         "folder of images or a tllib-style list")
    return DataError(f"{role} folder {path} does not exist; give a folder below --data-root "
                     f"{root} or an absolute path")


def _shown(names, limit: int = 4) -> str:
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def check_name(name: str, what: str) -> None:
    """The configuration holds class names and paths as strings, where '${' starts an
    interpolation: such a name could not be written and read back as itself."""
    if "${" in name:
        raise UsageError(f"{what} {name!r} contains '${{', which a run configuration cannot hold "
                         "as written; rename it")


def list_classes(list_file: Path) -> tuple[str, ...] | None:
    """The names in ``classes.txt`` beside an image list, or None without one."""
    names_file = list_file.parent / CLASSES_FILE
    if not names_file.is_file():
        return None
    try:
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {names_file} ({exc}); one class name per line") from None
    names = [n for n in names if n]
    if len(set(names)) != len(names):
        raise DataError(f"{names_file} names a class twice; one name per line, each once")
    return tuple(names)


def list_base(list_file: Path) -> Path:
    """Where a list's relative paths start: its folder, or (tllib) the parent of image_list/."""
    folder = list_file.parent
    return folder.parent if folder.name == "image_list" else folder


def source_classes(root: str, name: str) -> tuple[str, ...]:
    """The class names of a source domain, read from its top level only (no file listing):
    checked when the run is composed, before anything else."""
    path = domain_path(root, name)
    check_name(name, "domain")
    if path.is_file():
        classes = list_classes(path)
        if classes is None:
            labels = read_image_list(path).labels
            classes = tuple(str(c) for c in range(max(0, max(labels) + 1)))
    elif path.is_dir():
        top = top_of(path)
        if not top.folders:
            found = f" ({len(top.images)} images at its top)" if top.images else ""
            raise DataError(f"source {path} has no class folders{found}; put each class's "
                            "images in a subfolder named after the class (torchvision's "
                            "ImageFolder layout)")
        classes = top.folders
    else:
        raise _missing(path, "source", root)
    if len(classes) < 2:
        raise DataError(f"source {path} has {len(classes)} class ({_shown(classes)}); "
                        "classification needs at least two class folders")
    for c in classes:
        check_name(c, "class folder")
    return classes


def labeled_folder(path: Path, classes: tuple[str, ...], required: bool = False,
                   what: str = "the source", top: Top | None = None) -> bool:
    """Whether a domain folder is labeled (class folders named after ``classes``) or unlabeled
    (images, or folders that are not class names); a mixture is refused. ``required``: a
    source (or a benchmark's domain), whose folders must all be classes of ``what``. ``top``:
    the folder's top level, where the caller has listed it already."""
    top = top or top_of(path)
    known = [f for f in top.folders if f in classes]
    unknown = [f for f in top.folders if f not in classes]
    if unknown and (known or required):
        raise DataError(f"{path} has class folders {what} does not have: {_shown(unknown)} "
                        f"(its classes: {_shown(classes)}); "
                        + ("rename them to its class names or move them out" if required else
                           "a labeled target uses the source's class names (it may hold only "
                           "some of them): rename or move those folders"))
    if required and not known:
        raise DataError(f"{path} has no class folders; put each class's images in a subfolder "
                        f"named after the class (e.g. {classes[0]})")
    if known and top.images and not required:
        raise DataError(f"{path} has class folders and also images at its top (e.g. "
                        f"{top.images[0]!r}); put those images in a class folder, or, for an "
                        "unlabeled target, leave out the class folders")
    if not known and not top.folders and not top.images:
        raise DataError(f"folder {path} is empty (no images, no folders); put the images "
                        "in it")
    return bool(known)


def _warn(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)


def load_folder(path: Path, classes: tuple[str, ...], required: bool = False,
                what: str = "the source", prefix: str = "") -> ImageList:
    """Every image of a domain folder with its class index (-1: unlabeled), as paths relative
    to it (``prefix`` before them). A labeled folder's images outside its class folders are
    skipped and counted, as ImageFolder leaves them out; ``required``, ``what``: see
    ``labeled_folder``."""
    skipped = Skipped()
    paths, labels = [], []
    top = top_of(path)
    if labeled_folder(path, classes, required, what, top):
        for image in top.images:
            skipped.add("outside_classes", prefix + image)
        index = {c: i for i, c in enumerate(classes)}
        empty = []
        for folder in top.folders:
            found = walk_images(path / folder, skipped, f"{prefix}{folder}/")
            if not found:
                empty.append(folder)
            paths += found
            labels += [index[folder]] * len(found)
        if empty:
            plural = len(empty) > 1
            raise DataError(f"class folder{'s' if plural else ''} {_shown(empty)} in {path} "
                            f"hold{'' if plural else 's'} no images; add images or remove the "
                            f"folder{'s' if plural else ''}")
    else:
        paths = walk_images(path, skipped, prefix)
        labels = [UNLABELED] * len(paths)
        if not paths:
            raise DataError(f"folder {path} holds no images (suffixes "
                            f"{', '.join(image_suffixes())}); put the images in it")
    _warn(skipped.line(path))
    return ImageList(paths, labels, f"folders under {path}")


def load_list(root: str, name: str, classes: tuple[str, ...]) -> ImageList:
    """An image list, its labels mapped to the source's class indices by name."""
    path = domain_path(root, name)
    images = read_image_list(path)
    if min(images.labels) < 0:
        raise DataError(f"image list {path} has a negative label ({min(images.labels)}); "
                        "labels are class indices 0, 1, ... (an unlabeled target is a folder)")
    own = list_classes(path)
    if own is None:  # the labels are the names ("0", "1", ...)
        own = tuple(str(c) for c in range(max(images.labels) + 1))
    if max(images.labels) >= len(own):
        raise DataError(f"image list {path} has labels beyond the {len(own)} classes of "
                        f"{path.parent / CLASSES_FILE}; add their names there")
    unknown = sorted({own[y] for y in images.labels if own[y] not in classes})
    if unknown:
        raise DataError(f"image list {path} has classes the source does not have: "
                        f"{_shown(unknown)}; use the source's class names")
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[own[y]] for y in images.labels]
    return ImageList(images.paths, labels, str(path))


def check_domain(root: str, name: str, classes: tuple[str, ...], role: str) -> None:
    """What can be checked of a target-like domain (a target, an unlabeled or test folder)
    without listing its files, when a run is composed: that it exists, and that a folder is
    labeled with the source's classes or unlabeled, not a mixture."""
    path = domain_path(root, name)
    check_name(name, "domain")
    if path.is_dir():
        labeled_folder(path, classes)
    elif not path.is_file():
        raise _missing(path, role, root)


def load_domain(root: str, name: str, classes: tuple[str, ...], split: str,
                source: bool = False) -> ImageListData:
    """A folder or list domain as files to decode (the image-list benchmarks' type)."""
    path = domain_path(root, name)
    check_name(name, "domain")
    if path.is_file():
        return ImageListData(list_base(path), load_list(root, name, classes), name, split)
    if not path.is_dir():
        raise _missing(path, "source" if source else "domain", root)
    return ImageListData(path, load_folder(path, classes, required=source), name, split)


@dataclass(frozen=True)
class FolderBenchmark(Benchmark):
    """``folders``: domains are paths, the classes come from the source: a run's are in its
    configuration (``benchmark.classes``), which ``bind`` gives the benchmark."""

    def domain(self, name: str, source: bool = False) -> Domain:
        """A folder (or list) as a domain; ``source``: the labeled source, whose images
        outside its class folders are skipped instead of making it ambiguous."""
        clean = name.strip()
        clean = clean.rstrip("/") or clean
        if not clean:
            raise UsageError("a domain of the folders benchmark is a folder; write e.g. "
                             "'catalogue->webcam'")
        classes = self.class_names
        return Domain(clean, (), ("all",),
                      lambda root, split: load_domain(root, clean, classes, split, source),
                      "a folder of images")

    def bind(self, classes) -> FolderBenchmark:
        import dataclasses

        return dataclasses.replace(self, class_names=tuple(classes), num_classes=len(classes))

    def task_dirname(self, source: str, target: str) -> str:
        return f"{Path(source).name}2{Path(target).name}"

    def partial_classes(self, root: str, target: str) -> tuple[str, ...]:
        """The source's classes that a labeled target's class folders (or list) hold; none
        for an unlabeled target."""
        path = domain_path(root, target)
        if path.is_dir():
            present = set(top_of(path).folders)
        else:
            present = {self.class_names[y] for y in load_list(root, target, self.class_names).labels
                       if y >= 0}
        return tuple(c for c in self.class_names if c in present)

    def facts(self, root: str, source: str, target: str) -> dict:
        classes = source_classes(root, source)
        check_domain(root, target, classes, "target")  # a class the source lacks: refused now
        return {"benchmark.classes": list(classes), "benchmark.num_classes": len(classes)}


FOLDERS = FolderBenchmark(
    name="folders", num_classes=0, domains=(), partial_targets=True,
    standard_tasks=("catalogue->webcam",),
    description="your own images: SOURCE and TARGET are folders below --data-root (class "
                "folders; the target may be unlabeled) or tllib-style image lists")
