"""Image-list benchmarks in thuml Transfer-Learning-Library's layout: Office-31, Office-Home,
VisDA-2017. A folder a tllib user already has works unchanged.

    <root>/office31/image_list/amazon.txt        lines: amazon/images/back_pack/frame_0001.jpg 0
    <root>/office31/amazon/images/<class>/*.jpg
"""

from __future__ import annotations

from pathlib import Path

from pnl_da.data.base import Benchmark, Domain
from pnl_da.data.folders import load_folder
from pnl_da.data.image_list import ImageListData, check_files, read_image_list
from pnl_da.errors import DataError

OFFICE31_CLASSES = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair",
    "desk_lamp", "desktop_computer", "file_cabinet", "headphones", "keyboard",
    "laptop_computer", "letter_tray", "mobile_phone", "monitor", "mouse", "mug",
    "paper_notebook", "pen", "phone", "printer", "projector", "punchers", "ring_binder", "ruler",
    "scissors", "speaker", "stapler", "tape_dispenser", "trash_can")

OFFICEHOME_CLASSES = (
    "Drill", "Exit_Sign", "Bottle", "Glasses", "Computer", "File_Cabinet", "Shelf", "Toys",
    "Sink", "Laptop", "Kettle", "Folder", "Keyboard", "Flipflops", "Pencil", "Bed", "Hammer",
    "ToothBrush", "Couch", "Bike", "Postit_Notes", "Mug", "Webcam", "Desk_Lamp", "Telephone",
    "Helmet", "Mouse", "Pen", "Monitor", "Mop", "Sneakers", "Notebook", "Backpack",
    "Alarm_Clock", "Push_Pin", "Paper_Clip", "Batteries", "Radio", "Fan", "Ruler", "Pan",
    "Screwdriver", "Trash_Can", "Printer", "Speaker", "Eraser", "Bucket", "Chair", "Calendar",
    "Calculator", "Flowers", "Lamp_Shade", "Spoon", "Candles", "Clipboards", "Scissors", "TV",
    "Curtains", "Fork", "Soda", "Table", "Knives", "Oven", "Refrigerator", "Marker")

# tllib's default_partial: Office-31 keeps the 10 classes it shares with Caltech-256
# (OfficeCaltech.CLASSES), Office-Home the first 25 and VisDA-2017 the first 6 in sorted order
OFFICE31_PARTIAL = ("back_pack", "bike", "calculator", "headphones", "keyboard",
                    "laptop_computer", "monitor", "mouse", "mug", "projector")

VISDA_CLASSES = ("aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person",
                 "plant", "skateboard", "train", "truck")


def _download(name: str):
    def fetch(root: str) -> list[str]:
        import sys

        from pnl_da.data.download import download_benchmark

        download_benchmark(name, root, log=lambda m: print(m, file=sys.stderr))
        return [f"{name}: ready under {root}"]

    return fetch


def _image_list_loader(benchmark: str, folder: str, list_name: str, image_dir: str,
                       classes: tuple[str, ...]):
    def load(root: str, split: str) -> ImageListData:
        base = Path(root) / folder
        list_file = base / "image_list" / f"{list_name}.txt"
        if list_file.is_file():
            images = read_image_list(list_file, len(classes))
        elif (base / image_dir).is_dir():
            images = load_folder(base / image_dir, classes, required=True,
                                 what=f"the {benchmark} benchmark", prefix=f"{image_dir}/")
        elif Path(root).name == folder and (Path(root) / "image_list").is_dir():
            # tllib's scripts take the benchmark folder itself (dann.py data/office31)
            raise DataError(f"--data-root {root} is the {benchmark} folder itself; pass the "
                            f"folder that holds it: --data-root {Path(root).parent}")
        else:
            raise DataError(
                f"{benchmark} domain '{list_name}' not found: expected {list_file} (tllib "
                f"layout, images under {base / image_dir}/<class>/); run `pnl-da download "
                f"{benchmark} --data-root {root}` or place the files there")
        check_files(base, images)
        return ImageListData(base, images, list_name, split)

    return load


def _domains(benchmark, folder, classes, spec) -> tuple[Domain, ...]:
    return tuple(Domain(name, aliases, ("all",),
                        _image_list_loader(benchmark, folder, list_name, image_dir, classes),
                        f"{count:,} images")
                 for name, aliases, list_name, image_dir, count in spec)


OFFICE31 = Benchmark(
    name="office31", num_classes=31,
    domains=_domains("office31", "office31", OFFICE31_CLASSES, (
        ("amazon", ("A",), "amazon", "amazon/images", 2817),
        ("dslr", ("D",), "dslr", "dslr/images", 498),
        ("webcam", ("W",), "webcam", "webcam/images", 795))),
    standard_tasks=("A->W", "D->W", "W->D", "A->D", "D->A", "W->A"),
    description="Office-31, 31 office objects; evaluation on the whole target domain",
    class_names=OFFICE31_CLASSES,
    partial_protocol=OFFICE31_PARTIAL,
    download=_download("office31"))

OFFICEHOME = Benchmark(
    name="officehome", num_classes=65,
    domains=_domains("officehome", "office-home", OFFICEHOME_CLASSES, (
        ("Art", ("Ar",), "Art", "Art", 2427),
        ("Clipart", ("Cl",), "Clipart", "Clipart", 4365),
        ("Product", ("Pr",), "Product", "Product", 4439),
        ("Real_World", ("Rw",), "Real_World", "Real_World", 4357))),
    standard_tasks=tuple(f"{a}->{b}" for a in ("Ar", "Cl", "Pr", "Rw")
                         for b in ("Ar", "Cl", "Pr", "Rw") if a != b),
    description="Office-Home, 65 classes; evaluation on the whole target domain",
    class_names=OFFICEHOME_CLASSES,
    partial_protocol=tuple(sorted(OFFICEHOME_CLASSES)[:25]),
    download=_download("officehome"))

VISDA2017 = Benchmark(
    name="visda2017", num_classes=12,
    domains=_domains("visda2017", "visda-2017", VISDA_CLASSES, (
        ("Synthetic", ("S", "train"), "train", "train", 152397),
        ("Real", ("R", "validation"), "validation", "validation", 55388))),
    standard_tasks=("S->R",),
    description="VisDA-2017 Synthetic->Real, 12 classes; headline: mean per-class accuracy",
    class_names=VISDA_CLASSES,
    partial_protocol=tuple(sorted(VISDA_CLASSES)[:6]),
    download=_download("visda2017"))
