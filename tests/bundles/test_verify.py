"""MONAI's bundle checks on both bundles: ``verify_metadata``, ``verify_net_in_out`` and ``ckpt_export``.

The functions are called in-process (``python -m monai.bundle <command>`` dispatches to the same functions);
one slow test runs the real command lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _bundle_helpers import BUNDLES, FEATURES, REPO_ROOT, SCHEMA

BUNDLE_NAMES = ("covid19_ct_lesion", "robotic_instrument")


def _configs(bundle: str) -> tuple[str, str]:
    folder = BUNDLES / bundle / "configs"
    return str(folder / "metadata.json"), str(folder / "inference.json")


@pytest.fixture
def schema() -> Path:
    if not SCHEMA.is_file():
        pytest.skip(f"MONAI metadata schema not found at {SCHEMA}")
    return SCHEMA


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_verify_metadata(bundle: str, schema: Path) -> None:
    from monai.bundle import verify_metadata

    meta, _ = _configs(bundle)
    verify_metadata(meta_file=meta, filepath=str(schema))  # raises ValueError when the schema is not met


def test_verify_metadata_catches_a_bad_file(schema: Path, tmp_path: Path) -> None:
    import json

    from monai.bundle import verify_metadata

    meta = json.loads((BUNDLES / "covid19_ct_lesion" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    del meta["network_data_format"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(meta_file=str(bad), filepath=str(schema))


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
@pytest.mark.parametrize("config", ["inference.json", "train.json"])
def test_verify_net_in_out(bundle: str, config: str) -> None:
    from monai.bundle import verify_net_in_out

    meta, _ = _configs(bundle)
    verify_net_in_out(
        net_id="network_def",
        meta_file=meta,
        config_file=str(BUNDLES / bundle / "configs" / config),
        device="cpu",
        n=2,  # 16*n = 32 pixels per side
        **{"network_def#features": FEATURES},
    )


def test_verify_net_in_out_catches_a_wrong_class_count() -> None:
    from monai.bundle import verify_net_in_out

    meta, inference = _configs("covid19_ct_lesion")
    with pytest.raises(ValueError, match="output channel number `3` doesn't match: `2`"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=meta,
            config_file=inference,
            device="cpu",
            **{"network_def#features": FEATURES, "num_classes": 3},
        )


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_ckpt_export_torchscript_matches_the_network(bundle: str, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser, ckpt_export
    from monai.data import load_net_with_metadata

    meta, inference = _configs(bundle)
    parser = ConfigParser()
    parser.read_config(inference)
    parser["network_def#features"] = FEATURES
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    ckpt = tmp_path / "model.pt"
    torch.save(network.state_dict(), ckpt)

    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(ckpt),
        meta_file=meta,
        config_file=inference,
        **{"network_def#features": FEATURES},
    )
    scripted, meta_values, extra = load_net_with_metadata(str(exported), more_extra_files=["inference.json"])
    assert meta_values["version"] == ConfigParser.load_config_file(meta)["version"]
    embedded = extra["inference.json"]
    assert "medseg.inference.Predictor" in (embedded.decode() if isinstance(embedded, bytes) else embedded)
    channels = meta_values["network_data_format"]["inputs"]["image"]["num_channels"]
    x = torch.rand(1, channels, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x))


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_bundle_command_lines(bundle: str, schema: Path, tmp_path: Path) -> None:
    meta, inference = _configs(bundle)
    features = "[" + ",".join(str(f) for f in FEATURES) + "]"
    parser_net = [sys.executable, "-m", "monai.bundle"]
    ckpt = tmp_path / "model.pt"
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(inference)
    parser["network_def#features"] = FEATURES
    torch.save(parser.get_parsed_content("network_def").state_dict(), ckpt)
    commands = [
        [*parser_net, "verify_metadata", "--meta_file", meta, "--filepath", str(schema)],
        [
            *parser_net,
            "verify_net_in_out",
            "network_def",
            "--meta_file",
            meta,
            "--config_file",
            inference,
            "--device",
            "cpu",
            "--network_def#features",
            features,
        ],
        [
            *parser_net,
            "ckpt_export",
            "network_def",
            "--filepath",
            str(tmp_path / "model.ts"),
            "--ckpt_file",
            str(ckpt),
            "--meta_file",
            meta,
            "--config_file",
            inference,
            "--network_def#features",
            features,
        ],
    ]
    for command in commands:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "model.ts").stat().st_size > 0
