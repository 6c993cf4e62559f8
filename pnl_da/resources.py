"""Folders installed inside the package (configs/, datasets/) found the same way everywhere."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def packaged_dir(name: str) -> Path:
    """``configs`` or ``datasets``: from the installed package, else from the source tree.

    A regular install maps the top-level folders into ``pnl_da.<name>``; an editable install
    (and a checkout on PYTHONPATH) has them beside the package instead.
    """
    try:
        path = Path(str(resources.files(f"pnl_da.{name}")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return _REPO_ROOT / name
