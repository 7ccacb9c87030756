"""Training curves: loss and mIoU per epoch from a ``history.csv`` (Li, Yu and Zhang, arXiv:2011.01462, Fig. 2)."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from medseg.io import atomic_path
from medseg.typing import PathLike

__all__ = ["plot_curves", "read_history"]

logger = logging.getLogger(__name__)


def read_history(csv_path: PathLike) -> dict[str, list[float]]:
    """Read a ``history.csv`` into column -> values (``nan`` where a row lacks the column)."""
    with Path(csv_path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"history file {str(csv_path)!r} has no rows")
    columns = list(rows[0].keys())
    return {c: [float(r[c]) if r.get(c) not in ("", None) else float("nan") for r in rows] for c in columns}


def plot_curves(
    history: PathLike | Sequence[PathLike],
    out_png: PathLike,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw training/validation loss and validation mIoU per epoch for one run or several (e.g. CE vs MC).

    Args:
        history: one ``history.csv`` or several to overlay.
        out_png: output PNG (written atomically).
        labels: legend names, one per history (default: the parent folder names).
        title: figure title.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [Path(history)] if isinstance(history, str | os.PathLike) else [Path(h) for h in history]
    names = list(labels) if labels is not None else [p.parent.name or p.stem for p in paths]
    if len(names) != len(paths):
        raise ValueError(f"labels has {len(names)} entries but {len(paths)} histories were given")
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4))
    for path, name in zip(paths, names, strict=True):
        h = read_history(path)
        epochs = h["epoch"]
        color = ax_loss._get_lines.get_next_color()
        if "train_loss" in h:
            ax_loss.plot(epochs, h["train_loss"], "-", color=color, label=f"{name} train")
        if "val_loss" in h:
            ax_loss.plot(epochs, h["val_loss"], "--", color=color, label=f"{name} validation")
        for key, style in (("train_miou", "-"), ("val_miou", "--")):
            if key in h:
                ax_iou.plot(epochs, h[key], style, color=color, label=f"{name} {key.split('_')[0]}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_iou.set(xlabel="epoch", ylabel="mIoU", title="mIoU (dataset level)")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
