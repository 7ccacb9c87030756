"""Self-describing checkpoints: saving, loading every accepted kind of file, describing, comparing with a bundle."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from medseg.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointMetadata,
    build_network,
    bundle_settings,
    checkpoint_disagreements,
    describe_checkpoint,
    load_checkpoint,
    load_model,
    network_spec,
    save_checkpoint,
)
from medseg.networks import CopleNet

SMALL = [8, 16, 32, 64, 128]
META = {
    "bundle": "covid19_ct_lesion",
    "classes": ["background", "infection"],
    "roi_size": [128, 128],
    "preprocessing": {"window": None, "intensity_range": [0, 255]},
    "loss": {"name": "mc"},
}


def _net(out_channels: int = 2, **kwargs: Any) -> CopleNet:
    torch.manual_seed(0)
    return CopleNet(2, 1, out_channels, features=SMALL, **kwargs).eval()


def _same_outputs(a: nn.Module, b: nn.Module) -> None:
    x = torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_saved_checkpoint_rebuilds_the_network_from_its_own_metadata(tmp_path: Path) -> None:
    net = _net(norm=("group", {"num_groups": 2}))
    save_checkpoint(tmp_path / "model.pt", net, META)
    raw = torch.load(tmp_path / "model.pt", weights_only=True)  # plain data only
    assert raw["format"] == FORMAT
    assert raw["format_version"] == FORMAT_VERSION
    assert isinstance(raw[METADATA_KEY], str)
    loaded = load_model(tmp_path / "model.pt")
    assert (loaded.kind, loaded.rebuilt) == ("checkpoint", True)
    _same_outputs(loaded.model, net)
    meta = loaded.metadata
    assert meta is not None
    assert meta.classes == META["classes"]
    assert meta.roi_size == [128, 128]
    assert meta.network is not None
    assert meta.network["norm"] == ["group", {"num_groups": 2}]
    assert (meta.in_channels, meta.out_channels, meta.spatial_dims) == (1, 2, 2)
    assert meta.medseg_version == __import__("medseg").__version__
    assert meta.created is not None


def test_bare_state_dicts_still_load_with_a_one_line_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = _net()
    torch.save(net.state_dict(), tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING, logger="medseg.checkpoint"):
        loaded = load_checkpoint(tmp_path / "old.pt")
    assert (loaded.kind, loaded.metadata) == ("state_dict", None)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1
    assert "has no medseg metadata" in notes[0]
    assert "\n" not in notes[0]
    with pytest.raises(ValueError, match="records no network; give the network"):
        load_model(tmp_path / "old.pt")
    model = load_model(tmp_path / "old.pt", network=_net()).model
    _same_outputs(model, net)
    assert "without medseg metadata" in describe_checkpoint(tmp_path / "old.pt")


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"network": sd, "optimizer": {}, "tag": "ce"},  # a bundle's last.pt
        lambda sd: {"model": sd, "optimizer": {}},  # MONAI CheckpointSaver
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel prefixes
    ],
    ids=["resume", "monai-saver", "module-prefix"],
)
def test_other_weight_files_load(tmp_path: Path, wrap: Any) -> None:
    net = _net()
    torch.save(wrap(net.state_dict()), tmp_path / "w.pt")
    loaded = load_checkpoint(tmp_path / "w.pt", quiet=True)
    assert set(loaded.state_dict) == set(net.state_dict())


def test_the_predictor_loader_reads_the_new_format(tmp_path: Path) -> None:
    """``medseg.inference.load_weights`` (what predict uses today) finds the weights under 'state_dict'."""
    from medseg.inference.predictor import load_weights

    net = _net()
    save_checkpoint(tmp_path / "model.pt", net, META)
    _same_outputs(load_weights(_net(), tmp_path / "model.pt"), net)


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


def test_nothing_but_weights_is_unpickled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"state_dict": _net().state_dict(), "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="cannot be read as PyTorch weights"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "unpickled!" not in capsys.readouterr().out


def test_networks_are_only_rebuilt_from_trusted_classes(tmp_path: Path) -> None:
    payload = {
        "format": FORMAT,
        "format_version": 1,
        "state_dict": {"weight": torch.zeros(1)},
        METADATA_KEY: json.dumps({"network": {"_target_": "os.system", "command": "echo owned"}}),
    }
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="outside the trusted modules"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"is not a torch\.nn\.Module class"):
        build_network({"_target_": "medseg.networks.create_network"})


def test_newer_formats_and_bad_metadata_are_refused(tmp_path: Path) -> None:
    state = _net().state_dict()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 1, "state_dict": state}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="upgrade medseg"):
        load_checkpoint(tmp_path / "new.pt")
    torch.save({"format": FORMAT, "format_version": 1, "state_dict": state, METADATA_KEY: "{"}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_checkpoint(tmp_path / "b.pt")
    with pytest.raises(ValueError, match="roi_size must be a list of positive integers"):
        CheckpointMetadata.from_dict({"roi_size": [128, 0]})
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        CheckpointMetadata.from_dict({"spatial_dims": 4})
    with pytest.raises(TypeError, match="cannot be stored"):
        save_checkpoint(tmp_path / "c.pt", _net(), {"extra": {"tensor": torch.zeros(2, 2)}})
    assert not (tmp_path / "c.pt").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as PyTorch weights"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_unknown_metadata_keys_are_kept_as_extra() -> None:
    meta = CheckpointMetadata.from_dict({"classes": {"1": "infection", "0": "background"}, "scanner": "CT"})
    assert meta.classes == ["background", "infection"]
    assert meta.extra == {"scanner": "CT"}
    assert CheckpointMetadata.from_dict(json.loads(meta.to_json())) == meta


class _Opaque(nn.Module):
    """Its constructor argument is not kept on the instance: it cannot be recorded."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3)


def test_network_spec(caplog: pytest.LogCaptureFixture) -> None:
    conv = nn.Conv2d(2, 4, 3, padding=1)  # no init_args: read from attributes, checked by rebuilding
    spec = network_spec(conv)
    assert spec is not None
    assert spec["_target_"] == "torch.nn.modules.Conv2d"
    assert (spec["in_channels"], spec["out_channels"], spec["kernel_size"]) == (2, 4, [3, 3])
    with caplog.at_level(logging.WARNING, logger="medseg.checkpoint"):
        assert network_spec(_Opaque(3)) is None
    assert "cannot record its constructor argument 'width'" in caplog.text
    wrapped = nn.DataParallel(_net())
    assert network_spec(wrapped) == network_spec(_net())


def test_describe_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "model.pt", _net(), {**META, "training": {"epoch": 7, "best_metric": 0.81}})
    text = describe_checkpoint(tmp_path / "model.pt")
    lines = text.splitlines()
    assert lines[0].startswith("model.pt: medseg checkpoint (format 1, medseg ")
    assert "bundle covid19_ct_lesion" in lines[0]
    assert "weights in" in lines[0]
    assert lines[1].startswith("  network: medseg.networks.CopleNet(spatial_dims=2, in_channels=1, out_channels=2")
    assert "  classes: 0 background, 1 infection" in lines
    assert "  input: 1 input channel, 2D, trained on 128x128 inputs" in lines
    assert '  loss: name "mc"' in lines
    assert "  plan: not recorded" in lines
    assert "  training: epoch 7, best_metric 0.81" in lines


def _covid_parser() -> Any:
    from monai.bundle import ConfigParser

    from medseg.resources import bundle_dir

    root = bundle_dir("covid19_ct_lesion")
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    return parser


def test_bundle_settings_of_the_shipped_covid_bundle() -> None:
    settings = bundle_settings(_covid_parser())
    assert settings["network"]["_target_"] == "medseg.networks.CopleNet"
    assert settings["network"]["out_channels"] == 2  # "@num_classes", resolved
    assert settings["network"]["features"] == [16, 32, 64, 128, 256]  # the shipped model's widths
    assert settings["roi_size"] == [256, 240]
    assert settings["classes"] == ["background", "infection"]
    assert settings["preprocessing"] == {
        "window": None,
        "volume_window": [1475, -450],
        "intensity_range": [0, 255],
        "normalization": {"kind": "zscore", "clip": [0.035294, 1.0], "mean": 0.53684, "std": 0.311223},
    }


def test_disagreements_with_the_bundle_are_one_line_each(tmp_path: Path) -> None:
    # the README's quick run: narrower network at 128 x 128
    save_checkpoint(tmp_path / "model.pt", _net(), {**META, "preprocessing": {"window": "lung"}})
    meta = load_checkpoint(tmp_path / "model.pt").metadata
    lines = checkpoint_disagreements(meta, bundle_settings(_covid_parser()))
    assert lines == [
        "network arguments differ (features): features [8, 16, 32, 64, 128] in the checkpoint, "
        "[16, 32, 64, 128, 256] in the bundle",
        "checkpoint trained at 128x128, bundle runs at 256x240",
        'preprocessing window differs: "lung" in the checkpoint, null in the bundle',
    ]
    assert all("\n" not in line for line in lines)
    three = CheckpointMetadata(classes=["background", "ground-glass opacity", "consolidation"])
    assert checkpoint_disagreements(three, {"classes": ["background", "infection"]}) == [
        "checkpoint has 3 classes, bundle 2"
    ]
    renamed = CheckpointMetadata(classes=["background", "lesion"])
    assert checkpoint_disagreements(renamed, {"classes": ["background", "infection"]}) == [
        "class names differ: checkpoint background, lesion; bundle background, infection"
    ]
    other = CheckpointMetadata(network={"_target_": "monai.networks.nets.BasicUNet"})
    assert checkpoint_disagreements(other, {"network": {"_target_": "medseg.networks.CopleNet"}}) == [
        "network differs: checkpoint monai.networks.nets.BasicUNet, bundle medseg.networks.CopleNet"
    ]
    assert checkpoint_disagreements(None, {"roi_size": [1, 1]}) == []
    agreeing = CheckpointMetadata(roi_size=[256, 240], classes=["background", "infection"])
    assert checkpoint_disagreements(agreeing, bundle_settings(_covid_parser())) == []


def test_monai_ckpt_export_torchscript_loads_with_its_metadata(tmp_path: Path) -> None:
    """The TorchScript that ``python -m monai.bundle ckpt_export`` writes (medseg predict refused it before)."""
    from monai.bundle import ckpt_export

    from medseg.resources import bundle_dir

    root = bundle_dir("covid19_ct_lesion")
    net = _net()
    save_checkpoint(tmp_path / "model.pt", net, META)
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(tmp_path / "model.pt"),
        key_in_ckpt="state_dict",  # where a medseg checkpoint keeps the weights
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "inference.json"),
        **{"network_def#features": SMALL},
    )
    loaded = load_model(tmp_path / "model.ts")
    assert loaded.kind == "torchscript"
    _same_outputs(loaded.model, net)
    assert loaded.metadata is not None
    assert loaded.metadata.classes == ["background", "infection"]  # from metadata.json's channel_def
    assert loaded.metadata.roi_size == [256, 240]  # from inference.json
    assert loaded.metadata.in_channels == 1
    assert describe_checkpoint(tmp_path / "model.ts").startswith("model.ts: TorchScript model")
    with pytest.raises(ValueError, match="is a TorchScript file"):
        load_checkpoint(tmp_path / "model.ts")


def test_class_names_that_do_not_fit_the_network_are_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An overlay that sets num_classes 3 but keeps the binary class names must not mislabel the classes."""
    with caplog.at_level(logging.WARNING, logger="medseg.checkpoint"):
        save_checkpoint(tmp_path / "model.pt", _net(out_channels=3), {"classes": ["background", "infection"]})
    assert "names 2 classes (background, infection) but the network has 3 outputs" in caplog.text
    meta = load_checkpoint(tmp_path / "model.pt").metadata
    assert meta is not None
    assert (meta.classes, meta.out_channels) == (None, 3)
