"""Each bundle's ``inference.json``: ``monai.bundle run`` and ``medseg predict --bundle`` write the same masks.

The weights are those of a freshly initialised small network (seeded), saved as a ``model.pt``: what matters
here is that both entry points build the same predictor, preprocessing and writer from the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _bundle_helpers import BUNDLES, FEATURES, SIZE, Dataset, make_workflow

pytestmark = pytest.mark.bundle


def _save_weights(bundle: str, path: Path, overrides: dict[str, Any]) -> Path:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "inference.json"))
    for key, value in overrides.items():
        parser[key] = value
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _read_mask(path: Path) -> np.ndarray:
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj)
    from PIL import Image

    return np.asarray(Image.open(path))


def _both_ways(bundle: str, inputs: list[Path], tmp_path: Path) -> tuple[Path, Path]:
    from medseg.inference import predict_with_bundle

    overrides = {"network_def#features": FEATURES, "spatial_size": [SIZE, SIZE]}
    ckpt = _save_weights(bundle, tmp_path / "model.pt", overrides)
    via_monai, via_medseg = tmp_path / "monai", tmp_path / "medseg"
    workflow = make_workflow(
        bundle,
        [str(BUNDLES / bundle / "configs" / "inference.json")],
        {
            **overrides,
            "bundle_root": str(BUNDLES / bundle),
            "ckpt_path": str(ckpt),
            "input_paths": [str(p) for p in inputs],
            "output_dir": str(via_monai),
        },
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = predict_with_bundle(BUNDLES / bundle, list(inputs), via_medseg, ckpt=ckpt, overrides=overrides)
    assert not report.failed, [r.error for r in report.failed]
    return via_monai, via_medseg


def _assert_same_masks(a: Path, b: Path) -> list[Path]:
    masks = sorted(p.relative_to(a) for p in a.rglob("*_seg.*"))
    assert masks
    assert masks == sorted(p.relative_to(b) for p in b.rglob("*_seg.*"))
    for rel in masks:
        np.testing.assert_array_equal(_read_mask(a / rel), _read_mask(b / rel))
    return [a / rel for rel in masks]


def test_covid_inference_slices_and_volume(covid_data: Dataset, tmp_path: Path) -> None:
    from medseg.data import load_datalist
    from medseg.data.synthetic import make_ct_volume

    slice_path = Path(load_datalist(covid_data.datalist, "test")[0]["image"])
    volume = make_ct_volume(tmp_path / "ct.nii.gz", shape=(SIZE, SIZE, 4), seed=1)
    a, b = _both_ways("covid19_ct_lesion", [slice_path, Path(volume.image)], tmp_path)
    masks = {p.name: _read_mask(p) for p in _assert_same_masks(a, b)}
    import nibabel as nib

    # masks lie on each input's own grid, with labels 0..num_classes-1
    assert masks[slice_path.name.replace(".nii.gz", "_seg.nii.gz")].shape == nib.load(str(slice_path)).shape
    assert masks["ct_seg.nii.gz"].shape == nib.load(str(volume.image)).shape
    assert all(set(np.unique(m)) <= {0, 1} for m in masks.values())


def test_robotic_inference_frames(robotic_data: Dataset, tmp_path: Path) -> None:
    from medseg.data import load_datalist

    frames = [Path(item["image"]) for item in load_datalist(robotic_data.datalist, "test")]
    a, b = _both_ways("robotic_instrument", frames, tmp_path)
    from PIL import Image

    for mask in _assert_same_masks(a, b):
        frame = next(f for f in frames if mask.name == f"{f.stem}_seg.png")
        assert _read_mask(mask).shape == Image.open(frame).size[::-1]
