"""The main job end to end on embedded sample data (``make demo`` / ``medseg demo``).

1. Generate synthetic CT slices with lesions (:mod:`medseg.data.synthetic`; no external data needed), and count
   class pixels on the training split into ``stats.json`` with the MC margin offsets.
2. Train the ``covid19_ct_lesion`` bundle with the papers' protocol: CE pre-training, then fine-tuning with
   margin calibration (the ``mc`` loss overlay), through ``monai.bundle run``.
3. Predict the held-back test slices with the bundle's ``inference.json`` and write the masks, with overlay PNGs
   beside them (red: predicted lesion, green outline: reference).
4. Evaluate the masks against the references (dataset-level mIoU, Dice, HD95).
5. Predict a synthetic CT volume in HU (the 2D network runs slice-wise), write the mask in the volume's own
   geometry and an overlay montage of its slices, and score it over the whole volume and over the slices that
   show lungs (see :class:`VolumeScore`).

With ``real_data`` pointing at ``../shared/data/covid19_ct_infection_medseg_infnet`` the same job runs on the real
COVID-19 slices (converted with ``medseg-data slices2d``) instead of the synthetic ones, without step 5.

Running again reuses what is still valid: each stage records a fingerprint of its options and of the stages it
depends on in ``OUTPUT/demo.json``; a stage whose fingerprint changed (``size``, epochs, data) is recomputed with
everything after it, and an interrupted training run resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.typing import PathLike

__all__ = [
    "DemoResult",
    "StageEvent",
    "VolumeScore",
    "run_demo",
    "score_volume",
    "write_slice_overlays",
    "write_volume_overlay",
]

logger = logging.getLogger(__name__)

BUNDLE_NAME = "covid19_ct_lesion"
SMALL_FEATURES = [16, 32, 64, 128, 256]
#: Bumped when a stage's outputs change meaning, so that older demo folders are recomputed.
_FORMAT = 2
_RECORD = "demo.json"
#: Top-level entries a demo writes; a non-empty output folder holding anything else is refused.
_ENTRIES = frozenset({_RECORD, "data", "runs", "predictions", "references", "evaluation", "volume"})
#: Colours of the overlays: predicted lesion filled red, reference outlined green.
_PRED_RGB = np.array([[0, 0, 0], [255, 0, 0], [255, 160, 0]], dtype=np.uint8)
_REF_RGB = np.array([0, 255, 0], dtype=np.uint8)
#: HU threshold between aerated lung (about -850 HU) and soft tissue (about 40 HU).
_AIR_HU = -500.0
#: Overlays of small images are enlarged (nearest neighbour) to at least this many pixels per side.
_MIN_SIDE = 256


@dataclass(frozen=True)
class StageEvent:
    """Progress of one demo stage, for a caller that reports it (``medseg demo`` prints one line per stage).

    Attributes:
        index: 1-based position of the stage.
        total: number of stages in this run.
        title: what the stage does (``"CE pre-training, then MC fine-tuning"``).
        state: ``"running"`` when it starts, then ``"done"`` (computed now) or ``"reused"`` (valid outputs from an
            earlier run with the same options).
        detail: the stage's one-line result (``""`` while running).
        seconds: wall time of the computation (of the earlier run when reused).
    """

    index: int
    total: int
    title: str
    state: Literal["running", "done", "reused"]
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class VolumeScore:
    """The lesion score of the demo's CT volume, over all slices and over the slices that show lungs.

    The synthetic volume's first and last slices have no lungs (apex and base: soft tissue where the lungs are
    elsewhere). The 2D network was trained on slices that all show lungs, so it marks much of that soft tissue as
    lesion: those false positives, not the lesion itself, pull the whole-volume IoU down.

    Attributes:
        iou: lesion IoU over the whole volume.
        iou_lung_slices: lesion IoU over the slices with aerated lung.
        slices: number of slices.
        lung_slices: slices with aerated lung.
        false_positives_outside: predicted lesion voxels on the slices without lungs.
    """

    iou: float
    iou_lung_slices: float
    slices: int
    lung_slices: int
    false_positives_outside: int


@dataclass
class DemoResult:
    """Where the demo put everything, and its headline numbers."""

    output_dir: Path
    datalist: Path
    stats_file: Path
    runs: dict[str, Any]
    prediction_dir: Path
    evaluation: dict[str, Any]
    volume_evaluation: dict[str, Any] = field(default_factory=dict)
    volume_score: VolumeScore | None = None
    stages: list[StageEvent] = field(default_factory=list)


def _prepare_real(real_data: Path, data_dir: Path) -> Path:
    from medseg.data.slices2d import convert_slices
    from medseg.data.split import split_datalist

    datalist = data_dir / "datalist.json"
    if not datalist.is_file():
        report = convert_slices(real_data / "imgs", real_data / "gt_binary", data_dir, mask_type="binary")
        if not report.ok:
            lines = report.failure_lines()
            raise ValueError(f"converting {real_data} failed for {len(lines)} slice(s): {lines[:1]}")
        split_datalist(datalist, by="case", counts=(30, 10, 10), seed=0)
    return datalist


# ---------------------------------------------------------------------------------------------------- stages
def _fingerprint(options: dict[str, Any]) -> str:
    text = json.dumps({"format": _FORMAT, **options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _Stages:
    """The record of ``OUTPUT/demo.json``: per stage its fingerprint, whether it finished, its result line."""

    def __init__(self, out: Path, total: int, on_stage: Callable[[StageEvent], None] | None) -> None:
        self.out = out
        self.path = out / _RECORD
        self.total = total
        self.on_stage = on_stage
        self.events: list[StageEvent] = []
        record = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.record: dict[str, Any] = record.get("stages", {}) if record.get("format") == _FORMAT else {}

    def _save(self) -> None:
        from medseg.io import write_json

        write_json(self.path, {"format": _FORMAT, "stages": self.record})

    def _emit(self, event: StageEvent) -> None:
        self.events.append(event)
        logger.info("demo stage %d/%d %s: %s %s", event.index, event.total, event.title, event.state, event.detail)
        if self.on_stage is not None:
            self.on_stage(event)

    def run(
        self,
        name: str,
        title: str,
        options: dict[str, Any],
        folders: Sequence[Path],
        compute: Callable[[], tuple[str, dict[str, Any]]],
        *,
        resumable: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """Reuse stage ``name`` when its fingerprint matches a finished run, else clear ``folders`` and compute.

        ``compute`` returns the stage's one-line result and the values later stages need (JSON-serialisable);
        both are recorded, so a reused stage reports the same. A ``resumable`` stage (training) keeps its folders
        when an earlier run with the same fingerprint was interrupted, so it continues from its checkpoint.

        Returns:
            ``(fingerprint, values)``.
        """
        index = len(self.events) + 1
        fingerprint = _fingerprint(options)
        previous = self.record.get(name, {})
        same = previous.get("fingerprint") == fingerprint
        if same and previous.get("complete") and all(f.exists() for f in folders):
            self._emit(StageEvent(index, self.total, title, "reused", previous["detail"], previous["seconds"]))
            return fingerprint, dict(previous["values"])
        if previous and not same:
            logger.info("demo stage %s: options changed, recomputing", name)
        if not (same and resumable):
            for folder in folders:
                if folder.is_dir():
                    shutil.rmtree(folder)
                elif folder.exists():
                    folder.unlink()
        self.record[name] = {"fingerprint": fingerprint, "options": options, "complete": False}
        self._save()
        if self.on_stage is not None:
            self.on_stage(StageEvent(index, self.total, title, "running"))
        start = time.perf_counter()
        detail, values = compute()
        seconds = round(time.perf_counter() - start, 1)
        self.record[name].update(complete=True, detail=detail, values=values, seconds=seconds)
        self._save()
        self._emit(StageEvent(index, self.total, title, "done", detail, seconds))
        return fingerprint, values


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {str(out)!r} is a file; give a folder for the demo's outputs")
    if out.is_dir() and not (out / _RECORD).is_file():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _ENTRIES)
        if foreign:
            raise FileExistsError(
                f"output folder {str(out)!r} holds files the demo did not write ({', '.join(foreign[:3])}); "
                "give a new or empty folder, or the folder of an earlier demo run"
            )


def _rel(path: Path, out: Path) -> str:
    try:
        return f"{path.relative_to(out)}{'/' if path.is_dir() else ''}"
    except ValueError:
        return str(path)


def _best(run_dir: Path, key: str = "val_miou") -> tuple[float, int, int]:
    """Best ``key`` in a run's ``history.csv``, its epoch, and the number of epochs."""
    from medseg.training.curves import read_history

    history = read_history(run_dir / "history.csv")
    values = np.asarray(history[key], dtype=np.float64)
    best = int(np.nanargmax(values))
    return float(values[best]), int(history["epoch"][best]), len(values)


# --------------------------------------------------------------------------------------------------- overlays
def _read(path: Path) -> np.ndarray:
    """The stored voxel values of an image file, in its voxel order."""
    from medseg.imageio import read_image

    return np.asarray(read_image(path).array)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The 1-pixel inner boundary of a 2D boolean mask."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _overlay_rgb(gray: np.ndarray, prediction: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``gray`` (display values 0-255) with the prediction filled and the reference outlined."""
    from medseg.inference.writers import overlay

    rgb = np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb = overlay(rgb, prediction.astype(np.int64), _PRED_RGB, 0.5)
    if reference is not None:
        rgb[_outline(reference > 0)] = _REF_RGB
    return rgb


def _enlarge(rgb: np.ndarray, min_side: int = _MIN_SIDE) -> np.ndarray:
    """Repeat pixels by the smallest integer factor that makes the shorter side at least ``min_side``."""
    factor = max(1, -(-min_side // min(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


def _display(image: np.ndarray) -> np.ndarray:
    """Display values 0-255: 8-bit slices as they are, anything else scaled by its range."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.min() >= 0 and arr.max() <= 255 and np.allclose(arr, np.rint(arr)):
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    return np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0


def write_slice_overlays(cases: Sequence[tuple[Path, Path, Path | None]]) -> list[Path]:
    """Write ``NAME_overlay.png`` next to each 2D mask ``NAME_seg.nii.gz``.

    The prediction is filled red at half opacity and the reference outlined green; images under 256 pixels a
    side are enlarged by an integer factor (nearest neighbour) so they can be looked at.

    Args:
        cases: ``(image, mask, reference or None)`` NIfTI paths of 2D slices stored ``(H, W)``.

    Returns:
        The PNG paths.
    """
    from medseg.imageio import write_png

    written = []
    for image_path, mask_path, ref_path in cases:
        image = np.squeeze(_read(image_path))
        mask = np.squeeze(_read(mask_path))
        ref = None if ref_path is None else np.squeeze(_read(ref_path))
        png = mask_path.with_name(mask_path.name.replace("_seg.nii.gz", "_overlay.png"))
        write_png(png, _enlarge(_overlay_rgb(_display(image), mask, ref)))
        written.append(png)
    return written


def write_volume_overlay(image_path: Path, mask_path: Path, ref_path: Path | None, png: Path) -> Path:
    """A montage of every axial slice of a CT volume (lung window) with the predicted mask and the reference.

    Each slice is drawn in voxel order (first axis down, second across), as the 2D slices are stored; the slices
    run left to right, then top to bottom, along the third axis.
    """
    from medseg.imageio import write_png
    from medseg.transforms.intensity import window_range

    lo, hi = window_range("lung")
    image = _read(image_path).astype(np.float64)
    mask = _read(mask_path)
    ref = None if ref_path is None else _read(ref_path)
    gray = (np.clip(image, lo, hi) - lo) / (hi - lo) * 255.0
    tiles = [
        _enlarge(
            _overlay_rgb(
                gray[:, :, k],
                mask[:, :, k],
                None if ref is None else ref[:, :, k],
            ),
            min_side=_MIN_SIDE // 2,
        )
        for k in range(image.shape[2])
    ]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    h, w = tiles[0].shape[:2]
    sheet = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 64, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = tile
    write_png(png, sheet)
    return png


def score_volume(image_path: Path, mask_path: Path, ref_path: Path) -> VolumeScore:
    """Lesion IoU over the whole volume and over the axial slices that show aerated lung (see :class:`VolumeScore`).

    A voxel is aerated lung when it is below -500 HU inside the body (the body is everything above -500 HU with
    its holes filled, so the air around the patient does not count).
    """
    from scipy import ndimage

    image = _read(image_path).astype(np.float64)
    pred = _read(mask_path) == 1
    ref = _read(ref_path) == 1
    lung = np.array(
        [
            bool((ndimage.binary_fill_holes(image[:, :, k] > _AIR_HU) & (image[:, :, k] <= _AIR_HU)).any())
            for k in range(image.shape[2])
        ]
    )

    def iou(p: np.ndarray, r: np.ndarray) -> float:
        union = int((p | r).sum())
        return float((p & r).sum()) / union if union else float("nan")

    return VolumeScore(
        iou=iou(pred, ref),
        iou_lung_slices=iou(pred[:, :, lung], ref[:, :, lung]),
        slices=int(image.shape[2]),
        lung_slices=int(lung.sum()),
        false_positives_outside=int((pred[:, :, ~lung] & ~ref[:, :, ~lung]).sum()),
    )


# --------------------------------------------------------------------------------------------------------- run
def run_demo(
    output_dir: PathLike = "demo_output",
    *,
    real_data: PathLike | None = None,
    size: int = 64,
    num_cases: int = 40,
    pretrain_epochs: int = 12,
    finetune_epochs: int = 6,
    progress: bool = False,
    on_stage: Callable[[StageEvent], None] | None = None,
) -> DemoResult:
    """Run the demo into ``output_dir``; stages whose options did not change since the last run are reused.

    Args:
        output_dir: everything goes here: ``data/``, ``runs/ce_pretrain``, ``runs/mc``, ``predictions/``,
            ``evaluation/``, ``volume/`` and the stage record ``demo.json``. A non-empty folder that holds
            anything else is refused.
        real_data: the shared COVID-19 slice folder for the real-data variant; ``None`` uses synthetic data.
        size: training/inference slice size in pixels (slices are resized to ``size`` x ``size``).
        num_cases: number of synthetic slices (split 60/20/20).
        pretrain_epochs: CE pre-training epochs.
        finetune_epochs: MC fine-tuning epochs.
        progress: progress bars for prediction and evaluation.
        on_stage: called when a stage starts and when it ends (see :class:`StageEvent`).

    Returns:
        A :class:`DemoResult`.

    Raises:
        ValueError: a size that is not a positive multiple of 16, or fewer than 3 cases.
        FileExistsError: ``output_dir`` holds files the demo did not write.
    """
    from medseg.data.plan import plan_datalist
    from medseg.data.statistics import compute_stats, write_stats
    from medseg.data.synthetic import make_ct_slices, make_ct_volume
    from medseg.evaluation.evaluate import EvaluationSettings, evaluate_folders
    from medseg.inference import predict_with_bundle
    from medseg.resources import bundle_dir
    from medseg.training.protocol import two_stage

    if size < 16 or size % 16:
        raise ValueError(f"size must be a positive multiple of 16 (COPLE-Net downsamples 4 times), got {size}")
    if real_data is None and num_cases < 3:
        raise ValueError(f"num_cases must be at least 3 (one per split), got {num_cases}")
    bundle = bundle_dir(BUNDLE_NAME)
    out = Path(output_dir).resolve()
    _check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out, total=3 if real_data is not None else 4, on_stage=on_stage)
    data_dir = out / "data"
    datalist = data_dir / "datalist.json"
    stats_file = data_dir / "stats.json"
    label_map = "binary"

    # 1. data and class statistics
    if real_data is not None:
        source = Path(real_data).resolve()
        data_options: dict[str, Any] = {"source": "real", "path": str(source)}
        data_title = f"data: real COVID-19 CT slices from {source}"
    else:
        data_options = {"source": "synthetic", "num_cases": num_cases, "size": size, "seed": 0}
        data_title = f"data: {num_cases} synthetic CT slices, {size}x{size}"

    def make_data() -> tuple[str, dict[str, Any]]:
        if real_data is not None:
            _prepare_real(Path(real_data), data_dir)
        else:
            make_ct_slices(data_dir, num_cases=num_cases, size=(size, size), seed=0)
        write_stats(stats_file, compute_stats(datalist, num_classes=2, label_map=label_map, progress=progress))
        plan_datalist(datalist, 2, data_dir / "plan.json", label_map=label_map, progress=progress)
        splits = json.loads(datalist.read_text(encoding="utf-8"))
        counts = {s: len(splits.get(s, [])) for s in ("training", "validation", "test")}
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        fraction = stats["class_counts"][1] / max(1, sum(stats["class_counts"]))
        detail = (
            f"{counts['training']} training / {counts['validation']} validation / {counts['test']} test, "
            f"lesion {100 * fraction:.1f}% of training pixels -> {_rel(data_dir, out)}"
        )
        return detail, counts

    data_fp, _ = stages.run("data", data_title, data_options, [data_dir], make_data)

    # 2. training: CE pre-training, then MC fine-tuning from it
    overrides = {
        "dataset_dir": str(data_dir),
        "datalist": str(datalist),
        "stats_file": str(stats_file),
        "spatial_size": [size, size],
        "network_def#features": SMALL_FEATURES,
        "label_map": label_map,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "seed": 0,
    }
    runs_dir = out / "runs"
    settings = {k: v for k, v in overrides.items() if k not in ("dataset_dir", "datalist", "stats_file")}
    pretrain_fp = _fingerprint({"data": data_fp, "epochs": pretrain_epochs, "overrides": settings})
    train_options = {"pretrain": pretrain_fp, "finetune_epochs": finetune_epochs, "loss": "mc"}
    # only the fine-tuning changed: keep the CE model (it takes most of the time)
    same_pretrain = stages.record.get("train", {}).get("options", {}).get("pretrain") == pretrain_fp

    def train() -> tuple[str, dict[str, Any]]:
        runs = two_stage(
            bundle,
            runs_dir,
            "mc",
            pretrain_epochs=pretrain_epochs,
            finetune_epochs=finetune_epochs,
            overrides=overrides,
        )
        ce, ce_epoch, _ = _best(Path(runs["pretrain"]["run_dir"]))
        mc, mc_epoch, _ = _best(Path(runs["finetune"]["run_dir"]))
        detail = (
            f"validation mIoU {ce:.3f} after CE (best epoch {ce_epoch}), {mc:.3f} after MC (best epoch {mc_epoch}) "
            f"-> {_rel(runs_dir, out)}"
        )
        return detail, runs

    model_fp, runs = stages.run(
        "train",
        f"training: CE {pretrain_epochs} epochs, then MC {finetune_epochs} epochs",
        train_options,
        [runs_dir / "mc"] if same_pretrain else [runs_dir],
        train,
        resumable=True,
    )
    model = Path(runs["finetune"]["model"])
    # The demo's model learned whole synthetic slices in the volume's own (RAS) orientation, windowed with the lung
    # window W1500/L-650, not the lung crops in radiological display (window W1475/L-450) that the shipped model
    # learned: the volume goes through as the demo's training slices were made.
    bundle_overrides = {
        "network_def#features": SMALL_FEATURES,
        "spatial_size": [size, size],
        "volume_window": "lung",
        "crop_lungs": False,
        "volume_orientation": "RAS",
        "tta": False,
    }

    # 3. test-slice masks with overlays, 4. their evaluation
    pred_dir = out / "predictions"
    ref_dir = out / "references"
    eval_dir = out / "evaluation"

    def predict_slices() -> tuple[str, dict[str, Any]]:
        test_items = json.loads(datalist.read_text(encoding="utf-8")).get("test", [])
        ref_dir.mkdir(parents=True, exist_ok=True)
        cases = []
        for item in test_items:
            image = (datalist.parent / item["image"]).resolve()
            label = (datalist.parent / item["label"]).resolve()
            shutil.copyfile(label, ref_dir / image.name)
            cases.append((image, ref_dir / image.name))
        report = predict_with_bundle(
            bundle,
            [c[0] for c in cases],
            pred_dir,
            ckpt=model,
            device="cpu",
            progress=progress,
            overrides=bundle_overrides,
        )
        if report.failed:
            raise RuntimeError(f"prediction failed for {len(report.failed)} case(s): {report.failed[0].error}")
        evaluation = evaluate_folders(
            pred_dir,
            ref_dir,
            EvaluationSettings(num_classes=2, pred_suffix="_seg", check_affine=False),
            out=eval_dir / "summary.json",
            progress=progress,
        )
        # after the evaluation, so the PNGs are not taken for predictions
        write_slice_overlays([(img, pred_dir / _seg_name(img), ref) for img, ref in cases])
        ds = evaluation["dataset"]
        detail = (
            f"{len(cases)} masks and overlay PNGs -> {_rel(pred_dir, out)}; mIoU {ds['pooled_iou']:.3f} "
            f"(pooled over the test slices, with background), lesion IoU {ds['per_class']['1']['iou']:.3f}, "
            f"lesion Dice "
            f"{ds['per_class']['1']['dice']:.3f} -> {_rel(eval_dir, out)}"
        )
        return detail, {"evaluation": evaluation}

    _, slice_values = stages.run(
        "test_slices",
        "test slices",
        {"model": model_fp, "size": size, "bundle": bundle_overrides},
        [pred_dir, ref_dir, eval_dir],
        predict_slices,
    )

    # 5. a CT volume in HU, in its own geometry (synthetic data only)
    volume_eval: dict[str, Any] = {}
    volume_score: VolumeScore | None = None
    if real_data is None:
        vol_dir = out / "volume"

        def predict_volume() -> tuple[str, dict[str, Any]]:
            vol = make_ct_volume(
                vol_dir / "input" / "ct_volume.nii.gz",
                shape=(size, size, 16),
                seed=1,
                label_path=vol_dir / "reference" / "ct_volume.nii.gz",
            )
            report = predict_with_bundle(
                bundle,
                [vol.image],
                vol_dir / "prediction",
                ckpt=model,
                device="cpu",
                progress=progress,
                overrides=bundle_overrides,
            )
            if report.failed:
                raise RuntimeError(f"volume prediction failed: {report.failed[0].error}")
            mask = vol_dir / "prediction" / _seg_name(vol.image)
            evaluation = evaluate_folders(
                vol_dir / "prediction",
                vol_dir / "reference",
                EvaluationSettings(num_classes=2, pred_suffix="_seg"),
                out=vol_dir / "evaluation.json",
                progress=progress,
            )
            png = write_volume_overlay(vol.image, mask, vol.label, mask.with_name("ct_volume_overlay.png"))
            score = score_volume(vol.image, mask, vol.label)
            detail = (
                f"lesion IoU {score.iou:.3f} over all {score.slices} slices, {score.iou_lung_slices:.3f} over the "
                f"{score.lung_slices} with lungs; mask in the input's geometry and overlay -> {_rel(png.parent, out)}"
            )
            return detail, {"evaluation": evaluation, "score": asdict(score)}

        _, volume_values = stages.run(
            "volume",
            f"CT volume {size}x{size}x16 (HU)",
            {"model": model_fp, "size": size, "bundle": bundle_overrides},
            [vol_dir],
            predict_volume,
        )
        volume_eval = volume_values["evaluation"]
        volume_score = VolumeScore(**volume_values["score"])

    return DemoResult(
        out,
        datalist,
        stats_file,
        runs,
        pred_dir,
        slice_values["evaluation"],
        volume_eval,
        volume_score,
        stages.events,
    )


def _seg_name(image: Path) -> str:
    """The mask name ``medseg predict`` gives an input: ``NAME_seg.nii.gz``."""
    name = image.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else image.stem
    return f"{stem}_seg.nii.gz"
