r"""Run the bundle's model on chest CT without COVID-19 and compare its "lesions" with the radiologists' nodules.

The shared LIDC-IDRI slabs (DICOM series, each with the LIDC XML of up to four readers' nodule outlines) hold no
COVID-19 pneumonia, so the lesion volume a COVID model predicts there should be near zero; a lung nodule is the one
dense lesion they do hold. For every series folder with an XML file beside its slices this script runs, through
the command lines a user has:

1. ``medseg predict --bundle covid19_ct_lesion --volumes`` (the shipped model unless ``--ckpt``);
2. ``medseg-data dicom2nifti`` then ``medseg-data lidc`` (every reader's outline rasterised on the same grid);

and writes ``OUT/lidc_check.md`` and ``.json``: predicted lesion volume, lung volume (the bundle's lung mask), the
readers' nodule volume (any reader, and the consensus of two), how much of the prediction lies inside any reader's
outline, and the Dice with the consensus; plus ``OUT/CASE_overlay.png`` (prediction red, readers' outline green).

Usage (from a checkout with ``../shared`` beside it)::

    python medseg/bundles/covid19_ct_lesion/scripts/lidc_check.py \\
        --lidc ../shared/data/lidc_idri_ct_nodule_slabs --out runs/lidc_check
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("lidc_check")


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed (exit {done.returncode}): {last}")


def _series(root: Path) -> list[tuple[str, Path, Path]]:
    """``(case, series folder, xml)`` for every folder below ``root`` that holds .dcm files and one .xml file."""
    found = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        xmls = sorted(folder.glob("*.xml"))
        if len(xmls) == 1 and any(folder.glob("*.dcm")):
            case = next((part for part in folder.parts if part.upper().startswith("LIDC-IDRI-")), folder.name)
            found.append((case, folder, xmls[0]))
    return found


def _overlay(ct: np.ndarray, pred: np.ndarray, readers: np.ndarray, path: Path) -> None:
    """Four axial slices (the ones with the most reader voxels first), lung window, prediction and outline."""
    from scipy import ndimage as ndi

    from medseg.transforms.intensity import window_range

    low, high = window_range([1475, -450])  # the bundle's volume_window
    order = np.argsort(-(readers.sum(axis=(0, 1)) + 1e-3 * pred.sum(axis=(0, 1))))
    tiles = []
    for z in sorted(order[:4]):
        gray = np.clip((ct[:, :, z] - low) / (high - low), 0.0, 1.0) * 255.0
        rgb = np.repeat(gray[..., None], 3, axis=2)
        rgb[pred[:, :, z]] = 0.4 * rgb[pred[:, :, z]] + 0.6 * np.array([255.0, 0.0, 0.0])
        edge = readers[:, :, z] & ~ndi.binary_erosion(readers[:, :, z])
        rgb[edge] = (0.0, 255.0, 0.0)
        # RAS (x to the right, y to the front) -> radiological display: front up, patient's right on the left
        tiles.append(np.ascontiguousarray(rgb[::-1, ::-1].transpose(1, 0, 2).astype(np.uint8)))
    from medseg.imageio import write_png

    write_png(path, np.concatenate(tiles, axis=1))


def _nifti(path: Path) -> Any:
    import nibabel as nib

    return nib.load(str(path))


def check_case(case: str, series: Path, xml: Path, out: Path, ckpt: Path | None) -> dict[str, Any]:
    import nibabel as nib

    from medseg.transforms.lungs import lung_mask

    pred_dir, ct_dir, reader_dir = out / "predictions" / case, out / "ct" / case, out / "readers" / case
    predict = ["medseg", "predict", "--bundle", "covid19_ct_lesion", "--input", str(series), "--output", str(pred_dir)]
    _run([*predict, "--volumes", "--no-progress", *(["--ckpt", str(ckpt)] if ckpt else [])])
    _run(["medseg-data", "dicom2nifti", str(series), str(ct_dir), "--no-progress"])
    (ct_file,) = sorted(ct_dir.glob("*.nii.gz"))
    _run(["medseg-data", "lidc", str(xml), str(ct_file), str(reader_dir), "--no-progress"])
    (pred_file,) = sorted(pred_dir.glob("*_seg.nii.gz"))
    ct_img, pred_img = _nifti(ct_file), _nifti(pred_file)
    if not np.allclose(ct_img.affine, pred_img.affine, atol=1e-3) or ct_img.shape != pred_img.shape:
        raise RuntimeError(f"{case}: the prediction and the converted series are not on the same grid")
    ct = np.asarray(ct_img.dataobj, dtype=np.float32)
    pred = np.asarray(pred_img.dataobj) > 0
    any_reader = np.asarray(_nifti(reader_dir / "reader_count.nii.gz").dataobj) > 0
    consensus = np.asarray(_nifti(reader_dir / "consensus.nii.gz").dataobj) > 0
    spacing = np.linalg.norm(ct_img.affine[:3, :3], axis=0)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lungs = lung_mask(ct, spacing)
    canonical = [
        np.asarray(nib.as_closest_canonical(nib.Nifti1Image(a.astype(np.float32), ct_img.affine)).dataobj)
        for a in (ct, pred, any_reader)
    ]
    _overlay(canonical[0], canonical[1] > 0.5, canonical[2] > 0.5, out / f"{case}_overlay.png")
    denominator = int(pred.sum() + consensus.sum())
    return {
        "case": case,
        "lesion_ml": float(pred.sum() * voxel_ml),
        "lung_ml": None if lungs is None else float(lungs.sum() * voxel_ml),
        "nodule_any_reader_ml": float(any_reader.sum() * voxel_ml),
        "nodule_consensus_ml": float(consensus.sum() * voxel_ml),
        "lesion_inside_nodule_ml": float((pred & any_reader).sum() * voxel_ml),
        "dice_with_consensus": None if denominator == 0 else float(2 * (pred & consensus).sum() / denominator),
    }


def _markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# COVID lesion model on chest CT without COVID-19 (LIDC-IDRI slabs)",
        "",
        f"Produced by `{command}`.",
        "",
        "| case | lesion mL | lung mL | lesion / lung | nodule mL (any reader) | nodule mL (consensus) "
        "| lesion inside the nodule mL | Dice with consensus |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = "-" if not r["lung_ml"] else f"{100 * r['lesion_ml'] / r['lung_ml']:.1f} %"
        dice = "-" if r["dice_with_consensus"] is None else f"{r['dice_with_consensus']:.2f}"
        lung = "-" if r["lung_ml"] is None else f"{r['lung_ml']:.0f}"
        lines.append(
            f"| {r['case']} | {r['lesion_ml']:.2f} | {lung} | {share} | {r['nodule_any_reader_ml']:.2f} "
            f"| {r['nodule_consensus_ml']:.2f} | {r['lesion_inside_nodule_ml']:.2f} | {dice} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lidc", type=Path, required=True, help="folder of LIDC-IDRI series (DICOM + XML)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; must not exist)")
    parser.add_argument("--ckpt", type=Path, default=None, help="another model file (default: the shipped one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cases = _series(args.lidc) if args.lidc.is_dir() else []
    if not cases:
        sys.stderr.write(f"lidc_check: error: --lidc {args.lidc}: no folder with DICOM slices and one LIDC XML\n")
        return 2
    if args.out.exists():
        sys.stderr.write(f"lidc_check: error: --out {args.out} exists; give a new folder\n")
        return 2
    args.out.mkdir(parents=True)
    try:
        rows = [check_case(case, series, xml, args.out, args.ckpt) for case, series, xml in cases]
    except RuntimeError as err:
        sys.stderr.write(f"lidc_check: error: {err}\n")
        return 1
    command = "python medseg/bundles/covid19_ct_lesion/scripts/lidc_check.py " + " ".join(
        str(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    (args.out / "lidc_check.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (args.out / "lidc_check.md").write_text(_markdown(rows, command), encoding="utf-8")
    for r in rows:
        logger.info(
            "%s: %.2f mL lesion, %.2f mL of it inside the nodule",
            r["case"],
            r["lesion_ml"],
            r["lesion_inside_nodule_ml"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
