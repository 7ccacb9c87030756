"""A bundle is code: bundles from outside medseg run only with --trust-bundle; shipped ones run as they are."""

from __future__ import annotations

import shutil

import pytest
from _predict_helpers import gray_png, tiny_bundle

from medseg.cli.main import main
from medseg.inference import load_bundle
from medseg.resources import bundle_dir, bundle_names


def _crafted(tmp_path):
    marker = tmp_path / "PWNED"
    payload = f"$__import__('pathlib').Path({str(marker)!r}).touch() or 'cpu'"
    return tiny_bundle(tmp_path / "crafted", payload=payload), marker


def test_untrusted_bundle_is_refused_before_any_code_runs(tmp_path, capsys):
    bundle, marker = _crafted(tmp_path)
    image = tmp_path / "x.png"
    gray_png(image)
    code = main(["predict", "--bundle", str(bundle), "-i", str(image), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--trust-bundle" in err
    assert "code" in err
    assert not marker.exists()  # the '$' expression never ran
    assert not (tmp_path / "o" / "x_seg.png").exists()


def test_trusted_bundle_runs(tmp_path):
    bundle, marker = _crafted(tmp_path)
    image = tmp_path / "x.png"
    gray_png(image)
    code = main(["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(image), "-o", str(tmp_path / "o")])
    assert code == 0
    assert marker.exists()
    assert (tmp_path / "o" / "x_seg.png").is_file()


def test_library_refuses_too(tmp_path):
    from medseg.inference import UntrustedBundleError

    bundle, marker = _crafted(tmp_path)
    with pytest.raises(UntrustedBundleError, match="trust=True"):
        load_bundle(bundle)
    assert not marker.exists()


@pytest.mark.parametrize("name", bundle_names())
def test_shipped_bundles_are_trusted_and_copies_are_not(tmp_path, name):
    from medseg.inference import is_shipped_bundle

    shipped = bundle_dir(name)
    assert is_shipped_bundle(shipped)
    assert is_shipped_bundle(str(shipped) + "/.")  # any spelling of the same folder
    copy = shutil.copytree(shipped, tmp_path / name)
    assert not is_shipped_bundle(copy)
