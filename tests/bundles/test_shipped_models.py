"""The trained models shipped in the bundles: present, small, self-describing, in agreement with their bundle's
``inference.json`` (no warning line on load), free of local paths, and usable without ``--ckpt``."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.checkpoint import load_checkpoint
from medseg.cli.main import main
from medseg.resources import bundle_dir

COVID = "covid19_ct_lesion"
SHIPPED = [COVID, "robotic_instrument"]


@pytest.mark.parametrize("bundle", SHIPPED)
def test_the_shipped_model_is_small_and_describes_itself(bundle: str) -> None:
    path = bundle_dir(bundle) / "models" / "model.pt"
    assert path.is_file(), f"{bundle} ships no models/model.pt"
    assert path.stat().st_size < 8 * 2**20  # lives in git: float16 weights, a few MB
    loaded = load_checkpoint(path)
    meta = loaded.metadata
    assert meta is not None
    assert meta.bundle == bundle
    assert meta.network is not None
    assert meta.classes
    assert meta.roi_size
    assert meta.plan is not None
    assert meta.plan.get("datalist") == "datalist.json"  # no local path
    assert all(v.dtype.itemsize == 2 for v in loaded.state_dict.values() if v.is_floating_point())


@pytest.mark.parametrize("bundle", SHIPPED)
def test_the_bundle_config_agrees_with_its_shipped_model(bundle: str, caplog: pytest.LogCaptureFixture) -> None:
    """Loading the bundle's own model logs no checkpoint/bundle difference: the config describes that model."""
    from medseg.inference import load_bundle

    with caplog.at_level(logging.WARNING, logger="medseg.inference.bundle"):
        loaded = load_bundle(bundle_dir(bundle))
    assert loaded.model is not None
    assert [r.getMessage() for r in caplog.records if r.name == "medseg.inference.bundle"] == []


def test_predict_with_the_covid_bundle_needs_no_ckpt(tmp_path: Path) -> None:
    """What a user runs right after installing: a chest CT slice in, a lesion mask out."""
    img = np.full((64, 72), 40, np.uint8)
    img[10:54, 8:30] = img[10:54, 40:64] = 200  # two bright "lungs" on the 0-255 slice scale: a smoke test
    Image.fromarray(img).save(tmp_path / "slice.png")
    out = tmp_path / "out"
    code = main(["predict", "--bundle", COVID, "--input", str(tmp_path / "slice.png"), "--output", str(out)])
    assert code == 0
    mask = np.asarray(Image.open(out / "slice_seg.png"))
    assert mask.shape == (64, 72)
    assert set(np.unique(mask)) <= {0, 1}
    record = json.loads((out / "slice_prediction.json").read_text())
    assert record["state"] == "complete"
    assert re.fullmatch("[0-9a-f]{64}", record["model_sha256"])  # the model that made it is recorded
