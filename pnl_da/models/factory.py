"""One registry for backbones: the networks defined here by name (digits CNNs, Conv-Large,
WRN-28-2), anything else from timm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from pnl_da.errors import DataError, UsageError, first_line
from pnl_da.models.digits import DTN, LeNet
from pnl_da.models.heads import Classifier, DualClassifier
from pnl_da.models.ssl_nets import ConvLarge, wrn28_2

# Networks defined in this package (no pretrained weights); each has ``out_features`` and an
# ``input_size`` (None: any size).
LOCAL_BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "lenet": LeNet, "dtn": DTN, "convlarge": ConvLarge, "wrn28_2": wrn28_2}


def create_backbone(name: str, channels: int, image_size: int, pretrained: bool = False,
                    weights: str | None = None) -> tuple[nn.Module, int]:
    """Build a feature extractor; returns it and the width of its features."""
    if name in LOCAL_BACKBONES:
        check_input_size(name, image_size)
        net = LOCAL_BACKBONES[name](channels)
        if pretrained or weights:
            raise UsageError(f"backbone '{name}' has no pretrained weights; set "
                             "backbone.pretrained=false and leave backbone.weights unset")
        return net, net.out_features
    return _create_timm(name, channels, pretrained, weights)


def check_input_size(name: str, image_size: int) -> None:
    """A network of fixed input size refuses another one; checked before the data are
    resized for it (LeNet at data.image_size=1000 would resize every image first)."""
    size = getattr(LOCAL_BACKBONES.get(name), "input_size", None)
    if size is not None and image_size != size:
        raise UsageError(f"backbone '{name}' takes {size}x{size} images, not {image_size}; "
                         f"set data.image_size={size}")


def backbone_normalization(name: str, channels: int) -> tuple[tuple[float, ...],
                                                             tuple[float, ...]]:
    """(mean, std) a backbone's inputs take: our networks' own (``mean``, ``std``; 0.5 where
    they name none), a timm model's from its pretrained configuration (ImageNet's statistics
    where it has none); one value each for a grey input."""
    if name in LOCAL_BACKBONES:
        net = LOCAL_BACKBONES[name]
        mean, std = getattr(net, "mean", (0.5,)), getattr(net, "std", (0.5,))
    else:
        import timm
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        try:
            pretrained = timm.get_pretrained_cfg(name)
        except Exception:  # noqa: BLE001 - a name timm cannot resolve: its defaults
            pretrained = None
        mean = tuple(getattr(pretrained, "mean", None) or IMAGENET_DEFAULT_MEAN)
        std = tuple(getattr(pretrained, "std", None) or IMAGENET_DEFAULT_STD)
    if channels == 1 and len(mean) > 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


HUB = ("huggingface.co", 443)


def check_weights_file(backbone_cfg) -> None:
    """A weights file named by backbone.weights exists (a check of the options, made first)."""
    if backbone_cfg.name in LOCAL_BACKBONES or not backbone_cfg.pretrained:
        return
    if backbone_cfg.weights and not Path(backbone_cfg.weights).expanduser().is_file():
        raise DataError(f"backbone weights file not found: {backbone_cfg.weights}; set "
                        "backbone.weights to an existing .safetensors or .pth file")


def check_weights_available(backbone_cfg) -> None:
    """Fail before training when pretrained weights cannot be had: no file given and the hub
    unreachable (one short connection attempt instead of the hub's retries). The network is
    asked last, once the data is there: a missing dataset is the cause to name first."""
    import os
    import socket

    if backbone_cfg.name in LOCAL_BACKBONES or not backbone_cfg.pretrained:
        return
    check_weights_file(backbone_cfg)
    if backbone_cfg.weights:
        return
    reason = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") == "1" else None
    if reason is None:
        try:
            socket.create_connection(HUB, timeout=3).close()
        except OSError as exc:
            reason = f"the hub is unreachable: {exc.strerror or type(exc).__name__}"
    if reason:
        raise DataError(f"pretrained weights for '{backbone_cfg.name}' cannot be fetched "
                        f"({reason}); pass backbone.weights=/path/model.safetensors (or .pth) "
                        "or backbone.pretrained=false")


def check_timm_input_size(name: str, channels: int, image_size: int) -> None:
    """A timm network of fixed input size (a ViT's patch grid) refuses another size at its
    first forward pass, after the run folder is written. Built and run on the "meta" device
    (shapes only, no memory, a fraction of a second), it refuses it here. Only the network's
    own size assertion counts: any other failure on "meta" is left to the real run."""
    import timm
    import torch

    if name in LOCAL_BACKBONES:
        return
    with torch.device("meta"):
        try:
            net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=channels)
        except Exception:  # noqa: BLE001 - cannot be built on "meta": left to the real run
            return
        try:
            net(torch.empty(1, channels, image_size, image_size))
        except AssertionError as exc:
            size = (net.pretrained_cfg or {}).get("input_size", (0, 0, 0))[-1]
            reason = first_line(exc) or "assertion"
            raise UsageError(f"backbone '{name}' cannot take {image_size}x{image_size} images "
                             f"({reason}); set data.image_size={size}") from None
        except Exception:  # noqa: BLE001 - an op without a meta kernel: not this check's call
            pass


def check_backbone_name(name: str) -> None:
    """One of ours or a timm model name (checked before anything is built or written)."""
    import timm

    if name in LOCAL_BACKBONES:
        return
    if not timm.list_models(name) and name not in timm.list_models(pretrained=True):
        raise UsageError(f"unknown backbone '{name}'; use {', '.join(LOCAL_BACKBONES)} or a timm "
                         "model name (see `pnl-da list backbones`)")


def _weight_names(path: Path) -> set[str]:
    """The tensor names in a weights file (unwrapping {"state_dict": ...} and DDP's
    ``module.`` prefix, as timm's loader does)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return set(handle.keys())
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    return {k.removeprefix("module.") for k in state} if isinstance(state, dict) else set()


def _check_weights_cover(net: nn.Module, path: Path, name: str) -> None:
    """timm loads some architectures (ViTs) non-strictly: a file of another architecture then
    loads nothing and leaves a random network. Refuse a file that names under half of the
    network's tensors."""
    wanted = set(net.state_dict())
    found = len(wanted & _weight_names(path))
    if found < len(wanted) / 2:
        raise DataError(f"backbone.weights {path} holds {found} of the {len(wanted)} tensors of "
                        f"'{name}': it is another architecture's; give a weights file of {name}")


def _create_timm(name: str, channels: int, pretrained: bool,
                 weights: str | None) -> tuple[nn.Module, int]:
    import timm

    check_backbone_name(name)
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataError(f"backbone weights file not found: {path}; "
                            "set backbone.weights to an existing .safetensors or .pth file")
        try:
            net = timm.create_model(name, pretrained=True, num_classes=0, in_chans=channels,
                                    pretrained_cfg_overlay={"file": str(path)})
        except Exception as exc:  # another architecture's weights, a corrupt file, ...
            raise DataError(f"backbone.weights {path} cannot be loaded into '{name}' "
                            f"({type(exc).__name__}: {first_line(exc)}); give a weights file "
                            f"of {name}, or the backbone.name those weights belong to") from exc
        _check_weights_cover(net, path, name)
    elif pretrained:
        try:
            net = timm.create_model(name, pretrained=True, num_classes=0, in_chans=channels)
        except Exception as exc:  # offline, hub refused, ...: never fall back to random init
            raise DataError(
                f"could not fetch pretrained weights for '{name}' ({type(exc).__name__}); "
                "pass backbone.weights=/path/model.safetensors or backbone.pretrained=false"
            ) from exc
    else:
        net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=channels)
    return net, int(net.num_features)


def create_classifier(backbone_cfg, num_classes: int, heads: int,
                      image_size: int) -> Classifier:
    backbone, width = create_backbone(backbone_cfg.name, backbone_cfg.channels,
                                      image_size, backbone_cfg.pretrained,
                                      backbone_cfg.weights)
    return Classifier(backbone, width, num_classes, heads=heads,
                      bottleneck_dim=backbone_cfg.bottleneck_dim,
                      head_weight_norm=backbone_cfg.head_weight_norm)


def create_model(cfg, num_classes: int, dual: bool = False) -> Classifier | DualClassifier:
    """The model a run trains. ``dual`` (the task's choice: semi-supervised runs of a
    two-submodel method with ``ssl.model=dual``): two separate networks; otherwise one network
    with ``method.heads`` heads. ``method.extra_heads`` (pnl_paper's consistency heads) are
    added to each network."""
    heads, extra = int(cfg.method.heads), int(getattr(cfg.method, "extra_heads", 0))
    size = int(cfg.data.image_size)
    if dual:
        nets = [create_classifier(cfg.backbone, num_classes, 1 + extra, size) for _ in range(2)]
        return DualClassifier(*nets)
    model = create_classifier(cfg.backbone, num_classes, heads * (1 + extra), size)
    model.prediction_heads = heads
    return model
