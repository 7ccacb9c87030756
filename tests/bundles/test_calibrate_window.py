"""The COVID bundle's window calibration script: it recovers a known window, and the shipped one is its result."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
from _bundle_helpers import BUNDLES


def _script() -> ModuleType:
    path = BUNDLES / "covid19_ct_lesion" / "scripts" / "calibrate_window.py"
    spec = importlib.util.spec_from_file_location("calibrate_window", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_recovers_a_known_window() -> None:
    cw = _script()
    rng = np.random.default_rng(0)
    hu = np.concatenate([rng.normal(-900, 40, 5000), rng.normal(40, 30, 5000), rng.uniform(-1000, 400, 2000)])
    gray = cw.window_to_gray(rng.permutation(hu), 1200.0, -500.0)  # the same anatomy seen through W1200/L-500
    width, level, dist = cw.fit_window(hu, gray)
    assert (width, level) == (1200.0, -500.0)
    assert dist < 1e-6


def test_inference_config_uses_the_calibrated_window() -> None:
    config = json.loads((BUNDLES / "covid19_ct_lesion" / "configs" / "inference.json").read_text())
    assert config["volume_window"] == [1475, -450]  # the script's result on the shared data (its docstring)


def test_lung_crops_find_the_lungs() -> None:
    cw = _script()
    slab = np.full((1, 80, 80), -1000.0)  # air
    slab[0, 4:76, 4:76] = 40.0  # body, walls of at least 8 pixels around and between the lungs
    slab[0, 16:60, 14:34] = -850.0  # left lung
    slab[0, 16:60, 42:66] = -850.0  # right lung
    (crop,) = cw.lung_crops(slab, margin=2)
    assert crop.shape == (47, 55)  # lungs at rows 16..59 and columns 14..65, plus 2: rows 14..60, columns 12..66
    assert Path(cw.__file__).name == "calibrate_window.py"
