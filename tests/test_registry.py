from __future__ import annotations

import pytest

from medseg.registry import Registry


def test_duplicate_name_raises():
    reg = Registry("thing")
    reg.register("a")(dict)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(list)


def test_unknown_name_suggests_closest():
    reg = Registry("thing")
    reg.register("dice")(dict)
    reg.register("dice_mc")(dict)
    with pytest.raises(KeyError, match="Did you mean 'dice'"):
        reg.get("dise")


def test_create_passes_kwargs():
    reg = Registry("thing")
    reg.register("d")(dict)
    assert reg.create("d", a=1) == {"a": 1}
    assert reg.names() == ["d"]
    assert "d" in reg


def test_name_must_be_lower_case():
    with pytest.raises(ValueError, match="lower-case"):
        Registry("thing").register("Dice")
