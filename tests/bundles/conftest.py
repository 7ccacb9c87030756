"""Fixtures for the bundle tests: tiny synthetic datasets with their ``stats.json``.

``torch`` runs single-threaded here: the test machine is shared, and with two threads on two busy cores a tiny
forward/backward pass is ~10x slower than with one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _bundle_helpers import SIZE, Dataset


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _with_stats(root: Path, datalist: Path, num_classes: int, label_map: str, name: str) -> Dataset:
    """``stats.json`` (class counts) and ``plan.json`` (fingerprint and recipe) beside the datalist."""
    from medseg.data.plan import plan_datalist
    from medseg.data.statistics import compute_stats, write_stats

    stats = root / name
    write_stats(stats, compute_stats(datalist, num_classes=num_classes, label_map=label_map, empty="zero"))
    if not (root / "plan.json").is_file():
        plan_datalist(datalist, num_classes, root / "plan.json", label_map=label_map)
    return Dataset(root, datalist, stats, num_classes, label_map)


@pytest.fixture(scope="session")
def covid_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """6 binary synthetic CT slices (4 training, 1 validation, 1 test) with ``stats.json``."""
    from medseg.data.synthetic import make_ct_slices

    root = tmp_path_factory.mktemp("covid_data")
    datalist = make_ct_slices(root, num_cases=6, size=(SIZE, SIZE), seed=0)
    return _with_stats(root, datalist, 2, "binary", "stats.json")


@pytest.fixture(scope="session")
def covid_multiclass_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """6 synthetic CT slices labelled 0/1/2 (GGO/consolidation) with a 3-class ``stats.json``."""
    from medseg.data.synthetic import make_ct_slices

    root = tmp_path_factory.mktemp("covid_mc_data")
    datalist = make_ct_slices(root, num_cases=6, size=(SIZE, SIZE), seed=1, multiclass=True)
    return _with_stats(root, datalist, 3, "covid_multiclass", "stats.json")


@pytest.fixture(scope="session")
def robotic_frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from medseg.data.synthetic import make_instrument_frames

    root = tmp_path_factory.mktemp("robotic_data")
    return root, make_instrument_frames(root, num_frames=6, size=(SIZE, SIZE), seed=0, task="parts")


@pytest.fixture(scope="session")
def robotic_data(robotic_frames: tuple[Path, Path]) -> Dataset:
    """6 synthetic RGB frames, binary instrument labels (the bundle's default ``label_map="binary"``)."""
    root, datalist = robotic_frames
    return _with_stats(root, datalist, 2, "binary", "stats_binary.json")


@pytest.fixture(scope="session")
def robotic_parts_data(robotic_frames: tuple[Path, Path]) -> Dataset:
    """The same frames with part labels for the ``parts.json`` overlay (5 classes: background + 4 parts)."""
    root, datalist = robotic_frames
    return _with_stats(root, datalist, 5, "identity", "stats_parts.json")
