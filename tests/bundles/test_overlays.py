"""The loss overlays in ``configs/losses``: one per registered loss, each building that loss in both bundles.

These tests parse configs only (no training): every overlay merged over each bundle's ``train.json`` builds its
loss through ``medseg.registry.create_loss`` (the one route from a name to a loss), which must give the same loss
as the registered class called with the overlay's arguments (and, for the losses that need class counts, the
counts of ``stats_file``), and a finite value on a small batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _bundle_helpers import BUNDLES, LOSS_OVERLAYS, Dataset, bundle_configs, raises_in_chain

import medseg.losses  # noqa: F401  (registers every loss)
from medseg.registry import CLASS_COUNTS, LOSSES

BUNDLE_NAMES = ("covid19_ct_lesion", "robotic_instrument")
OVERLAYS = sorted(p.stem for p in LOSS_OVERLAYS.glob("*.json"))
MC_FAMILY = LOSSES.needing(CLASS_COUNTS)
#: The arguments every overlay passes to the builder besides the loss's own: what the run provides.
RUN_ARGUMENTS = ("name", "stats", "num_classes")


def _parser(bundle: str, overlay: str, overrides: dict[str, Any]) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(bundle_configs(bundle, overlay))
    parser.read_meta(str(BUNDLES / bundle / "configs" / "metadata.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _batch(num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn((2, num_classes, 16, 16), generator=gen)
    target = torch.randint(0, num_classes, (2, 1, 16, 16), generator=gen)
    target[:, :, 0, :num_classes] = torch.arange(num_classes)  # every class present
    return logits, target


def test_every_registered_loss_has_an_overlay() -> None:
    assert sorted(LOSSES.names()) == OVERLAYS


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_builds_its_loss_through_the_one_builder(name: str) -> None:
    overlay = json.loads((LOSS_OVERLAYS / f"{name}.json").read_text(encoding="utf-8"))
    assert overlay["loss_name"] == name  # the run tag that keeps resume from mixing runs
    spec = overlay["loss"]
    assert spec["_target_"] == "medseg.registry.create_loss"
    assert spec["name"] == name
    assert name in LOSSES
    assert spec["stats"] == "@stats_file"
    assert spec["num_classes"] == "@num_classes"


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_builds_the_registered_loss(bundle: str, name: str, covid_data: Dataset) -> None:
    parser = _parser(bundle, name, {"stats_file": str(covid_data.stats_file), "num_classes": 2})
    loss = parser.get_parsed_content("loss")
    kwargs = {
        k: parser.get_parsed_content(f"loss#{k}") for k in parser["loss"] if k not in ("_target_", *RUN_ARGUMENTS)
    }
    if name in MC_FAMILY:
        stats = json.loads(covid_data.stats_file.read_text(encoding="utf-8"))
        kwargs["class_counts"] = stats["class_counts"]
    reference = LOSSES.get(name)(**kwargs)  # the registered class called by hand with the same arguments
    assert type(loss) is type(reference)
    assert parser.get_parsed_content("loss_name") == name
    logits, target = _batch(2)
    value = loss(logits, target)
    assert value.ndim == 0
    assert torch.isfinite(value)
    torch.testing.assert_close(value, reference(logits, target))


@pytest.mark.parametrize("name", MC_FAMILY)
def test_mc_overlays_take_class_counts_from_stats_file(name: str, covid_multiclass_data: Dataset) -> None:
    from medseg.losses import margin_offsets

    stats = json.loads(covid_multiclass_data.stats_file.read_text(encoding="utf-8"))
    parser = _parser(
        "covid19_ct_lesion",
        name,
        {"stats_file": str(covid_multiclass_data.stats_file), "num_classes": 3},
    )
    assert parser.get_parsed_content("loss#stats") == str(covid_multiclass_data.stats_file)
    loss = parser.get_parsed_content("loss")
    mc = loss if name == "mc" else next(m for m in loss.modules() if type(m).__name__ == "MarginCalibrationLoss")
    rho_neg, rho_pos = margin_offsets(np.asarray(stats["class_counts"]), tau=10.0, v=1.0)
    np.testing.assert_allclose(mc.rho_neg.double().numpy(), rho_neg, rtol=1e-6)
    np.testing.assert_allclose(mc.rho_pos.double().numpy(), rho_pos, rtol=1e-6)


@pytest.mark.parametrize("name", MC_FAMILY)
def test_mc_overlay_without_stats_says_which_command_to_run(name: str, tmp_path: Path) -> None:
    parser = _parser("robotic_instrument", name, {"stats_file": str(tmp_path / "missing.json")})
    with raises_in_chain(FileNotFoundError, "run `medseg-data stats DATALIST --num-classes 2 --out STATS_JSON`"):
        parser.get_parsed_content("loss")


def test_mc_overlay_with_counts_for_other_classes_fails(covid_data: Dataset) -> None:
    parser = _parser("covid19_ct_lesion", "mc", {"stats_file": str(covid_data.stats_file), "num_classes": 3})
    with raises_in_chain(ValueError, "holds counts for 2 classes but the network predicts num_classes=3"):
        parser.get_parsed_content("loss")


def test_neuroiou_overlay_takes_a_fitted_surrogate(tmp_path: Path) -> None:
    from medseg.losses.neuroiou import default_neuroiou_surrogate

    surrogate = default_neuroiou_surrogate()
    path = tmp_path / "surrogate.json"
    surrogate.save(path)
    parser = _parser("covid19_ct_lesion", "neuroiou", {"neuroiou_surrogate": str(path)})
    loss = parser.get_parsed_content("loss")
    logits, target = _batch(2)
    from medseg.losses import NeuroIoULoss

    torch.testing.assert_close(loss(logits, target), NeuroIoULoss(surrogate)(logits, target))


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
@pytest.mark.parametrize("config", ["train.json", "multi_gpu_train.json"])
def test_amp_only_on_cuda(bundle: str, config: str) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    files = [BUNDLES / bundle / "configs" / "train.json"]
    if config != "train.json":
        files.append(BUNDLES / bundle / "configs" / config)
    parser.read_config([str(f) for f in files])
    parser["plan"] = {"amp": True}  # the plan asks for mixed precision: MONAI's CUDA AMP only where CUDA is
    assert parser.get_parsed_content("amp") is torch.cuda.is_available()
    assert parser.get_parsed_content("cpu_precision") == "bf16"  # bfloat16 autocast on capable CPUs instead
    parser["plan"] = {"amp": False}
    assert parser.get_parsed_content("amp", lazy=False) is False
    assert parser["train"]["trainer"]["amp"] == "@amp"
    assert parser["validate"]["evaluator"]["amp"] == "@amp"
