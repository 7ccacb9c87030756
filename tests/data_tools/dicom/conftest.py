"""Fixtures of the data_tools.dicom tests: the synthetic DICOM factory on the path, UID keys kept in tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# dicom_factory.py lives one folder up (tests/data_tools), shared with the rtstruct and lidc tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user config dir (where the default UID key is created) into a temporary folder."""
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config
