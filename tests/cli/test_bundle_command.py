"""``medseg bundle list|path|overlay|copy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.cli.main import main
from medseg.resources import bundle_dir, loss_overlay


def test_list_path_overlay(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", "list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert ["bundle", "covid19_ct_lesion", str(bundle_dir("covid19_ct_lesion"))] in rows
    assert ["overlay", "mc", str(loss_overlay("mc"))] in rows
    assert main(["bundle", "path", "robotic_instrument"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert (path / "configs" / "train.json").is_file()
    assert main(["bundle", "overlay", "mc"]) == 0
    assert json.loads(Path(capsys.readouterr().out.strip()).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("args", "message"),
    [(["path", "covid19_ct"], "did you mean covid19_ct_lesion"), (["overlay", "mcc"], "did you mean mc")],
    ids=["bundle", "overlay"],
)
def test_unknown_name_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["bundle", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_copy_makes_an_editable_bundle_and_never_replaces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "src" / "my_bundle"
    for rel in ("configs/train.json", "docs/README.md", "LICENSE", "models/README.md"):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text("{}", encoding="utf-8")
    # what a run inside the bundle leaves behind is not copied
    (source / "models" / "model.pt").write_bytes(b"weights")
    (source / "runs").mkdir()
    (source / "runs" / "history.csv").write_text("epoch\n", encoding="utf-8")

    dest = tmp_path / "work"
    assert main(["bundle", "copy", str(source), str(dest)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(dest / "my_bundle")
    copied = sorted(p.relative_to(dest / "my_bundle").as_posix() for p in (dest / "my_bundle").rglob("*"))
    assert copied == [
        "LICENSE",
        "configs",
        "configs/train.json",
        "docs",
        "docs/README.md",
        "models",
        "models/README.md",
    ]
    assert sorted(p.name for p in dest.iterdir()) == ["my_bundle"]  # no staging folder left behind

    (dest / "my_bundle" / "configs" / "train.json").write_text('{"edited": true}', encoding="utf-8")
    assert main(["bundle", "copy", str(source), str(dest)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert json.loads((dest / "my_bundle" / "configs" / "train.json").read_text(encoding="utf-8")) == {"edited": True}


def test_copy_a_shipped_bundle_by_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bundle", "copy", "covid19_ct_lesion", str(tmp_path)]) == 0
    copy = tmp_path / "covid19_ct_lesion"
    shipped = bundle_dir("covid19_ct_lesion")
    assert sorted(p.name for p in (copy / "configs").iterdir()) == sorted(
        p.name for p in (shipped / "configs").iterdir()
    )
    assert "--bundle_root" in capsys.readouterr().out
