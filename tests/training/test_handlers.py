"""Atomic checkpoints, resume after interruption, pretrained weights and the per-epoch history."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events

from medseg.checkpoint import FORMAT, METADATA_KEY, load_checkpoint, load_model
from medseg.networks import CopleNet
from medseg.training import AtomicCheckpointSaver, HistoryRecorder, ResumeFromCheckpoint, load_pretrained
from medseg.training.handlers import RNG_KEY, ResumeError


def _trainer(net: torch.nn.Module, opt: torch.optim.Optimizer, losses: list[float] | None = None) -> Engine:
    """An ignite trainer with one SGD step per item; its output mimics MONAI's ``{"loss": ...}``."""

    def step(engine: Engine, batch: torch.Tensor) -> dict[str, Any]:
        opt.zero_grad()
        loss = (net(batch) ** 2).mean()
        loss.backward()
        opt.step()
        if losses is not None:
            losses.append(float(loss.detach()))
        return {"loss": loss.detach()}

    engine = Engine(step)
    engine.optimizer = opt  # type: ignore[attr-defined]
    return engine


def _evaluator(scores: list[float]) -> Engine:
    """An evaluator whose ``val_miou`` is the next value of ``scores`` at each run."""
    evaluator = Engine(lambda engine, batch: None)

    @evaluator.on(Events.COMPLETED)
    def _score(engine: Engine) -> None:
        engine.state.metrics["val_miou"] = scores.pop(0)

    return evaluator


def _setup(
    tmp_path: Path, tag: str = "ce", losses: list[float] | None = None
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Engine, AtomicCheckpointSaver]:
    """Network, optimizer, trainer and a saver over all three, as a bundle builds them."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    trainer = _trainer(net, opt, losses)
    saver = AtomicCheckpointSaver(tmp_path, {"network": net, "optimizer": opt, "trainer": trainer}, tag=tag)
    return net, opt, trainer, saver


DATA = [torch.ones(1, 3), 2 * torch.ones(1, 3)]


def test_saver_writes_last_every_epoch_and_best_on_improvement(tmp_path: Path) -> None:
    net, _, trainer, saver = _setup(tmp_path)
    evaluator = _evaluator([0.2, 0.5, 0.4])
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    best_weights: dict[int, dict[str, torch.Tensor]] = {}
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: best_weights.__setitem__(e.state.epoch, {k: v.clone() for k, v in net.state_dict().items()}),
    )
    saver.attach(trainer, evaluator)
    trainer.run(DATA, max_epochs=3)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["tag"] == "ce"
    assert float(last["best_metric"]) == pytest.approx(0.5)
    assert int(last["best_epoch"]) == 2
    assert set(last) >= {"network", "optimizer", "trainer"}
    # model.pt holds the weights validated at epoch 2 (score 0.5), not the last ones (0.4)
    best = load_checkpoint(tmp_path / "model.pt")
    assert best.kind == "medseg"
    for key, value in best.state_dict.items():
        torch.testing.assert_close(value, best_weights[2][key])
    assert best.metadata is not None
    assert best.metadata.training == {
        "epoch": 2,
        "key_metric": "val_miou",
        "tag": "ce",
        "best_metric": 0.5,
        "best_epoch": 2,
    }
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_saver_requires_the_network_entry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must contain the network under 'network'"):
        AtomicCheckpointSaver(tmp_path, {"model": torch.nn.Linear(1, 1)})


def test_resume_restores_optimizer_epoch_and_best(tmp_path: Path) -> None:
    _, _, trainer, saver = _setup(tmp_path)
    evaluator = _evaluator([0.3])
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    saver.attach(trainer, evaluator)
    trainer.run(DATA, max_epochs=1)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)

    _, opt2, trainer2, saver2 = _setup(tmp_path)  # fresh objects, as a restarted process builds them
    resume = ResumeFromCheckpoint(tmp_path / "last.pt", saver2.save_dict, saver2)
    seen: dict[str, Any] = {}
    resume.attach(trainer2)
    trainer2.add_event_handler(
        Events.STARTED, lambda e: seen.update(epoch=e.state.epoch, state=copy.deepcopy(opt2.state_dict()))
    )
    trainer2.run(DATA, max_epochs=2)
    assert seen["epoch"] == 1
    for key, state in saved["optimizer"]["state"].items():
        torch.testing.assert_close(seen["state"]["state"][key]["exp_avg"], state["exp_avg"])
    assert saver2.best_metric == pytest.approx(0.3)


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    _, _, trainer, saver = _setup(tmp_path)
    ResumeFromCheckpoint(tmp_path / "last.pt", saver.save_dict).attach(trainer)
    epochs: list[int] = []
    trainer.add_event_handler(Events.STARTED, lambda e: epochs.append(e.state.epoch))
    trainer.run(DATA, max_epochs=1)
    assert epochs == [0]


def test_resume_refuses_another_runs_checkpoint(tmp_path: Path) -> None:
    _, _, trainer, saver = _setup(tmp_path, tag="ce")
    saver.attach(trainer)
    trainer.run(DATA, max_epochs=1)
    _, _, trainer2, saver2 = _setup(tmp_path, tag="mc")
    # refused when attached (a bundle's initialize), before training starts: one line, no traceback
    with pytest.raises(ResumeError, match=r"another run \(tag 'ce', this run 'mc'\)"):
        ResumeFromCheckpoint(tmp_path / "last.pt", saver2.save_dict, saver2).attach(trainer2)
    # disabled resume starts over instead
    _, _, trainer3, saver3 = _setup(tmp_path, tag="mc")
    # "false" is what `--resume false` on a monai.bundle command line delivers
    ResumeFromCheckpoint(tmp_path / "last.pt", saver3.save_dict, saver3, enabled="false").attach(trainer3)
    epochs: list[int] = []
    trainer3.add_event_handler(Events.STARTED, lambda e: epochs.append(e.state.epoch))
    trainer3.run(DATA, max_epochs=1)
    assert epochs == [0]
    with pytest.raises(ValueError, match="resume must be true or false, got 'maybe'"):
        ResumeFromCheckpoint(tmp_path / "last.pt", saver3.save_dict, enabled="maybe")


def test_load_pretrained_accepts_model_and_last_files(tmp_path: Path) -> None:
    source = torch.nn.Linear(3, 2)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    torch.save({"network": source.state_dict(), "tag": "ce"}, tmp_path / "last.pt")
    for name in ("model.pt", "last.pt"):
        target = torch.nn.Linear(3, 2)
        load_pretrained(target, tmp_path / name)
        torch.testing.assert_close(target.weight, source.weight)
    untouched = torch.nn.Linear(3, 2)
    before = untouched.weight.clone()
    assert load_pretrained(untouched, None) is untouched
    torch.testing.assert_close(untouched.weight, before)


def test_load_pretrained_accepts_a_medseg_checkpoint(tmp_path: Path) -> None:
    _, _, trainer, saver = _setup(tmp_path)
    saver.attach(trainer)
    trainer.run(DATA, max_epochs=1)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["format"] == FORMAT
    target = torch.nn.Linear(3, 2)
    load_pretrained(target, tmp_path / "model.pt")
    torch.testing.assert_close(target.weight, saver.save_dict["network"].weight)


def _image_trainer(net: torch.nn.Module, opt: torch.optim.Optimizer) -> Engine:
    """A trainer over MONAI-style batches ``{"image": (B, C, H, W), "label": ...}`` with a loss_function."""
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(engine: Engine, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        opt.zero_grad()
        loss = loss_fn(net(batch["image"]), batch["label"])
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    engine = Engine(step)
    engine.loss_function = loss_fn  # type: ignore[attr-defined]  # as MONAI's SupervisedTrainer has
    return engine


def _image_batches(size: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        {"image": torch.rand(2, 1, *size, generator=gen), "label": torch.randint(0, 2, (2, *size), generator=gen)}
        for _ in range(2)
    ]


def test_model_pt_describes_the_network_classes_input_size_and_preprocessing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    # non-default widths and GroupNorm groups: what the bundle's network_def default would NOT rebuild
    net = CopleNet(2, 1, 2, features=[8, 16, 32, 64, 128], norm=["group", {"num_groups": 2}])
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    trainer = _image_trainer(net, opt)
    plan = {"normalization": {"mean": -600.0, "std": 400.0}, "datalist": str(tmp_path / "site" / "datalist.json")}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    configured = {
        "bundle": "covid19_ct_lesion",
        "classes": ["background", "infection"],
        "roi_size": [256, 256],  # what the config says; the batches below are 32 x 32
        "preprocessing": {"window": None, "intensity_range": [0, 255], "label_map": "binary"},
        "loss": {"name": "ce"},
        "plan": str(tmp_path / "plan.json"),
    }
    saver = AtomicCheckpointSaver(tmp_path, {"network": net}, tag="ce", metadata=configured)
    saver.attach(trainer)
    trainer.run(_image_batches((32, 32)), max_epochs=1)

    loaded = load_model(tmp_path / "model.pt")  # rebuilt from the file alone, no network given
    assert loaded.rebuilt
    meta = loaded.metadata
    assert meta is not None
    assert meta.network == {
        "_target_": "medseg.networks.CopleNet",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 2,
        "features": [8, 16, 32, 64, 128],
        "dropout": [0.0, 0.0, 0.3, 0.4, 0.5],
        "norm": ["group", {"num_groups": 2}],
        "act": ["leakyrelu", {"negative_slope": 0.01}],
        "upsample": "bilinear",
        "pad_to_multiple": False,
    }
    assert meta.roi_size == [32, 32]  # observed, not the configured 256 x 256
    assert meta.classes == ["background", "infection"]
    assert meta.preprocessing == configured["preprocessing"]
    assert meta.loss == {"name": "ce", "_target_": "torch.nn.modules.CrossEntropyLoss"}
    # the plan as written, without this machine's path to the datalist
    assert meta.plan == {"normalization": {"mean": -600.0, "std": 400.0}, "datalist": "datalist.json"}
    assert (meta.bundle, meta.in_channels, meta.out_channels, meta.spatial_dims) == ("covid19_ct_lesion", 1, 2, 2)
    net.eval()
    x = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x))
    # last.pt carries the same metadata and stays a resume file
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"network", "best_metric", "tag", METADATA_KEY} <= set(last)
    resume = load_checkpoint(tmp_path / "last.pt")
    assert resume.kind == "resume"
    assert resume.metadata is not None
    assert resume.metadata.network == meta.network


def test_saver_validates_configured_metadata(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="classes must be a list of class names"):
        AtomicCheckpointSaver(tmp_path, {"network": net}, metadata={"classes": "background,infection"})
    with pytest.raises(FileNotFoundError, match=r"give the plan\.json used"):
        AtomicCheckpointSaver(tmp_path, {"network": net}, metadata={"plan": str(tmp_path / "missing.json")})
    with pytest.raises(TypeError, match="cannot be stored"):
        AtomicCheckpointSaver(tmp_path, {"network": net}, metadata={"extra": {"when": object()}})


def test_load_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pass the model\.pt of a finished CE pre-training run"):
        load_pretrained(torch.nn.Linear(3, 2), tmp_path / "missing.pt")
    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="does not fit the network"):
        load_pretrained(torch.nn.Linear(3, 2), tmp_path / "model.pt")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_history_records_mean_training_loss_validation_and_curves(tmp_path: Path) -> None:
    losses: list[float] = []
    _, _, trainer, _ = _setup(tmp_path, losses=losses)
    evaluator = _evaluator([0.25, 0.75])
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    history = HistoryRecorder(tmp_path / "runs")
    history.attach(trainer, evaluator)
    trainer.run(DATA, max_epochs=2)
    rows = _rows(tmp_path / "runs" / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # train_loss is the mean of the epoch's iteration losses (two items per epoch)
    assert float(rows[0]["train_loss"]) == pytest.approx((losses[0] + losses[1]) / 2, rel=1e-5)
    assert float(rows[1]["train_loss"]) == pytest.approx((losses[2] + losses[3]) / 2, rel=1e-5)
    assert [float(r["val_miou"]) for r in rows] == [0.25, 0.75]
    assert float(rows[0]["lr"]) == pytest.approx(0.1)
    assert (tmp_path / "runs" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_history_drops_rows_after_the_resumed_epoch(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "history.csv").write_text("epoch,train_loss\n1,0.5\n2,0.4\n3,0.3\n", encoding="utf-8")
    _, _, trainer, _ = _setup(tmp_path)
    history = HistoryRecorder(runs)

    @trainer.on(Events.STARTED)
    def _resumed(engine: Engine) -> None:  # as ResumeFromCheckpoint would leave it: epoch 1 done
        engine.state.epoch = 1
        engine.state.iteration = len(DATA)

    history.attach(trainer)
    trainer.run(DATA, max_epochs=2)
    rows = _rows(runs / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["train_loss"] == "0.5"  # kept
    assert rows[1]["train_loss"] != "0.4"  # recomputed


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "no trainer state"])
def test_a_damaged_last_pt_stops_before_training_with_one_line(tmp_path: Path, damage: str) -> None:
    _, _, trainer, saver = _setup(tmp_path)
    saver.attach(trainer)
    trainer.run(DATA, max_epochs=1)
    last = tmp_path / "last.pt"
    content = last.read_bytes()
    if damage == "truncated":  # what a full disk or a kill during a non-atomic copy leaves
        last.write_bytes(content[: len(content) // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "garbage":
        last.write_bytes(b"not a checkpoint at all")
    else:
        state = torch.load(last, weights_only=True)
        del state["trainer"]
        torch.save(state, last)
    _, _, trainer2, saver2 = _setup(tmp_path)
    started: list[int] = []
    trainer2.add_event_handler(Events.STARTED, lambda e: started.append(1))
    with pytest.raises(ResumeError) as info:
        ResumeFromCheckpoint(last, saver2.save_dict, saver2).attach(trainer2)
    message = str(info.value)
    assert isinstance(info.value, SystemExit)  # Python prints the message alone, as one line, and exits
    assert info.value.code == message
    assert "\n" not in message
    assert str(last) in message
    assert f"--pretrained_ckpt {tmp_path / 'model.pt'}" in message  # resume from the best weights ...
    assert "start over with --resume False" in message  # ... or start over
    assert not started


def _noisy_loader(seed: int) -> Any:
    """6 vectors, shuffled, each with fresh Gaussian noise from a random MONAI transform at every draw."""
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandGaussianNoise

    data = [torch.full((1, 4), float(i)) for i in range(6)]
    transform = Compose([RandGaussianNoise(prob=1.0, std=0.5)])
    return DataLoader(Dataset(data, transform=transform), batch_size=2, shuffle=True, num_workers=0)


def _noisy_run(folder: Path, epochs: int, resume: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    """A fresh "process": seeds set as a bundle's ``initialize`` does, objects built, optionally resumed."""
    from monai.utils import set_determinism

    set_determinism(seed=0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    losses: list[float] = []
    trainer = _trainer(net, opt, losses)
    loader = _noisy_loader(0)
    trainer.data_loader = loader  # type: ignore[attr-defined]  # as MONAI's SupervisedTrainer holds it
    saver = AtomicCheckpointSaver(folder, {"network": net, "optimizer": opt, "trainer": trainer})
    if resume:
        ResumeFromCheckpoint(folder / "last.pt", saver.save_dict, saver).attach(trainer)
    saver.attach(trainer)
    trainer.run(loader, max_epochs=epochs)
    set_determinism(seed=None)
    return losses, {k: v.clone() for k, v in net.state_dict().items()}


def test_a_resumed_run_continues_the_same_random_sequence(tmp_path: Path) -> None:
    """2 epochs straight == 1 epoch, then a new process resuming for the 2nd (shuffles, transform noise)."""
    straight, straight_weights = _noisy_run(tmp_path / "straight", 2, resume=False)
    first, _ = _noisy_run(tmp_path / "split", 1, resume=False)
    second, split_weights = _noisy_run(tmp_path / "split", 2, resume=True)
    assert (len(straight), len(first), len(second)) == (6, 3, 3)
    assert first + second == straight  # the very same losses, batch by batch
    for key, value in straight_weights.items():
        torch.testing.assert_close(split_weights[key], value, rtol=0, atol=0)
    saved = torch.load(tmp_path / "split" / "last.pt", weights_only=True)[RNG_KEY]
    assert len(saved["transforms"]) == 2  # the Compose (MONAI makes it Randomizable) and its noise transform

    # without the random states (what last.pt held before), the resumed epoch draws other noise and order
    last = tmp_path / "split" / "last.pt"
    _noisy_run(tmp_path / "split", 1, resume=False)  # rewrite last.pt after epoch 1 ...
    state = torch.load(last, weights_only=True)
    del state[RNG_KEY]  # ... without its random states
    torch.save(state, last)
    without, _ = _noisy_run(tmp_path / "split", 2, resume=True)
    assert without != second
