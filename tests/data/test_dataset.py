"""make_dataset: the three cache modes, and a persistent cache that really hits (and is not stale)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset

import medseg.transforms.readers as readers
from medseg.data import cached_prefix, load_datalist, make_ct_slices, make_dataset, transform_fingerprint
from medseg.transforms import ct_slice_transforms


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = make_ct_slices(tmp_path_factory.mktemp("ds"), num_cases=5, size=(32, 32))
    return load_datalist(path, "training")


@pytest.fixture
def read_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count every file the medseg reader opens."""
    calls: list[str] = []
    original = readers.MedicalImageReader.read

    def counting(self: readers.MedicalImageReader, data: Any, **kwargs: Any) -> Any:
        calls.append(str(data))
        return original(self, data, **kwargs)

    monkeypatch.setattr(readers.MedicalImageReader, "read", counting)
    return calls


def _pipeline(size: int = 24) -> Any:
    return ct_slice_transforms(train=True, spatial_size=[size, size], seed=0)


@pytest.mark.parametrize(("cache", "cls"), [("none", Dataset), ("memory", CacheDataset)], ids=["none", "memory"])
def test_modes(entries: list[dict[str, Any]], cache: str, cls: type) -> None:
    ds = make_dataset(entries, _pipeline(), cache=cache)  # type: ignore[arg-type]
    assert type(ds) is cls
    assert len(ds) == len(entries)
    assert tuple(ds[0]["image"].shape) == (1, 24, 24)


def test_memory_cache_loads_once(entries: list[dict[str, Any]], read_calls: list[str]) -> None:
    ds = make_dataset(entries, _pipeline(), cache="memory")
    loaded = len(read_calls)
    assert loaded == 2 * len(entries)  # image + label, once each, at construction
    for _ in range(2):
        _ = [ds[i] for i in range(len(ds))]
    assert len(read_calls) == loaded


def test_persistent_cache_hits_across_instances(
    entries: list[dict[str, Any]], read_calls: list[str], tmp_path: Path
) -> None:
    first = make_dataset(entries, _pipeline(), cache="persistent", cache_dir=tmp_path)
    assert isinstance(first, PersistentDataset)
    a = [first[i] for i in range(len(first))]
    assert len(read_calls) == 2 * len(entries)
    assert len(list(tmp_path.glob("*.pt"))) == len(entries)
    # a new dataset with a freshly built (equal) pipeline, as in a second training run: no file is read again
    second = make_dataset(entries, _pipeline(), cache="persistent", cache_dir=tmp_path)
    b = [second[i] for i in range(len(second))]
    assert len(read_calls) == 2 * len(entries)
    # the random part still runs after the cache, and a seeded pipeline gives the same samples with a cold
    # cache, a warm cache and no cache at all (MONAI's PersistentDataset alone reseeds the pipeline when it
    # hashes it, and hands MetaTensors on a miss but plain tensors on a hit)
    plain = make_dataset(entries, _pipeline(), cache="none")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_allclose(np.asarray(x["image"]), np.asarray(y["image"]), atol=1e-6)
        np.testing.assert_allclose(np.asarray(plain[i]["image"]), np.asarray(y["image"]), atol=1e-6)
        assert y["label"].dtype == torch.int64


def test_persistent_cache_misses_when_settings_change(
    entries: list[dict[str, Any]], read_calls: list[str], tmp_path: Path
) -> None:
    _ = make_dataset(entries[:1], _pipeline(24), cache="persistent", cache_dir=tmp_path)[0]
    _ = make_dataset(entries[:1], _pipeline(20), cache="persistent", cache_dir=tmp_path)[0]
    assert len(read_calls) == 4  # another size: recomputed, not served from the 24 x 24 cache
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_persistent_cache_misses_when_file_changes(
    entries: list[dict[str, Any]], read_calls: list[str], tmp_path: Path
) -> None:
    item = dict(entries[0])
    _ = make_dataset([item], _pipeline(), cache="persistent", cache_dir=tmp_path)[0]
    stamp = time.time() + 5
    os.utime(item["image"], (stamp, stamp))  # an edited image (same path) must not be served stale
    _ = make_dataset([item], _pipeline(), cache="persistent", cache_dir=tmp_path)[0]
    assert len(read_calls) == 4


def test_persistent_requires_cache_dir(entries: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="cache_dir"):
        make_dataset(entries, _pipeline(), cache="persistent")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"cache": "disk"}, "cache must be"), ({"cache": "memory", "cache_rate": 2.0}, "cache_rate")],
    ids=["bad_mode", "bad_rate"],
)
def test_bad_arguments(entries: list[dict[str, Any]], kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make_dataset(entries, _pipeline(), **kwargs)


def test_data_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="list of entries"):
        make_dataset("datalist.json", _pipeline())  # type: ignore[arg-type]


def test_fingerprint_stable_and_sensitive() -> None:
    fp = transform_fingerprint(cached_prefix(_pipeline()))
    assert fp == transform_fingerprint(cached_prefix(_pipeline()))
    assert fp != transform_fingerprint(cached_prefix(_pipeline(20)))
    windowed = ct_slice_transforms(train=True, spatial_size=[24, 24], window="lung")
    other = ct_slice_transforms(train=True, spatial_size=[24, 24], window=[400, 40])
    assert transform_fingerprint(cached_prefix(windowed)) != transform_fingerprint(cached_prefix(other))
    # only the part before the first random transform counts: augmentation settings do not invalidate the cache
    aug = ct_slice_transforms(train=True, spatial_size=[24, 24], augmentation={"preset": "light", "rotate_deg": 30})
    assert transform_fingerprint(cached_prefix(aug)) == fp


def test_bundle_style_config(entries: list[dict[str, Any]], tmp_path: Path) -> None:
    # bundles name these by full dotted path; medseg.data exports them lazily
    from monai.bundle import ConfigParser

    parser = ConfigParser(
        {
            "imports": ["$import medseg", "$import medseg.data"],  # MONAI binds `import a.b` to "a.b"
            "data": "$medseg.data.load_datalist(@datalist, 'training')",
            "datalist": str(Path(entries[0]["image"]).parents[1] / "datalist.json"),
            "pre": {"_target_": "medseg.transforms.ct_slice_transforms", "train": True, "spatial_size": [16, 16]},
            "ds": {
                "_target_": "medseg.data.make_dataset",
                "data": "@data",
                "transform": "@pre",
                "cache": "persistent",
                "cache_dir": str(tmp_path),
            },
        }
    )
    ds = parser.get_parsed_content("ds")
    assert isinstance(ds, PersistentDataset)
    assert tuple(ds[0]["image"].shape) == (1, 16, 16)
