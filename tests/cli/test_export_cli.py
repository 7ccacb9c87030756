"""``medseg export``: describe model files, export to ONNX, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.checkpoint import save_checkpoint
from medseg.cli.main import main
from medseg.networks import CopleNet


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    net = CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128))
    save_checkpoint(path, net, {"classes": ["background", "infection"], "roi_size": [32, 32]})
    return path


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0
    assert "--onnx" in capsys.readouterr().out


def test_describe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    assert main(["export", str(ckpt), "--describe"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model.pt: medseg checkpoint (format 1")
    assert "classes: 0 background, 1 infection" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to do: give --describe, --onnx FILE or --half FILE"),
        (["--onnx", "out.txt"], "path must end in .onnx"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    assert main(["export", str(ckpt), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_and_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "missing.pt"), "--describe"])
    assert exc.value.code == 2
    (tmp_path / "junk.pt").write_bytes(b"junk")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "junk.pt"), "--describe"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read as PyTorch weights" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_export_to_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    ckpt = _checkpoint(tmp_path / "model.pt")
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "model.onnx"), "--describe"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'model.onnx'} (opset 18; max |ONNX Runtime - PyTorch| = ")
    assert (tmp_path / "model.onnx").is_file()
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "model.onnx")]) == 2  # exists


def test_half_precision_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medseg.checkpoint import load_checkpoint, load_model

    ckpt = _checkpoint(tmp_path / "model.pt")
    half = tmp_path / "model_fp16.pt"
    assert main(["export", str(ckpt), "--half", str(half)]) == 0
    assert half.stat().st_size < 0.6 * ckpt.stat().st_size  # float16 weights: about half the file
    assert load_checkpoint(half).metadata == load_checkpoint(ckpt).metadata  # no plan: nothing to drop
    x = torch.randn(1, 1, 32, 32)
    full, small = load_model(ckpt).model.eval(), load_model(half).model.eval()
    with torch.no_grad():
        # float16 weights keep 11 significant bits: the logits move by ~1e-3 of their scale, not more
        torch.testing.assert_close(small(x), full(x), rtol=1e-2, atol=1e-2)
    assert main(["export", str(ckpt), "--half", str(half)]) == 2  # never replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_half_precision_copy_drops_local_paths(tmp_path: Path) -> None:
    """The shipped copy keeps what the plan says about the data, not where the data lived on this machine."""
    from medseg.checkpoint import load_checkpoint

    torch.manual_seed(0)
    plan = {"datalist": "/home/site/patients/jane_doe/datalist.json", "num_cases": 3, "batch_size": 2}
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128)), {"plan": plan})
    half = tmp_path / "half.pt"
    assert main(["export", str(ckpt), "--half", str(half)]) == 0
    copied = load_checkpoint(half).metadata
    assert copied is not None
    assert copied.plan is not None
    assert copied.plan == {**plan, "datalist": "datalist.json"}
    assert "jane_doe" not in half.read_bytes().decode("latin-1")
