"""Registry sweep: every registered loss, built by name, on 2D and 3D inputs and every label form.

Adding a loss to ``LOSSES`` adds it here automatically (STYLE.md, "Registry sweep"). A loss that needs the label
distribution (the margin-calibration family) gets the class counts from ``stats`` through
:func:`medseg.registry.create_loss`; a stub that still raises ``NotImplementedError`` is reported as xfail, and
nothing else is skipped.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import medseg.losses  # noqa: F401  (registers every loss)
from medseg.registry import LOSSES, create_loss

NAMES = LOSSES.names()
K = 3


def _build(name: str, num_classes: int = K, **kwargs):
    """Build ``name`` through the one builder, giving it the class statistics of a (fictitious) training split.

    Only the losses that record the need (``LOSSES.needing(CLASS_COUNTS)``) read them.
    """
    counts = [1000.0 * (k + 1) for k in range(num_classes)]
    try:
        return create_loss(name, stats={"class_counts": counts}, num_classes=num_classes, **kwargs)
    except NotImplementedError:
        pytest.xfail(f"{name} is still a stub (NotImplementedError)")


def _inputs(spatial, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(2, K, *spatial, generator=g) * 4).to(dtype)
    labels = torch.randint(0, K, (2, *spatial), generator=g)
    labels[1] = 0  # the second image has only class 0: empty classes in the batch
    return logits, labels


FORMS = {
    "labels": lambda y: y,
    "labels_channel": lambda y: y[:, None],
    "labels_channel_float": lambda y: y[:, None].float(),
    "one_hot": lambda y: F.one_hot(y, K).movedim(-1, 1).float(),
}


def test_registry_has_the_design_names():
    expected = {
        "mc",
        "dice_mc",
        "tversky_mc",
        "ce",
        "dice",
        "generalized_dice",
        "tversky",
        "focal",
        "lovasz_softmax",
        "soft_iou",
        "noise_robust_dice",
        "lmp",
        "neuroiou",
    }
    assert expected <= set(NAMES)


@pytest.mark.parametrize("spatial", [(5, 6), (3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_label_form(name, spatial):
    loss = _build(name)
    values = []
    for form, make_target in FORMS.items():
        logits, labels = _inputs(spatial)
        logits.requires_grad_(True)
        value = loss(logits, make_target(labels))
        assert value.ndim == 0, f"{name}/{form}: default reduction must give a scalar, got {tuple(value.shape)}"
        assert torch.isfinite(value), f"{name}/{form}: loss {value}"
        value.backward()
        assert logits.grad is not None, f"{name}/{form}: no gradient reached the logits"
        assert bool(torch.isfinite(logits.grad).all()), f"{name}/{form}: non-finite gradient"
        assert float(logits.grad.abs().sum()) > 0, f"{name}/{form}: zero gradient"
        values.append(value.detach())
        for pname, param in loss.named_parameters():
            if param.requires_grad:
                assert param.grad is not None, f"{name}: parameter {pname} got no gradient"
                assert bool(torch.isfinite(param.grad).all()), f"{name}: parameter {pname} has a non-finite gradient"
        loss.zero_grad(set_to_none=True)
    # every label form describes the same labelling, so it gives the same loss
    for form, v in zip(FORMS, values, strict=True):
        torch.testing.assert_close(v, values[0], msg=f"{name}: label form {form} gives a different loss")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", NAMES)
def test_half_precision_computes_in_float32(name, dtype):
    loss = _build(name)
    logits, labels = _inputs((6, 6), seed=1, dtype=dtype)
    value = loss(logits, labels)
    assert value.dtype == torch.float32, f"{name}: {dtype} logits gave a {value.dtype} loss"
    assert torch.isfinite(value)
    reference = loss(logits.float(), labels)
    torch.testing.assert_close(value, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_value_errors_naming_the_argument(name):
    loss = _build(name)
    logits, labels = _inputs((4, 4), seed=2)
    with pytest.raises(ValueError, match="target"):
        loss(logits, labels[:, :3])  # wrong spatial shape
    bad = labels.clone()
    bad[0, 0, 0] = K  # a label >= K that is not an ignore index
    with pytest.raises(ValueError, match="target"):
        loss(logits, bad)
    nan_logits = logits.clone()
    nan_logits[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits"):
        loss(nan_logits, labels)
    inf_logits = logits.clone()
    inf_logits[1, 1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="logits"):
        loss(inf_logits, labels)


@pytest.mark.parametrize("name", NAMES)
def test_logits_up_to_50_and_a_perfect_prediction(name):
    loss = _build(name)
    _, labels = _inputs((5, 5), seed=3)
    perfect = (F.one_hot(labels, K).movedim(-1, 1).float() * 2 - 1) * 25.0  # margin 50 for the true class
    wrong = perfect.roll(1, dims=1)  # margin 50 for a wrong class everywhere
    for logits in (perfect, wrong):
        logits = logits.clone().requires_grad_(True)
        value = loss(logits, labels)
        value.backward()
        assert torch.isfinite(value)
        assert bool(torch.isfinite(logits.grad).all())
    assert float(loss(perfect, labels)) < float(loss(wrong, labels)), f"{name}: perfect not better than wrong"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(KeyError, match="Did you mean 'dice'"):
        create_loss("dise")
    with pytest.raises(KeyError, match="lovasz_softmax"):
        create_loss("lovasz")


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_after_good_ones_still_raise(name):
    # inputs are checked in full only on the first call of an input signature; later batches are checked through
    # the loss value and PyTorch's own indexing errors, which must still end in the same clear errors
    loss = _build(name)
    logits, labels = _inputs((4, 4), seed=4)
    assert torch.isfinite(loss(logits, labels))  # the signature is now validated
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = logits.clone()
        bad[1, 2, 3, 0] = value
        with pytest.raises(ValueError, match="logits contains NaN or inf"):
            loss(bad, labels)
    for label in (K, -1):
        bad = labels.clone()
        bad[0, 1, 1] = label
        with pytest.raises(ValueError, match=f"target holds label {label}"):
            loss(logits, bad)
    assert torch.isfinite(loss(logits, labels))  # and good inputs still pass
