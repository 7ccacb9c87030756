"""Ignite handlers for bundle training: atomic checkpoints, resume after interruption, per-epoch history.

MONAI's ``CheckpointSaver`` writes with ignite's ``DiskSaver(atomic=False)`` and deletes the previous file before
writing the next, so a run killed while saving can lose its only checkpoint. :class:`AtomicCheckpointSaver`
writes every checkpoint to a temporary file and renames it into place, and writes ``model.pt`` as a
self-describing medseg checkpoint (:mod:`medseg.checkpoint`: the weights with the network's constructor
arguments, class names, trained input size, preprocessing, loss and plan). :class:`ResumeFromCheckpoint` reuses
MONAI's ``CheckpointLoader`` (which restores the trainer's epoch/iteration as well as the weights) but only when a
checkpoint exists, so the same command starts fresh or resumes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from medseg.checkpoint import (
    METADATA_KEY,
    CheckpointMetadata,
    checkpoint_payload,
    class_path,
    load_checkpoint,
    network_spec,
)
from medseg.io import atomic_path, write_text
from medseg.typing import PathLike

__all__ = [
    "AtomicCheckpointSaver",
    "HistoryRecorder",
    "ResumeFromCheckpoint",
    "load_pretrained",
]

logger = logging.getLogger(__name__)


def _state_dicts(objects: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, obj in objects.items():
        if obj is None:
            continue
        module = getattr(obj, "module", obj) if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj
        out[key] = module.state_dict()
    return out


def _as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; also the strings a command line gives (``--resume false`` arrives as ``"false"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r} ({type(value).__name__}); pass --{name} False")


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class AtomicCheckpointSaver:
    """Save the last training state every epoch and the best network by a validation metric, atomically.

    Files in ``save_dir``: ``last.pt`` (every object of ``save_dict``: network, optimizer, scheduler, trainer —
    everything needed to resume — plus the metadata) and ``model.pt`` (a medseg checkpoint: the network weights
    with their metadata, written whenever ``key_metric`` improves; without an evaluator, at every epoch).

    The metadata combines what the config states (``metadata``) with what the run shows: the network's
    constructor arguments (:func:`medseg.checkpoint.network_spec`), the spatial size of the training batches
    (``roi_size``; it wins over a configured one, with a warning when they differ), the loss class, and the
    epoch, key metric and tag of the saved weights.

    Args:
        save_dir: output folder.
        save_dict: name -> object with ``state_dict()``; must contain ``network_key``.
        network_key: which entry is the network.
        key_metric: evaluator metric that selects the best model (higher is better).
        best_filename: name of the best-model file.
        last_filename: name of the resume file.
        tag: identifies the run (e.g. the loss name); stored in ``last.pt`` so that a resume never continues
            another run's state from the same folder.
        metadata: fields of :class:`~medseg.checkpoint.CheckpointMetadata` the config knows: ``bundle``,
            ``classes``, ``roi_size``, ``preprocessing``, ``loss``, ``plan`` (a dict, or the path of a
            ``plan.json`` whose content is stored), ``network`` (to override the recorded arguments), ``extra``.

    Raises:
        ValueError, TypeError: ``save_dict`` without the network, or metadata that is not valid JSON data.
    """

    def __init__(
        self,
        save_dir: PathLike,
        save_dict: Mapping[str, Any],
        *,
        network_key: str = "network",
        key_metric: str = "val_miou",
        best_filename: str = "model.pt",
        last_filename: str = "last.pt",
        tag: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if network_key not in save_dict:
            raise ValueError(f"save_dict must contain the network under {network_key!r}; got keys {list(save_dict)}")
        self.metadata = _configured_metadata(metadata)
        self._spec: dict[str, Any] | None = None
        self._spec_done = False
        self._observed_size: list[int] | None = None
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.network_key = network_key
        self.key_metric = key_metric
        self.best_filename = best_filename
        self.last_filename = last_filename
        self.tag = str(tag)
        self.best_metric = -math.inf
        self.best_epoch = 0
        self._trainer: Engine | None = None

    @property
    def last_path(self) -> Path:
        return self.save_dir / self.last_filename

    @property
    def best_path(self) -> Path:
        return self.save_dir / self.best_filename

    def _save(self, obj: Any, path: Path) -> None:
        if not _is_main_process():
            return
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)

    def attach(self, trainer: Engine, evaluator: Engine | None = None) -> None:
        """Save ``last.pt`` after each training epoch; track ``key_metric`` on ``evaluator`` for ``model.pt``."""
        self._trainer = trainer
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._observe_batch)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._save_last)
        if evaluator is None:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._save_best_unconditionally)
        else:
            evaluator.add_event_handler(Events.COMPLETED, self._maybe_save_best)

    def _observe_batch(self, engine: Engine) -> None:
        """Record the spatial size of the training inputs (once per run)."""
        if self._observed_size is not None:
            return
        batch = engine.state.batch
        image = batch.get("image") if isinstance(batch, Mapping) else batch
        if isinstance(image, list | tuple) and image:
            image = image[0]
        if isinstance(image, torch.Tensor) and image.ndim >= 4:
            self._observed_size = [int(s) for s in image.shape[2:]]
            configured = self.metadata.get("roi_size")
            if configured is not None and list(configured) != self._observed_size:
                logger.warning(
                    "training inputs are %s but the checkpoint metadata says roi_size %s; recording the observed size",
                    "x".join(map(str, self._observed_size)),
                    "x".join(map(str, configured)),
                )

    def checkpoint_metadata(self, epoch: int | None = None) -> CheckpointMetadata:
        """The metadata written with the weights now (see the class docstring)."""
        data = dict(self.metadata)
        if "network" not in data:
            if not self._spec_done:
                self._spec = network_spec(self.save_dict[self.network_key])
                self._spec_done = True
            if self._spec is not None:
                data["network"] = self._spec
        if self._observed_size is not None:
            data["roi_size"] = self._observed_size
        loss_fn = getattr(self._trainer, "loss_function", None)
        if loss_fn is not None:
            loss = dict(data.get("loss") or {})
            loss.setdefault("_target_", class_path(type(loss_fn)))
            data["loss"] = loss
        training = dict(data.get("training") or {})
        if epoch is None and self._trainer is not None:
            epoch = int(self._trainer.state.epoch)
        training.update({"epoch": epoch, "key_metric": self.key_metric, "tag": self.tag})
        if math.isfinite(self.best_metric):
            training.update({"best_metric": self.best_metric, "best_epoch": self.best_epoch})
        data["training"] = training
        return CheckpointMetadata.from_dict(data, source="AtomicCheckpointSaver metadata")

    def _network_state(self) -> dict[str, Any]:
        state: dict[str, Any] = _state_dicts({self.network_key: self.save_dict[self.network_key]})[self.network_key]
        return state

    def _save_model(self, epoch: int | None = None) -> None:
        if not _is_main_process():
            return
        self._save(checkpoint_payload(self._network_state(), self.checkpoint_metadata(epoch)), self.best_path)

    def _save_last(self, engine: Engine) -> None:
        state = _state_dicts(self.save_dict)
        state["best_metric"] = torch.tensor(self.best_metric, dtype=torch.float64)
        state["best_epoch"] = torch.tensor(self.best_epoch)
        state["tag"] = self.tag
        if _is_main_process():
            state[METADATA_KEY] = self.checkpoint_metadata(int(engine.state.epoch)).to_json()
        self._save(state, self.last_path)
        logger.info("epoch %d: saved %s", engine.state.epoch, self.last_path)

    def _save_best_unconditionally(self, engine: Engine) -> None:
        self._save_model(int(engine.state.epoch))

    def _maybe_save_best(self, evaluator: Engine) -> None:
        value = evaluator.state.metrics.get(self.key_metric)
        if value is None:
            raise KeyError(
                f"key_metric {self.key_metric!r} not among the evaluator's metrics {sorted(evaluator.state.metrics)}"
            )
        value = float(value)
        if value > self.best_metric:
            self.best_metric = value
            self.best_epoch = int(self._trainer.state.epoch) if self._trainer is not None else 0
            self._save_model(self.best_epoch)
            logger.info(
                "new best %s=%.4f at epoch %d: saved %s",
                self.key_metric,
                value,
                self.best_epoch,
                self.best_path,
            )

    def restore_best(self, state: Mapping[str, Any]) -> None:
        """Restore the best-metric bookkeeping from a loaded ``last.pt``."""
        if "best_metric" in state:
            self.best_metric = float(state["best_metric"])
            self.best_epoch = int(state.get("best_epoch", 0))


class ResumeFromCheckpoint:
    """Continue a killed run from ``checkpoint`` (the saver's ``last.pt``) when that file exists.

    Restores every object of ``load_dict`` (network, optimizer, scheduler, trainer epoch/iteration) through
    MONAI's ``CheckpointLoader``; does nothing when the file is absent, so one command both starts and resumes.

    Args:
        checkpoint: path of ``last.pt``.
        load_dict: name -> object, as given to :class:`AtomicCheckpointSaver`.
        saver: the saver, whose best-metric bookkeeping is restored too.
        enabled: ``False`` always starts fresh (the strings ``"true"``/``"false"`` of a command line are
            accepted).
    """

    def __init__(
        self,
        checkpoint: PathLike,
        load_dict: Mapping[str, Any],
        saver: AtomicCheckpointSaver | None = None,
        enabled: bool | str = True,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.load_dict = {k: v for k, v in load_dict.items() if v is not None}
        self.saver = saver
        self.enabled = _as_bool(enabled, "resume")

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled or not self.checkpoint.is_file():
            return
        from monai.handlers.checkpoint_loader import CheckpointLoader

        saved = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        if self.saver is not None and saved.get("tag", "") != self.saver.tag:
            raise ValueError(
                f"{self.checkpoint} holds the state of another run (tag {saved.get('tag', '')!r}, this run "
                f"{self.saver.tag!r}); give this run its own ckpt_dir, or pass --resume False to start fresh "
                "(overwriting it)"
            )

        # map_location is passed on to torch.load, which takes a device string too
        loader = CheckpointLoader(
            load_path=str(self.checkpoint),
            load_dict=self.load_dict,
            map_location="cpu",  # type: ignore[arg-type]
        )
        loader(engine)
        if self.saver is not None:
            self.saver.restore_best(saved)
        logger.warning("resumed from %s at epoch %d", self.checkpoint, engine.state.epoch)


def load_pretrained(network: torch.nn.Module, checkpoint: PathLike | None, strict: bool = True) -> torch.nn.Module:
    """Load network weights from ``checkpoint`` (the papers' CE pre-training stage), or do nothing for ``None``.

    Accepts a medseg checkpoint (``model.pt``), a resume file (``last.pt``, its ``network`` entry) or a bare
    state dict (older ``model.pt`` files).

    Raises:
        FileNotFoundError: when ``checkpoint`` does not exist.
        ValueError: when its weights do not fit ``network``.
    """
    if checkpoint in (None, "", "None"):
        return network
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained_ckpt {str(path)!r} not found; pass the model.pt of a finished CE pre-training run"
        )
    state = load_checkpoint(path).state_dict  # notes (one line) when the file has no metadata
    target = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
    try:
        target.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ValueError(
            f"pretrained_ckpt {str(path)!r} does not fit the network (different width or class count?): "
            f"{str(err).splitlines()[0]}"
        ) from err
    logger.info("loaded pretrained weights from %s", path)
    return network


class HistoryRecorder:
    """Record per-epoch training loss and validation metrics; write ``history.csv`` and ``curves.png``.

    The CSV is rewritten atomically after every epoch (one row per epoch: ``epoch``, ``train_loss`` and every
    validation metric), so it survives interruption; on resume, rows after the resumed epoch are dropped. Attach
    it to the trainer before :class:`AtomicCheckpointSaver`: an epoch's row is then complete on disk before the
    ``last.pt`` of that epoch exists, so a run killed in between loses no row it will not recompute.
    ``curves.png`` (loss and mIoU per epoch, the generalisation-gap view of 002_1f3568bddcc5ea2b.txt Fig. 2) is
    drawn when training completes, or on demand with :func:`medseg.training.curves.plot_curves`.

    Args:
        output_dir: folder for ``history.csv`` and ``curves.png``.
        loss_key: key of the trainer's per-iteration output that holds the loss.
    """

    def __init__(self, output_dir: PathLike, loss_key: str = "loss") -> None:
        self.output_dir = Path(output_dir)
        self.loss_key = loss_key
        self.rows: dict[int, dict[str, float]] = {}
        self._sum = 0.0
        self._count = 0
        self._trainer: Engine | None = None

    @property
    def csv_path(self) -> Path:
        return self.output_dir / "history.csv"

    @property
    def png_path(self) -> Path:
        return self.output_dir / "curves.png"

    def attach(self, trainer: Engine, evaluator: Engine | None = None) -> None:
        self._trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._load_existing)
        trainer.add_event_handler(Events.EPOCH_STARTED, self._reset)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_done)
        trainer.add_event_handler(Events.COMPLETED, self._completed)
        if evaluator is not None:
            evaluator.add_event_handler(Events.COMPLETED, self._validation_done)

    def _load_existing(self, engine: Engine) -> None:
        self.rows = {}
        if not self.csv_path.is_file():
            return
        with self.csv_path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                epoch = int(row.pop("epoch"))
                if epoch <= engine.state.epoch:
                    self.rows[epoch] = {k: float(v) for k, v in row.items() if v not in ("", None)}

    def _reset(self, engine: Engine) -> None:
        self._sum, self._count = 0.0, 0

    def _accumulate(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, list):  # decollated: the loss is replicated into every item
            output = output[0]
        loss = output.get(self.loss_key) if isinstance(output, Mapping) else output
        if loss is not None:
            self._sum += float(loss)
            self._count += 1

    def _row(self, epoch: int) -> dict[str, float]:
        return self.rows.setdefault(epoch, {})

    def _epoch_done(self, engine: Engine) -> None:
        if self._count:
            self._row(engine.state.epoch)["train_loss"] = self._sum / self._count
        self._row(engine.state.epoch)["lr"] = float(_current_lr(engine))
        self.write_csv()

    def _validation_done(self, evaluator: Engine) -> None:
        epoch = self._trainer.state.epoch if self._trainer is not None else evaluator.state.epoch
        row = self._row(epoch)
        for name, value in evaluator.state.metrics.items():
            if isinstance(value, int | float) or (isinstance(value, torch.Tensor) and value.numel() == 1):
                row[name] = float(value)
        self.write_csv()

    def _completed(self, engine: Engine) -> None:
        self.write_csv()
        if _is_main_process() and self.rows:
            from medseg.training.curves import plot_curves

            plot_curves(self.csv_path, self.png_path)

    def write_csv(self) -> None:
        if not _is_main_process() or not self.rows:
            return
        columns = sorted({k for row in self.rows.values() for k in row})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch", *columns])
        writer.writeheader()
        for epoch in sorted(self.rows):
            writer.writerow({"epoch": epoch, **{k: f"{v:.6g}" for k, v in self.rows[epoch].items()}})
        write_text(self.csv_path, buf.getvalue())


def _configured_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate the configured metadata now (a bad config fails before training); read a ``plan`` file."""
    data = dict(metadata or {})
    plan = data.get("plan")
    if isinstance(plan, str | Path):
        path = Path(plan)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint metadata plan {str(path)!r} not found; give the plan.json used")
        try:
            data["plan"] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"checkpoint metadata plan {path} is not valid JSON: {err}") from err
    validated = CheckpointMetadata.from_dict(data, source="AtomicCheckpointSaver metadata").to_dict()
    return {k: v for k, v in validated.items() if k in data or (k == "extra" and v)}


def _current_lr(engine: Engine) -> float:
    optimizer = getattr(engine, "optimizer", None)
    if optimizer is None:
        return math.nan
    return float(optimizer.param_groups[0]["lr"])
