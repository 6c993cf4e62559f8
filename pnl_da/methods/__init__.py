"""Method registry: a method is one file in this package, holding its class (losses only) and
its options dataclass (``options`` on the class), and one config under configs/method/ (domain
adaptation) or configs/ssl/method/ (semi-supervised). Every module here is imported and each
Method subclass it defines is registered under its ``name``: nothing else to edit."""

from __future__ import annotations

import importlib
import pkgutil

from pnl_da.methods.base import Batch, Method, total_loss


def _discover() -> dict[str, type[Method]]:
    found: dict[str, type[Method]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Method) and obj is not Method
                    and obj.__module__ == module.__name__):
                if obj.name in found:
                    raise TypeError(f"two methods are named '{obj.name}': "
                                    f"{found[obj.name].__module__} and {module.__name__}")
                found[obj.name] = obj
    return found


# Domain adaptation: source_only, dann, cdan, pnl. Semi-supervised: supervised, fixmatch,
# mean_teacher, pnl, pnl_paper (pnl serves both: the labeled set is its "source").
METHODS: dict[str, type[Method]] = _discover()


def create_method(cfg, model, num_classes: int, partial_set: bool = False) -> Method:
    """The method of ``cfg``; ``partial_set``: the run's task is partial-set adaptation
    (``Method.bind_task``)."""
    method = METHODS[cfg.name](cfg, model, num_classes)
    method.bind_task(partial_set)
    return method


__all__ = ["METHODS", "Batch", "Method", "create_method", "total_loss"]
