"""Fixtures of the data_tools.dicom tests: the synthetic DICOM factory on the path, UID keys kept in tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# dicom_factory.py lives one folder up (tests/data_tools), shared with the rtstruct and lidc tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True, scope="session")
def private_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the user config dir (where the default UID key is created) into a temporary folder.

    Session-scoped, so that module-scoped fixtures that convert (the shared CT) see it too.
    """
    config = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(config))
        yield config
