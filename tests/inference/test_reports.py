"""Label-names sidecars and per-case volumes of NIfTI masks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.inference.reports import label_sidecar_path, mask_volumes, write_label_sidecar, write_volumes_csv

CLASSES = ["background", "ground-glass opacity", "consolidation"]


def _mask(path: Path, data: np.ndarray, zooms: tuple[float, ...], unit: str = "mm") -> Path:
    image = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    image.header.set_xyzt_units(xyz=unit)
    nib.save(image, path)
    return path


def test_volumes_are_voxel_counts_times_the_header_voxel_size(tmp_path: Path) -> None:
    data = np.zeros((10, 12, 8), dtype=np.uint8)
    data[:3, :4, :5] = 1  # 60 voxels
    data[5:7, 5:7, 5:8] = 2  # 12 voxels
    path = _mask(tmp_path / "case01_seg.nii.gz", data, (0.8, 0.8, 2.5))
    volumes = mask_volumes(path, CLASSES)
    # one voxel: 0.8 * 0.8 * 2.5 = 1.6 mm^3 = 0.0016 mL; 60 voxels = 0.096 mL, 12 voxels = 0.0192 mL
    assert volumes.case == "case01_seg"
    assert volumes.voxel_ml == pytest.approx(0.0016)
    assert volumes.voxels == {"ground-glass opacity": 60, "consolidation": 12}
    assert volumes.volumes_ml == pytest.approx({"ground-glass opacity": 0.096, "consolidation": 0.0192})
    assert volumes.foreground_ml == pytest.approx(0.1152)


@pytest.mark.parametrize(("unit", "scale"), [("mm", 1.0), ("meter", 1e9), ("micron", 1e-9), ("unknown", 1.0)])
def test_volumes_follow_the_header_spatial_unit(tmp_path: Path, unit: str, scale: float) -> None:
    data = np.ones((2, 2, 2), dtype=np.uint8)
    volumes = mask_volumes(_mask(tmp_path / "m.nii.gz", data, (1.0, 1.0, 1.0), unit), CLASSES[:2])
    # 8 voxels of 1 unit^3: 8 mm^3 = 0.008 mL in mm; a metre is 1000 mm, so a m^3 voxel is 1e9 mm^3
    assert volumes.volumes_ml["ground-glass opacity"] == pytest.approx(0.008 * scale)


def test_volumes_refuse_unnamed_labels_and_2d_masks(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 4), dtype=np.uint8)
    data[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"label values \[7\] have no class name"):
        mask_volumes(_mask(tmp_path / "a.nii.gz", data, (1, 1, 1)), CLASSES)
    flat = nib.Nifti1Image(np.zeros((4, 4), dtype=np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="volumes need a 3D mask"):
        mask_volumes(flat, CLASSES, case="slice")
    with pytest.raises(FileNotFoundError, match="no such file"):
        mask_volumes(tmp_path / "missing.nii.gz", CLASSES)


def test_volumes_csv(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[0, :2, :2] = 1
    b = np.full((2, 2, 2), 2, dtype=np.uint8)
    cases = [
        mask_volumes(_mask(tmp_path / "a_seg.nii.gz", a, (2.0, 2.0, 2.0)), CLASSES, case="a"),
        mask_volumes(_mask(tmp_path / "b_seg.nii.gz", b, (1.0, 1.0, 1.0)), CLASSES, case="b"),
    ]
    out = write_volumes_csv(tmp_path / "volumes.csv", cases)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # a: 4 voxels of 8 mm^3 = 0.032 mL; b: 8 voxels of 1 mm^3 = 0.008 mL
    assert rows == [
        {
            "case": "a",
            "ground-glass opacity_ml": "0.0320",
            "consolidation_ml": "0.0000",
            "foreground_ml": "0.0320",
            "voxel_ml": "0.008",
        },
        {
            "case": "b",
            "ground-glass opacity_ml": "0.0000",
            "consolidation_ml": "0.0080",
            "foreground_ml": "0.0080",
            "voxel_ml": "0.001",
        },
    ]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_volumes_csv(out, cases)
    write_volumes_csv(out, cases[:1], overwrite=True)
    assert len(out.read_text().splitlines()) == 2


def test_label_sidecar(tmp_path: Path) -> None:
    mask = tmp_path / "case01_seg.nii.gz"
    out = write_label_sidecar(mask, CLASSES, provenance={"bundle": "covid19_ct_lesion", "input": "case01.nii.gz"})
    assert out == label_sidecar_path(mask) == tmp_path / "case01_seg_labels.json"
    data = json.loads(out.read_text())
    assert data["labels"] == {"0": "background", "1": "ground-glass opacity", "2": "consolidation"}
    assert data["mask"] == "case01_seg.nii.gz"
    assert data["provenance"]["bundle"] == "covid19_ct_lesion"
    assert data["provenance"]["software"].startswith("medseg ")
    with pytest.raises(FileExistsError):
        write_label_sidecar(mask, CLASSES)
    with pytest.raises(ValueError, match="must be unique"):
        write_label_sidecar(tmp_path / "x.nii.gz", ["background", "a", "a"])
    with pytest.raises(TypeError, match="provenance must be JSON data"):
        write_label_sidecar(tmp_path / "y.nii.gz", CLASSES, provenance={"when": object()})
    with pytest.raises(ValueError, match="not a NIfTI file name"):
        label_sidecar_path(tmp_path / "mask.png")
