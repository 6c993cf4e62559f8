"""Options with a fixed set of values: Enum-typed fields of the structured configs, so that
Hydra itself refuses a value outside the set (``method.selection=randon``)."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A string option with fixed values. A member equals its value (``View.weak == "weak"``)
    and prints as it (f-strings, YAML, JSON), so code compares and formats plain strings."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class View(Choice):
    """The augmentation of a batch: none, or the weak or strong view of data.weak/strong."""

    none = "none"
    weak = "weak"
    strong = "strong"


class Predict(Choice):
    """Test-time prediction: head a, head b, or the mean of the heads' softmaxes."""

    a = "a"
    b = "b"
    mean = "mean"


class Align(Choice):
    """Adversarial alignment stacked under a method."""

    none = "none"
    dann = "dann"
    cdan = "cdan"


class Toggle(Choice):
    """On, off, or decided by the run (``auto``)."""

    auto = "auto"
    true = "true"
    false = "false"
