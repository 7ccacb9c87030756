"""Light commands stay light: stats, check and split import neither torch nor MONAI (each run in a fresh process).

Before the numpy-only label map, ``medseg-data stats --label-map ...`` imported the training transforms and with
them torch and MONAI: 15x the CPU of importing numpy and nibabel for ten small labels.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _convert_factory import gray_image, save_gray

HEAVY = ("torch", "monai")


def _datalist(root: Path) -> Path:
    import json

    entries = []
    for i in range(4):
        lab = np.zeros((8, 8), np.uint8)
        lab[i : i + 3, 2:6] = 255
        save_gray(root / f"l{i}.png", lab)
        save_gray(root / f"i{i}.png", gray_image(8, 8, i))
        entries.append({"image": f"i{i}.png", "label": f"l{i}.png"})
    (root / "dl.json").write_text(json.dumps({"training": entries}))
    return root / "dl.json"


def _heavy_after(argv: list[str]) -> tuple[int, str]:
    code = (
        "import sys\n"
        "from data_tools.cli import main\n"
        f"rc = main({argv!r})\n"
        f"print('RC', rc, 'HEAVY', ','.join(m for m in {HEAVY!r} if m in sys.modules) or '-')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RC ")), "")
    assert line, (done.stdout[-2000:], done.stderr[-2000:])
    _, rc, _, heavy = line.split()
    return int(rc), heavy


@pytest.mark.parametrize(
    "command",
    [
        ["stats", "DL", "--num-classes", "2", "--label-map", "binary255", "--out", "OUT/stats.json"],
        ["check", "DL", "--num-classes", "2", "--label-map", "binary255"],
        ["split", "DL", "--counts", "2", "1", "1", "--out", "OUT/split.json"],
    ],
    ids=["stats", "check", "split"],
)
def test_command_imports_neither_torch_nor_monai(tmp_path: Path, command: list[str]) -> None:
    dl = _datalist(tmp_path)
    argv = [a.replace("DL", str(dl)).replace("OUT", str(tmp_path)) for a in [*command, "--no-progress"]]
    rc, heavy = _heavy_after(argv)
    assert rc == 0
    assert heavy == "-", f"{command[0]} imported {heavy}"


def test_the_library_never_imports_data_tools() -> None:
    """data_tools is the command line over medseg; no module of the medseg package may import it."""
    import ast

    import medseg

    offenders = []
    for path in Path(medseg.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "data_tools" or n.startswith("data_tools.")]
    assert offenders == []
