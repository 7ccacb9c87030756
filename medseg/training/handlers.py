"""Ignite handlers for bundle training: atomic checkpoints, resume after interruption, per-epoch history.

MONAI's ``CheckpointSaver`` writes with ignite's ``DiskSaver(atomic=False)`` and deletes the previous file before
writing the next, so a run killed while saving can lose its only checkpoint. :class:`AtomicCheckpointSaver`
writes every checkpoint to a temporary file and renames it into place, and writes ``model.pt`` as a
self-describing medseg checkpoint (:mod:`medseg.checkpoint`: the weights with the network's constructor
arguments, class names, trained input size, preprocessing, loss and plan). :class:`ResumeFromCheckpoint` reuses
MONAI's ``CheckpointLoader`` (which restores the trainer's epoch/iteration as well as the weights) but only when a
checkpoint exists, so the same command starts fresh or resumes.

``last.pt`` also holds the random states (PyTorch's, CUDA's, NumPy's, Python's ``random`` and those of the random
MONAI transforms of the training data), so a resumed run draws the same shuffles and augmentations as a run
that was never interrupted (:func:`random_states`, :func:`restore_random_states`). A ``last.pt`` that cannot be
used (truncated by a full disk, another run's) stops the run before it starts with one line that says what to do
(:class:`ResumeError`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
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
    "ResumeError",
    "ResumeFromCheckpoint",
    "load_pretrained",
    "random_states",
    "restore_random_states",
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


# --------------------------------------------------------------------------------------------- random states
#: Key of the random states in ``last.pt``.
RNG_KEY = "rng_state"
_MAX_WALK_DEPTH = 12


def _randomizables(roots: list[Any]) -> Iterator[Any]:
    """The MONAI ``Randomizable`` objects reachable from ``roots``, each random generator once, in a fixed order.

    The walk follows object attributes (sorted by name) and list/tuple items, as MONAI's ``set_rnd`` does when a
    ``DataLoader`` seeds its transforms, and goes on inside a ``Randomizable`` (a random ``OneOf`` holds random
    transforms of its own). Tensors, arrays and modules are not entered.
    """
    from monai.transforms.transform import Randomizable

    seen: set[int] = set()
    generators: set[int] = set()

    def walk(obj: Any, depth: int) -> Iterator[Any]:
        if depth > _MAX_WALK_DEPTH or id(obj) in seen:
            return
        if isinstance(obj, torch.Tensor | np.ndarray | torch.nn.Module | torch.optim.Optimizer | str | bytes):
            return
        seen.add(id(obj))
        if isinstance(obj, list | tuple):
            for item in obj:
                yield from walk(item, depth + 1)
            return
        attributes = getattr(obj, "__dict__", None)
        if not isinstance(attributes, dict):
            return
        if isinstance(obj, Randomizable) and id(obj.R) not in generators:
            generators.add(id(obj.R))
            yield obj
        for key in sorted(attributes):
            if not key.startswith("__"):
                yield from walk(attributes[key], depth + 1)

    for root in roots:
        yield from walk(root, 0)


def _data_sources(objects: Mapping[str, Any]) -> list[Any]:
    """The datasets of the engines among ``objects`` (a trainer's ``data_loader.dataset``): the random transforms."""
    sources = []
    for obj in objects.values():
        loader = getattr(obj, "data_loader", None)
        dataset = getattr(loader, "dataset", None)
        if dataset is not None:
            sources.append(dataset)
    return sources


def _numpy_state(state: tuple[Any, ...]) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_tuple(state: Mapping[str, Any]) -> tuple[Any, ...]:
    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    return (state["name"], keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"]))


def random_states(sources: list[Any] | None = None) -> dict[str, Any]:
    """Every random state a training run draws from, as tensors and plain data (for ``weights_only`` loading).

    Args:
        sources: objects holding random MONAI transforms (e.g. the training dataset); each transform's
            generator (``transform.R``) is recorded, in the order :func:`restore_random_states` finds them again.

    Returns:
        ``{"torch", "cuda", "numpy", "python", "transforms"}``.
    """
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": _numpy_state(np.random.get_state(legacy=True)),  # type: ignore[arg-type]  # the legacy tuple
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_next},
        "transforms": [_numpy_state(t.R.get_state()) for t in _randomizables(list(sources or []))],
    }


def restore_random_states(state: Mapping[str, Any], sources: list[Any] | None = None) -> None:
    """Set the random states recorded by :func:`random_states` (the random transforms found in ``sources``).

    Transforms are matched by position; when their number differs from the record (another pipeline), their
    states are left as they are, with a warning, and the global states are still restored.
    """
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(_numpy_tuple(state["numpy"]))
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    saved = list(state.get("transforms") or [])
    found = list(_randomizables(list(sources or [])))
    if len(saved) != len(found):
        logger.warning(
            "random states of %d transforms were saved but %d random transforms are in this run's pipeline; their "
            "random states start afresh",
            len(saved),
            len(found),
        )
        return
    for transform, record in zip(found, saved, strict=True):
        transform.R.set_state(_numpy_tuple(record))


class ResumeError(SystemExit):
    """A ``last.pt`` that cannot be resumed from: the run stops with this one line on stderr (exit status 1).

    A ``SystemExit`` on purpose: MONAI's config runner wraps every ``Exception`` raised while it evaluates an
    expression (``RuntimeError: Failed to evaluate ...``), and ignite and MONAI's handlers add their own
    tracebacks, so a plain error reached the user as three tracebacks; a ``SystemExit`` with a message passes
    them all and Python prints just the message.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class AtomicCheckpointSaver:
    """Save the last training state every epoch and the best network by a validation metric, atomically.

    Files in ``save_dir``: ``last.pt`` (every object of ``save_dict``: network, optimizer, scheduler, trainer —
    everything needed to resume — plus the metadata and the random states, see :func:`random_states`) and
    ``model.pt`` (a medseg checkpoint: the network weights with their metadata, written whenever ``key_metric``
    improves; without an evaluator, at every epoch).

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
        state[RNG_KEY] = random_states(_data_sources(self.save_dict))
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
    MONAI's ``CheckpointLoader``, then the random states the file records (:func:`restore_random_states`), so
    the rest of the run draws the same shuffles and augmentations as an uninterrupted one; does nothing when the
    file is absent, so one command both starts and resumes. The file is read and checked when the handler is
    attached (a bundle's ``initialize``), before any training: a truncated or damaged file, one without the
    objects to restore, or another run's stop the run with one line (:class:`ResumeError`).

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
        self._saved: Mapping[str, Any] | None = None

    def _advice(self) -> str:
        best = self.checkpoint.with_name(self.saver.best_filename if self.saver is not None else "model.pt")
        return (
            f"resume from the best weights with --resume False --pretrained_ckpt {best} (a new optimizer state), "
            "or start over with --resume False (overwriting the run's files)"
        )

    def read(self) -> Mapping[str, Any] | None:
        """The checked content of ``checkpoint``, or ``None`` when resuming is off or there is no file.

        Raises:
            ResumeError: the file cannot be read, lacks an object of ``load_dict``, or belongs to another run.
        """
        if not self.enabled or not self.checkpoint.is_file():
            return None
        if self._saved is not None:
            return self._saved
        try:
            saved = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:
            detail = " ".join(str(err).split())[:160]
            raise ResumeError(
                f"cannot resume: {self.checkpoint} is damaged (truncated, e.g. by a full disk, or not a checkpoint: "
                f"{type(err).__name__}: {detail}); {self._advice()}"
            ) from err
        if not isinstance(saved, Mapping):
            raise ResumeError(f"cannot resume: {self.checkpoint} is not a training state file; {self._advice()}")
        missing = [k for k in self.load_dict if k not in saved]
        if missing:
            raise ResumeError(
                f"cannot resume: {self.checkpoint} holds no {', '.join(repr(k) for k in missing)} state (it has "
                f"{', '.join(sorted(map(str, saved)))}); {self._advice()}"
            )
        if self.saver is not None and saved.get("tag", "") != self.saver.tag:
            raise ResumeError(
                f"cannot resume: {self.checkpoint} holds the state of another run (tag {saved.get('tag', '')!r}, "
                f"this run {self.saver.tag!r}); give this run its own ckpt_dir, or pass --resume False to start "
                "fresh (overwriting it)"
            )
        self._saved = saved
        return saved

    def attach(self, trainer: Engine) -> None:
        """Check ``checkpoint`` now (see :meth:`read`) and restore it when ``trainer`` starts."""
        self.read()
        trainer.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        saved = self.read()
        if saved is None:
            return
        from monai.handlers.checkpoint_loader import CheckpointLoader

        # map_location is passed on to torch.load, which takes a device string too
        loader = CheckpointLoader(
            load_path=str(self.checkpoint),
            load_dict=self.load_dict,
            map_location="cpu",  # type: ignore[arg-type]
        )
        loader(engine)
        if self.saver is not None:
            self.saver.restore_best(saved)
        if isinstance(saved.get(RNG_KEY), Mapping):
            restore_random_states(saved[RNG_KEY], _data_sources(self.load_dict))
        else:
            logger.warning(
                "%s records no random states (an older file): shuffles and augmentations start afresh", self.checkpoint
            )
        self._saved = None  # the states are in the objects now; do not keep a second copy
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
    ``curves.png`` (loss and mIoU per epoch, the generalisation-gap view of Li, Yu and Zhang, arXiv:2011.01462,
    Fig. 2) is drawn when training completes, or on demand with :func:`medseg.training.curves.plot_curves`.

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
    validated = CheckpointMetadata.from_dict(data, source="AtomicCheckpointSaver metadata").portable().to_dict()
    return {k: v for k, v in validated.items() if k in data or (k == "extra" and v)}


def _current_lr(engine: Engine) -> float:
    optimizer = getattr(engine, "optimizer", None)
    if optimizer is None:
        return math.nan
    return float(optimizer.param_groups[0]["lr"])
