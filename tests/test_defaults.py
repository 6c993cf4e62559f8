"""Every default lives once: in the schema (the dataclasses), or in a YAML that changes it; and
the two modes compose one method the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pnl_da.config import RunConfig, SSLRunConfig, compose, config_dir, method_schemas

CONFIGS = config_dir("da")


def _leaves(node, prefix=""):
    for key, value in node.items():
        if key == "defaults" and not prefix:
            continue
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def restated_defaults(path: Path, configs: Path = CONFIGS) -> list[str]:
    """The keys of a YAML under configs/ whose value is the schema's default for that key."""
    ssl = "ssl" in path.relative_to(configs).parts
    root = configs / "ssl" if ssl else configs
    group = path.relative_to(root).parts[0] if path.parent != root else None
    text = path.read_text()
    data = OmegaConf.to_container(OmegaConf.create(text))
    schema = OmegaConf.structured(SSLRunConfig if ssl else RunConfig)
    methods = method_schemas()
    if group == "method" and path.stem in methods and "@package _global_" not in text:
        data = {"method": data}  # a method YAML's package is method
    elif group in ("trainer", "dataset", "benchmark") and "@package _global_" not in text:
        data = {group: data}
    found = []
    for key, value in _leaves(data):
        if key.startswith("method."):
            method = methods.get(path.stem)
            default = OmegaConf.select(OmegaConf.structured(method), key.removeprefix("method."),
                                       default=None) if method else None
        else:
            default = OmegaConf.select(schema, key, default=None)
        if isinstance(value, str) and value.startswith("${"):
            continue
        if default is not None and OmegaConf.is_config(default):
            default = OmegaConf.to_container(default)
        if default is not None and default == value:
            found.append(key)
    return found


YAMLS = sorted(p for p in CONFIGS.rglob("*.yaml") if "hydra" not in p.relative_to(CONFIGS).parts)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_no_yaml_restates_a_default_of_the_schema(path):
    restated = restated_defaults(path)
    assert not restated, f"{path.relative_to(CONFIGS)} restates the schema's default of {restated}"


def test_the_check_finds_a_restated_default(tmp_path):
    # the check itself can fail: a copy of the DANN config that writes trade_off: 1.0
    fake = tmp_path / "configs"
    (fake / "method").mkdir(parents=True)
    (fake / "method" / "dann.yaml").write_text("defaults:\n  - dann_schema\n  - _self_\n"
                                               "trade_off: 1.0\ngrl_alpha: 30.0\n")
    assert restated_defaults(fake / "method" / "dann.yaml", fake) == ["method.trade_off"]


@pytest.mark.parametrize("method", ["pnl", "source_only"])
def test_da_and_ssl_compose_the_same_method_from_the_same_options(method):
    """The semi-supervised preset of a method differs from its domain-adaptation form only in
    the keys its YAML names; given those same values, both paths give the same options."""
    ssl_yaml = OmegaConf.load(config_dir("ssl") / "method" / f"{method}.yaml") if method != \
        "source_only" else OmegaConf.create({})
    named = {k: v for k, v in ssl_yaml.items() if k != "defaults"}
    if method == "source_only":  # DA's source_only is SSL's supervised (same loss)
        da = compose(["method=source_only"]).method
        ssl = compose(["dataset=mnist-sample", "dataset.labels=20", "method=supervised"],
                      mode="ssl").method
        differs = {k for k in da if da[k] != ssl[k]}
        assert differs == {"name", "source_view", "predict"}
        return
    as_options = [f"method.{k}={str(v).lower()}" for k, v in named.items()]
    da = compose(["method=pnl", *as_options], allow_inert=True).method
    ssl = compose(["dataset=mnist-sample", "dataset.labels=20", "method=pnl"], mode="ssl").method
    assert OmegaConf.to_container(da) == OmegaConf.to_container(ssl)
    # and without them, the two differ in exactly those keys
    plain = compose(["method=pnl"]).method
    assert {k for k in plain if plain[k] != ssl[k]} == set(named)


@pytest.mark.parametrize("group,name", [("backbone", "resnet50"), ("trainer", "office")])
def test_the_semi_supervised_office_recipe_is_the_adaptation_one(group, name):
    """`pnl-da ssl folders` trains ResNet-50 with tllib's Office recipe from configs/ssl/, which
    cannot name a file of configs/: its copies must say what the originals say (the originals'
    defaults choose presets that semi-supervised runs set elsewhere)."""
    da = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{name}.yaml"))
    ssl = OmegaConf.to_container(OmegaConf.load(config_dir("ssl") / group / f"{name}.yaml"))
    da.pop("defaults", None)
    assert da == ssl
