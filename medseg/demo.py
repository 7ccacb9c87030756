"""The main job end to end on embedded sample data (``make demo`` / ``medseg demo``).

1. Generate synthetic CT slices with lesions (:mod:`medseg.data.synthetic`; no external data needed) and a
   synthetic CT volume in HU with a known lesion.
2. Count class pixels on the training split and write ``stats.json`` with the MC margin offsets.
3. Train the ``covid19_ct_lesion`` bundle with the papers' protocol: CE pre-training, then fine-tuning with
   margin calibration (``configs/losses/mc.json``), through ``monai.bundle run``.
4. Predict the held-back test slices and the volume with the bundle's ``inference.json`` (sliding window; the 2D
   network runs slice-wise on the volume) and write masks in each input's own geometry.
5. Evaluate the masks against the references (dataset-level mIoU, Dice, HD95).

With ``real_data`` pointing at ``../shared/data/covid19_ct_infection_medseg_infnet`` the same job runs on the real
COVID-19 slices (converted with ``medseg-data slices2d``) instead of the synthetic ones.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.typing import PathLike

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

BUNDLE_NAME = "covid19_ct_lesion"
SMALL_FEATURES = [16, 32, 64, 128, 256]


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


def run_demo(
    output_dir: PathLike = "demo_output",
    *,
    real_data: PathLike | None = None,
    size: int = 64,
    num_cases: int = 40,
    pretrain_epochs: int = 12,
    finetune_epochs: int = 6,
    progress: bool = False,
) -> DemoResult:
    """Run the demo into ``output_dir`` (finished stages are reused when run again).

    Args:
        output_dir: everything goes here: ``data/``, ``runs/ce_pretrain``, ``runs/mc``, ``predictions/``.
        real_data: the shared COVID-19 slice folder for the real-data variant; ``None`` uses synthetic data.
        size: training/inference slice size in pixels (slices are resized to ``size`` x ``size``).
        num_cases: number of synthetic slices (split 60/20/20).
        pretrain_epochs: CE pre-training epochs.
        finetune_epochs: MC fine-tuning epochs.
        progress: progress bars for prediction and evaluation.

    Returns:
        A :class:`DemoResult`.
    """
    from medseg.data.statistics import compute_stats, write_stats
    from medseg.data.synthetic import make_ct_slices, make_ct_volume
    from medseg.evaluation.evaluate import EvaluationSettings, evaluate_folders
    from medseg.inference import predict_with_bundle
    from medseg.resources import bundle_dir
    from medseg.training.protocol import two_stage

    bundle = bundle_dir(BUNDLE_NAME)

    if size % 16:
        raise ValueError(f"size must be a multiple of 16 (COPLE-Net downsamples 4 times), got {size}")
    out = Path(output_dir).resolve()
    data_dir = out / "data"
    if real_data is not None:
        datalist = _prepare_real(Path(real_data), data_dir)
        label_map = "binary"
    else:
        datalist = data_dir / "datalist.json"
        if not datalist.is_file():
            make_ct_slices(data_dir, num_cases=num_cases, size=(size, size), seed=0)
        label_map = "binary"
    stats_file = data_dir / "stats.json"
    if not stats_file.is_file():
        write_stats(stats_file, compute_stats(datalist, num_classes=2, label_map=label_map, progress=progress))
    logger.info("data ready: %s (stats %s)", datalist, stats_file)

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
    runs = two_stage(
        bundle,
        out / "runs",
        "mc",
        pretrain_epochs=pretrain_epochs,
        finetune_epochs=finetune_epochs,
        overrides=overrides,
    )
    model = Path(runs["finetune"]["model"])

    import json

    test_items = json.loads(datalist.read_text(encoding="utf-8")).get("test", [])
    ref_dir = out / "references"
    ref_dir.mkdir(parents=True, exist_ok=True)
    inputs = []
    for item in test_items:
        image = (datalist.parent / item["image"]).resolve()
        label = (datalist.parent / item["label"]).resolve()
        inputs.append(image)
        target = ref_dir / image.name
        if not target.exists():
            shutil.copyfile(label, target)
    pred_dir = out / "predictions"
    bundle_overrides = {
        "network_def#features": SMALL_FEATURES,
        "spatial_size": [size, size],
    }
    report = predict_with_bundle(
        bundle, inputs, pred_dir, ckpt=model, device="cpu", progress=progress, overrides=bundle_overrides
    )
    if report.failed:
        raise RuntimeError(f"prediction failed for {len(report.failed)} case(s): {report.failed[0].error}")
    evaluation = evaluate_folders(
        pred_dir,
        ref_dir,
        EvaluationSettings(num_classes=2, pred_suffix="_seg", check_affine=False),
        out=out / "evaluation" / "summary.json",
        progress=progress,
    )

    volume_eval: dict[str, Any] = {}
    if real_data is None:
        vol_dir = out / "volume"
        vol = make_ct_volume(
            vol_dir / "input" / "ct_volume.nii.gz",
            shape=(size, size, 16),
            seed=1,
            label_path=vol_dir / "reference" / "ct_volume.nii.gz",
        )
        vol_report = predict_with_bundle(
            bundle,
            [vol.image],
            vol_dir / "prediction",
            ckpt=model,
            device="cpu",
            progress=progress,
            overrides=bundle_overrides,
        )
        if vol_report.failed:
            raise RuntimeError(f"volume prediction failed: {vol_report.failed[0].error}")
        volume_eval = evaluate_folders(
            vol_dir / "prediction",
            vol_dir / "reference",
            EvaluationSettings(num_classes=2, pred_suffix="_seg"),
            out=vol_dir / "evaluation.json",
            progress=progress,
        )
    return DemoResult(out, datalist, stats_file, runs, pred_dir, evaluation, volume_eval)
