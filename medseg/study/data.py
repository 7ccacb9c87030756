"""Data preparation for a loss study: convert, split, count (idempotent).

Converters (``study.data.converter``):

- ``slices2d``: 2D CT slice folders (``source/<images>``, ``source/<masks>``) through
  :func:`medseg.data.slices2d.convert_slices`.
- ``instruments``: the shared endoscopic frames with tool masks pooled into one binary instrument dataset
  (:func:`convert_instruments`): CholecSeg8k (watershed 31 grasper, 32 L-hook), SegCol (127/128/129 tools) and
  the EndoVis 2017 sample (left/right part masks > 0, challenge crop); each frame's ``group`` is its clip.
- ``synthetic_ct`` / ``synthetic_frames``: :mod:`medseg.data.synthetic` (tests and smoke runs).
- ``datalist``: an existing datalist (``source`` is the JSON file); nothing is converted.

Each routine writes every case into the ``training`` list of ``<data_dir>/datalist.json`` (the study's
cross-validation makes the folds, :mod:`medseg.study.folds`) and ``<data_dir>/prepared.json``; when
``prepared.json`` exists the preparation is skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import write_json
from medseg.study.config import DataSpec

__all__ = ["convert_instruments", "prepare_data"]

logger = logging.getLogger(__name__)


def _resize_pair(img: np.ndarray, lab: np.ndarray, max_width: int | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    h, w = lab.shape
    if not max_width or w <= max_width:
        return img, lab
    nh = round(h * max_width / w)
    im = Image.fromarray(img).resize((max_width, nh), Image.Resampling.BILINEAR)
    lb = Image.fromarray(lab).resize((max_width, nh), Image.Resampling.NEAREST)
    return np.asarray(im), np.asarray(lb)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def convert_instruments(
    root: Path,
    out_dir: Path,
    sources: list[dict[str, Any]],
    *,
    max_width: int | None = 640,
) -> dict[str, Any]:
    """Pool endoscopic frames with tool masks into one binary instrument dataset (PNG pairs + datalist).

    Every frame goes into the ``training`` list with ``"group"`` = its clip, so that cross-validation can keep
    the frames of a clip together (consecutive frames are near-duplicates).

    Args:
        root: folder the ``sources[i]["path"]`` are relative to (the shared data folder).
        out_dir: output: ``images/<clip>/*.png`` (RGB), ``labels/<clip>/*.png`` (0 background, 1 instrument),
            ``datalist.json``.
        sources: ``{"kind": "cholecseg8k" | "segcol" | "endovis_sample", "path": ...}``.
        max_width: frames wider than this are downscaled (image bilinear, mask nearest) to save memory and time.

    Returns:
        Per-clip frame counts and instrument fractions.

    Note:
        CholecSeg8k's watershed value 255 (unlabelled border pixels) is written as background: the bundles have
        no ignore label, and these pixels lie on the black frame border where no instrument is.
    """
    from medseg.data.datalist import write_datalist

    splits: dict[str, list[dict[str, Any]]] = {"training": []}
    clips: dict[str, Any] = {}

    def emit(clip: str, frames: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        from medseg.imageio import write_png

        fg = 0
        total = 0
        for stem, img, lab in frames:
            img, lab = _resize_pair(img, lab, max_width)
            ip = out_dir / "images" / clip / f"{stem}.png"
            lp = out_dir / "labels" / clip / f"{stem}.png"
            write_png(ip, img)
            write_png(lp, lab.astype(np.uint8))
            fg += int(lab.sum())
            total += lab.size
            splits["training"].append({"image": str(ip), "label": str(lp), "group": clip, "frame": stem})
        clips[clip] = {"frames": len(frames), "instrument_fraction": round(fg / max(total, 1), 4)}

    for src in sources:
        kind, path = src.get("kind"), root / str(src.get("path", ""))
        if not path.is_dir():
            raise FileNotFoundError(f"data.options.sources: {kind} folder {str(path)!r} not found")
        if kind == "cholecseg8k":
            frames = []
            for img_path in sorted(path.glob("frame_*_endo.png"), key=lambda p: int(p.stem.split("_")[1])):
                ws = _read(img_path.with_name(img_path.stem + "_watershed_mask.png"))
                ws = ws[..., 0] if ws.ndim == 3 else ws
                lab = np.isin(ws, (31, 32)).astype(np.uint8)
                frames.append((img_path.stem, _read(img_path)[..., :3], lab))
            emit(f"cholecseg8k_{path.name}", frames)
        elif kind == "segcol":
            for seq in sorted(p for p in path.iterdir() if p.is_dir()):
                frames = []
                for img_path in sorted((seq / "imgs").glob("frame_*.png"), key=lambda p: int(p.stem.split("_")[1])):
                    idx = int(img_path.stem.split("_")[1])
                    m = _read(seq / "segm_maps" / f"{seq.name}_segm_map_{idx}.png")
                    lab = np.isin(m, (127, 128, 129)).astype(np.uint8)
                    frames.append((img_path.stem, _read(img_path)[..., :3], lab))
                emit(f"segcol_{seq.name}", frames)
        elif kind == "endovis_sample":
            img = _read(path / "frame.png")[..., :3]
            lab = ((_read(path / "left_frame.png") > 0) | (_read(path / "right_frame.png") > 0)).astype(np.uint8)
            lab = lab[..., 0] if lab.ndim == 3 else lab
            # challenge crop: 1280x1024 at (x=320, y=28) (the README's valid image area)
            img, lab = img[28:1052, 320:1600], lab[28:1052, 320:1600]
            emit("endovis2017_sample", [("frame", img, lab)])
        else:
            raise ValueError(f"data.options.sources: unknown kind {kind!r} (cholecseg8k, segcol, endovis_sample)")
    datalist = out_dir / "datalist.json"
    write_datalist(
        datalist, splits, metadata={"name": "instruments_binary", "labels": {"0": "background", "1": "instrument"}}
    )
    return {"clips": clips, "max_width": max_width}


def prepare_data(spec: DataSpec, data_dir: Path) -> Path:
    """Convert and split the study's data into ``data_dir`` once; return the datalist path.

    Raises:
        ValueError: a conversion failed for some file (the count and first error are named).
    """
    datalist = data_dir / "datalist.json"
    marker = data_dir / "prepared.json"
    if marker.is_file() and datalist.is_file():
        logger.info("data already prepared in %s", data_dir)
        return datalist
    data_dir.mkdir(parents=True, exist_ok=True)
    opts = dict(spec.options)
    info: dict[str, Any] = {"converter": spec.converter, "source": None if spec.source is None else str(spec.source)}
    if spec.converter == "slices2d":
        from medseg.data.slices2d import convert_slices

        assert spec.source is not None  # validated by the config
        report = convert_slices(
            spec.source / opts.pop("images", "imgs"),
            spec.source / opts.pop("masks", "masks"),
            data_dir,
            **opts,
        )
        if not report.ok:
            lines = report.failure_lines()
            raise ValueError(f"converting {spec.source} failed for {len(lines)} slice(s), first: {lines[0]}")
    elif spec.converter == "instruments":
        assert spec.source is not None
        info.update(
            convert_instruments(
                spec.source,
                data_dir,
                list(opts.get("sources", [])),
                max_width=opts.get("max_width", 640),
            )
        )
    elif spec.converter == "synthetic_ct":
        from medseg.data.synthetic import make_ct_slices

        made = make_ct_slices(data_dir, **opts)
        if made.resolve() != datalist.resolve():
            raise ValueError(f"synthetic_ct wrote {made}, expected {datalist}; do not set datalist_name")
    elif spec.converter == "synthetic_frames":
        from medseg.data.synthetic import make_instrument_frames

        made = make_instrument_frames(data_dir, **opts)
        if made.resolve() != datalist.resolve():
            raise ValueError(f"synthetic_frames wrote {made}, expected {datalist}; do not set datalist_name")
    elif spec.converter == "datalist":
        assert spec.source is not None
        if not spec.source.is_file():
            raise FileNotFoundError(f"data.source datalist {str(spec.source)!r} not found")
        from medseg.data.datalist import read_datalist, write_datalist

        dl = read_datalist(spec.source)
        write_datalist(datalist, {k: [dict(e) for e in v] for k, v in dl.splits.items()}, metadata=dl.metadata)
    else:  # pragma: no cover - validated by the config
        raise ValueError(f"unknown converter {spec.converter!r}")
    write_json(marker, info)
    return datalist
