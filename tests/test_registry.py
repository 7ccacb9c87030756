"""The registry (names, needs) and ``create_loss``, the one route from a loss name to a loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.margins import margin_offsets
from medseg.registry import CLASS_COUNTS, LOSSES, SURROGATE, Need, Registry, create_loss


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


def test_needs_are_recorded_and_queried():
    reg = Registry("thing")
    need = Need("counts", "from somewhere")
    reg.register("a", needs=(need,))(dict)
    reg.register("b")(dict)
    assert reg.needs("a") == (need,)
    assert reg.needs("b") == ()
    assert reg.needing(need) == ["a"]
    with pytest.raises(TypeError, match="Need objects"):
        reg.register("c", needs=("counts",))  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown thing"):
        reg.needs("zzz")


# ----------------------------------------------------------------------------------------------------------------
# create_loss: the one route from a loss name to a loss


def _stats(path: Path, counts: list[int], **extra: object) -> Path:
    path.write_text(json.dumps({"num_classes": len(counts), "class_counts": counts, **extra}), encoding="utf-8")
    return path


def _mc_term(loss):
    from medseg.losses import MarginCalibrationLoss

    return loss if isinstance(loss, MarginCalibrationLoss) else loss.mc


def test_the_losses_built_from_class_counts_are_recorded():
    import medseg.losses  # noqa: F401  (registers every loss)

    assert LOSSES.needing(CLASS_COUNTS) == ["dice_mc", "mc", "tversky_mc"]
    assert LOSSES.needs("neuroiou") == (SURROGATE,)
    assert not SURROGATE.required


@pytest.mark.parametrize("name", ["mc", "dice_mc", "tversky_mc"])
def test_create_loss_gives_mc_the_offsets_of_the_stats(name: str, tmp_path: Path) -> None:
    counts = [9000, 700, 300]
    path = _stats(tmp_path / "s.json", counts, tau=5.0, v=2.0)
    loss = create_loss(name, stats=path, num_classes=3)
    # tau/v default to the ones stored with the counts (Algorithm 1 of Yu et al. with those values)
    rho_neg, rho_pos = margin_offsets(np.asarray(counts, dtype=np.float64), tau=5.0, v=2.0)
    np.testing.assert_allclose(_mc_term(loss).rho_neg.double().numpy(), rho_neg, rtol=1e-6)
    np.testing.assert_allclose(_mc_term(loss).rho_pos.double().numpy(), rho_pos, rtol=1e-6)
    # explicit tau/v win over the file's; a parsed mapping works like the file
    loss = create_loss(name, stats={"class_counts": counts}, tau=10.0, v=1.0)
    np.testing.assert_allclose(_mc_term(loss).rho_neg.double().numpy(), margin_offsets(counts, 10.0, 1.0)[0])
    # explicit counts win over the stats (and then tau/v keep the loss's defaults, 10 and 1)
    loss = create_loss(name, stats=path, class_counts=[1, 1, 2])
    np.testing.assert_allclose(_mc_term(loss).rho_neg.double().numpy(), margin_offsets([1, 1, 2], 10.0, 1.0)[0])
    # the same loss as the registered class built by hand
    direct = LOSSES.get(name)(class_counts=counts, tau=5.0, v=2.0)
    assert type(direct) is type(create_loss(name, stats=path))


def test_create_loss_without_counts_says_where_they_come_from(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"loss 'mc' needs the class pixel counts.*medseg-data stats"):
        create_loss("mc")
    with pytest.raises(FileNotFoundError, match="--num-classes 2"):
        create_loss("dice_mc", stats=tmp_path / "missing.json", num_classes=2)
    with pytest.raises(ValueError, match="holds counts for 2 classes but the network predicts num_classes=3"):
        create_loss("mc", stats=_stats(tmp_path / "s.json", [5, 5]), num_classes=3)
    offsets = create_loss("mc", rho_neg=[1.0, 2.0], rho_pos=[0.5, 0.5])  # the offsets themselves need no counts
    assert offsets.num_classes == 2


def test_create_loss_for_other_losses_ignores_stats(tmp_path: Path) -> None:
    from medseg.losses import CrossEntropyLoss

    loss = create_loss("ce", stats=tmp_path / "unused.json", num_classes=2)  # not read: no error for a missing file
    assert isinstance(loss, CrossEntropyLoss)
    logits, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)
    assert float(loss(logits, target)) == pytest.approx(np.log(2.0))  # uniform logits: -log(1/2)


def test_create_loss_rejects_arguments_the_loss_does_not_take():
    with pytest.raises(TypeError, match=r"loss 'dice' takes no argument\(s\) 'tau'; its arguments are: .*smooth_nr"):
        create_loss("dice", tau=3.0)
    with pytest.raises(KeyError, match="Did you mean 'dice'"):
        create_loss("dise")
