"""The wheel ships the bundles, loss overlays and study definitions, and works installed outside the checkout.

The wheel is built from a copy of the project (``pip wheel --no-deps --no-build-isolation``: offline, with the
test environment's setuptools), installed with ``pip install --no-deps --target``, and run from an empty folder
with ``python -S`` and ``PYTHONPATH=<install dir>:<this environment's site-packages>``: without ``site`` no
``.pth`` file runs, so neither the editable install of the checkout nor the checkout itself is importable, and
every ``medseg`` module must come from the wheel. The Makefile's choice of PyTorch build is checked by faking
the environment (no local wheel, with and without ``nvidia-smi``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "medseg"


def _expected_data_files() -> set[str]:
    """Every bundle's configs, docs, LICENSE, models/README.md and shipped model, every overlay and study."""
    bundles = [p for p in (PACKAGE / "bundles").iterdir() if (p / "configs").is_dir()]
    assert {p.name for p in bundles} >= {"covid19_ct_lesion", "robotic_instrument"}
    files: set[Path] = set()
    for bundle in bundles:
        files |= {p for p in (bundle / "configs").iterdir() if p.is_file()}
        files |= {p for p in (bundle / "docs").iterdir() if p.is_file()}
        files |= {bundle / "LICENSE", bundle / "models" / "README.md"}
        files |= set((bundle / "models").glob("model.pt"))  # the shipped trained model
    files |= set((PACKAGE / "configs" / "losses").glob("*.json"))
    files |= set((PACKAGE / "configs" / "experiments").glob("*.json"))
    files |= set((PACKAGE / "configs" / "monai").glob("*.json"))  # MONAI's metadata schema, for offline checks
    return {p.relative_to(REPO_ROOT).as_posix() for p in files}


def _modules() -> set[str]:
    """Every Python module of the two packages, bundle scripts included."""
    found = {p for top in ("medseg", "data_tools") for p in (REPO_ROOT / top).rglob("*.py")}
    return {p.relative_to(REPO_ROOT).as_posix() for p in found if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", minversion="77")
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.pt", "sample_data", "runs", "eval")

    def ignore(folder: str, names: list[str]) -> set[str]:  # the shipped models/model.pt travels, other .pt do not
        shipped = (
            {"model.pt"} if Path(folder).name == "models" and Path(folder).parent.parent.name == "bundles" else set()
        )
        return set(skip(folder, names)) - shipped

    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    for name in ("medseg", "data_tools"):
        shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
    # what a bundle run in place leaves behind must not ship
    covid = src / "medseg" / "bundles" / "covid19_ct_lesion"
    (covid / "models" / "last.pt").write_bytes(b"resume state")
    (covid / "sample_data").mkdir()
    (covid / "sample_data" / "case.nii.gz").write_bytes(b"data")
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = out.glob("medseg-*.whl")
    return built


def test_wheel_contains_bundles_overlays_studies_and_modules(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = (_expected_data_files() | _modules()) - names
    assert not missing, sorted(missing)
    assert "medseg/py.typed" in names
    shipped = {n for n in names if n.endswith("/models/model.pt")}
    assert "medseg/bundles/covid19_ct_lesion/models/model.pt" in shipped
    leftovers = [n for n in names - shipped if n.endswith(".pt") or "/sample_data/" in n or "__pycache__" in n]
    assert not leftovers, leftovers
    assert not [n for n in names if n.startswith(("tests/", "docs/"))]


def test_wheel_version_is_the_package_version(wheel: Path) -> None:
    import medseg

    assert wheel.name.startswith(f"medseg-{medseg.__version__}-")


def _installed_env(target: Path) -> dict[str, str]:
    site_packages = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(target), site_packages])
    return env


def test_installed_wheel_runs_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "installed"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _installed_env(target)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", *args], cwd=empty, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    script = str(target / "bin" / "medseg")
    for command in (["demo", "--help"], ["predict", "--bundle", "covid19_ct_lesion", "--help"], ["study", "--help"]):
        result = run(script, *command)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        assert result.stdout.startswith(f"usage: medseg {command[0]}"), result.stdout[:200]
    result = run(str(target / "bin" / "medseg-data"), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("medseg-data "), result.stdout

    probe = (
        "import json, medseg, medseg.resources as r; print(json.dumps({"
        "'module': medseg.__file__, 'bundle': str(r.bundle_dir('covid19_ct_lesion')), "
        "'overlay': str(r.loss_overlay('mc')), 'study': str(r.experiment_config('covid19_binary')), "
        "'bundles': r.bundle_names()}))"
    )
    result = run("-c", probe)
    assert result.returncode == 0, result.stderr
    import json

    found = json.loads(result.stdout)
    for key in ("module", "bundle", "overlay", "study"):
        assert Path(found[key]).is_relative_to(target), (key, found[key])
    assert (Path(found["bundle"]) / "configs" / "inference.json").is_file()
    assert found["bundles"] == ["covid19_ct_lesion", "robotic_instrument"]
    # the checkout is not importable in this environment (so the checks above could not pass through it)
    result = run("-c", f"import sys; print(any(p.rstrip('/') == {str(REPO_ROOT)!r} for p in sys.path))")
    assert result.stdout.strip() == "False"


def test_no_module_locates_the_checkout_from_its_own_path() -> None:
    # package data is found with importlib.resources (medseg.resources); a path derived from __file__ breaks in
    # a wheel. Bundle scripts are the bundle's own (they find their bundle folder, wherever it was copied).
    offenders = []
    for rel in sorted(_modules()):
        if "/bundles/" in rel:
            continue
        if "__file__" in (REPO_ROOT / rel).read_text(encoding="utf-8"):
            offenders.append(rel)
    assert not offenders


# ------------------------------------------------------------------------------------------ Makefile: torch
def _torch_source(tmp_path: Path, *, local: bool, nvidia: bool, index: str | None = None) -> tuple[int, str]:
    """``make torch-source`` with or without pip's local wheel and ``nvidia-smi``; returns (exit code, output)."""
    make = shutil.which("make")
    sed = shutil.which("sed")
    if make is None or sed is None:
        pytest.skip("make and sed are needed to run the Makefile")
    bin_dir = tmp_path / ("bin_gpu" if nvidia else "bin")
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sed").unlink(missing_ok=True)
    (bin_dir / "sed").symlink_to(sed)
    if nvidia:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        (bin_dir / "nvidia-smi").chmod(0o755)
    env = dict(os.environ, PATH=str(bin_dir))
    if not local:  # no pip configuration, no find-links: no wheel without an index
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    args = [make, "-s", "--no-print-directory", "-C", str(REPO_ROOT), "torch-source", f"PY={sys.executable}"]
    if index is not None:
        args.append(f"TORCH_INDEX={index}")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def _has_local_torch_wheel() -> bool:
    import torch

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--no-deps",
            "-q",
            f"torch=={torch.__version__.split('+')[0]}",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.parametrize(("nvidia", "expected"), [(False, "cpu"), (True, "cuda")], ids=["no-nvidia-smi", "nvidia-smi"])
def test_make_picks_the_torch_index_without_a_local_wheel(tmp_path: Path, nvidia: bool, expected: str) -> None:
    assert _torch_source(tmp_path, local=False, nvidia=nvidia) == (0, expected)


def test_make_prefers_a_local_torch_wheel(tmp_path: Path) -> None:
    if not _has_local_torch_wheel():
        pytest.skip("pip finds no local torch wheel on this machine")
    assert _torch_source(tmp_path, local=True, nvidia=True) == (0, "local")


def test_make_torch_index_is_validated(tmp_path: Path) -> None:
    assert _torch_source(tmp_path, local=False, nvidia=False, index="cpu") == (0, "cpu")
    code, output = _torch_source(tmp_path, local=False, nvidia=False, index="gpu")
    assert code != 0
    assert "TORCH_INDEX must be auto, local, cpu or cuda, got 'gpu'" in output
