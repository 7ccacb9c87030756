"""Hostile input: a ~1 MB ``.nii.gz`` whose header claims 2048 x 2048 x 256 voxels (1 GiB of zeros, gzip's ~1000:1).

Reading it used to cost several GB of memory in ``medseg-data check``. The reader layer now compares the header's
claimed size with a limit (``--max-voxels``) before touching the data and refuses with one line naming the file,
the claimed shape and the limit. The commands run in a child process whose address space is capped at 1.5 GiB, so a
regression fails quickly (MemoryError, no such line) instead of swapping the machine.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

CLAIMED = (2048, 2048, 256)  # 2**30 voxels of uint8
ADDRESS_SPACE_LIMIT = 3 << 29  # 1.5 GiB: far above what refusing needs, far below what reading needs


def _craft(path: Path) -> Path:
    """Header + 1 GiB of zeros as 16 concatenated gzip members (one 64 MiB member compressed once, repeated)."""
    header = nib.Nifti1Header()
    header.set_data_shape(CLAIMED)
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    head = header.binaryblock + b"\x00" * 4  # 348-byte header + empty extension flag
    chunk = 1 << 26
    zeros = gzip.compress(b"\x00" * chunk, compresslevel=9)
    with path.open("wb") as fh:
        fh.write(gzip.compress(head + b"\x00" * chunk, compresslevel=9))
        for _ in range((1 << 30) // chunk - 1):
            fh.write(zeros)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bomb")
    _craft(root / "bomb.nii.gz")
    small = nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4))
    nib.save(small, str(root / "image.nii.gz"))
    (root / "datalist.json").write_text(json.dumps({"training": [{"image": "image.nii.gz", "label": "bomb.nii.gz"}]}))
    (root / "pred").mkdir()
    (root / "label").mkdir()
    os.link(root / "bomb.nii.gz", root / "pred" / "case.nii.gz")
    os.link(root / "bomb.nii.gz", root / "label" / "case.nii.gz")
    return root


def test_the_crafted_file_is_small_and_claims_a_gigavoxel(bomb: Path) -> None:
    assert (bomb / "bomb.nii.gz").stat().st_size < 2_000_000
    assert nib.load(bomb / "bomb.nii.gz").shape == CLAIMED  # header only: nothing is decompressed here


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        preexec_fn=_limit_address_space,
    )


def _claims_line(text: str) -> bool:
    return "header claims shape (2048, 2048, 256) = 1,073,741,824 voxels, above the limit of 536,870,912" in text


def test_check_refuses_before_reading(bomb: Path) -> None:
    done = _run("data_tools", "check", str(bomb / "datalist.json"), "--no-progress")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if "bomb.nii.gz" in ln]
    assert len(lines) == 1, done.stdout
    assert "too-large" in lines[0]
    assert _claims_line(lines[0])
    assert "--max-voxels" in lines[0]


def test_stats_and_evaluate_refuse_with_one_line(bomb: Path) -> None:
    done = _run("data_tools", "stats", str(bomb / "datalist.json"), "--num-classes", "2", "--out", str(bomb / "s.json"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert _claims_line(done.stderr)
    done = _run(
        "medseg", "evaluate", "--pred", str(bomb / "pred"), "--label", str(bomb / "label"), "--num-classes", "2"
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert _claims_line(done.stderr)
    assert "Traceback" not in done.stderr
