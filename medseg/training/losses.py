"""Build a registered loss for a bundle, reading the MC class statistics from ``stats.json`` when needed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.typing import PathLike

__all__ = ["MC_FAMILY", "build_loss", "load_class_stats"]

logger = logging.getLogger(__name__)

#: Losses whose margins come from class pixel counts (000_a804d1cf9d18ff52.txt, Algorithm 1).
MC_FAMILY = ("mc", "dice_mc", "tversky_mc")


def load_class_stats(stats_file: PathLike | None, num_classes: int) -> dict[str, Any]:
    """Read and validate a ``stats.json`` written by ``medseg-data stats``.

    Args:
        stats_file: path of the ``stats.json``.
        num_classes: number of classes the network predicts; must equal the file's ``num_classes``.

    Returns:
        The parsed statistics (DESIGN.md keys).

    Raises:
        FileNotFoundError: when the file does not exist; the message says which command writes it.
        ValueError: when it is malformed or its class count does not match ``num_classes``.
    """
    if stats_file is None or not Path(stats_file).is_file():
        raise FileNotFoundError(
            f"class statistics file {str(stats_file)!r} not found; margin calibration needs the class pixel counts "
            f"of the training split: run `medseg-data stats DATALIST --num-classes {num_classes} --out STATS_JSON` "
            "and pass its path as --stats_file"
        )
    try:
        stats = json.loads(Path(stats_file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"stats_file {str(stats_file)!r} is not valid JSON: {err}; rerun `medseg-data stats`") from err
    counts = stats.get("class_counts") if isinstance(stats, dict) else None
    if not isinstance(counts, list):
        raise ValueError(f"stats_file {str(stats_file)!r} has no 'class_counts' list; rerun `medseg-data stats`")
    if len(counts) != num_classes or stats.get("num_classes", len(counts)) != num_classes:
        raise ValueError(
            f"stats_file {str(stats_file)!r} holds counts for {len(counts)} classes but the network predicts "
            f"num_classes={num_classes}; rerun `medseg-data stats DATALIST --num-classes {num_classes}` with the "
            "same label mapping as this training, or fix num_classes"
        )
    return dict(stats)


def build_loss(
    name: str,
    *,
    num_classes: int,
    stats_file: PathLike | None = None,
    tau: float | None = None,
    v: float | None = None,
    **kwargs: Any,
) -> Any:
    """Create the registered loss ``name`` for a ``num_classes``-class network.

    For the MC family (``mc``, ``dice_mc``, ``tversky_mc``) the class counts are read from ``stats_file`` and the
    margin offsets are recomputed with ``tau``/``v`` (default: the values stored in the file, else 10 and 1).

    Args:
        name: a name from ``medseg.losses.LOSSES.names()``.
        num_classes: classes the network predicts.
        stats_file: ``stats.json`` of the training split; required for the MC family, ignored (with a log line)
            otherwise.
        tau: MC's τ; ``None`` keeps the file's value.
        v: MC's v; ``None`` keeps the file's value.
        **kwargs: passed to the loss constructor.

    Raises:
        FileNotFoundError / ValueError: see :func:`load_class_stats`; KeyError for an unknown loss name.
    """
    from medseg.losses import LOSSES

    factory = LOSSES.get(name)
    if name in MC_FAMILY:
        stats = load_class_stats(stats_file, num_classes)
        counts = np.asarray(stats["class_counts"], dtype=np.float64)
        kwargs.setdefault("tau", float(stats.get("tau", 10.0)) if tau is None else float(tau))
        kwargs.setdefault("v", float(stats.get("v", 1.0)) if v is None else float(v))
        return factory(class_counts=counts.tolist(), **kwargs)
    if tau is not None or v is not None:
        raise ValueError(f"tau/v apply only to the margin-calibration losses {MC_FAMILY}, not to loss {name!r}")
    if stats_file is not None:
        logger.debug("loss %r does not use class statistics; stats_file %s not read", name, stats_file)
    return factory(**kwargs)
