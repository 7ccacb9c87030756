"""Class statistics: hand-counted tiny label maps, chunked == whole, mapping/ignore, errors, flat memory, CLI."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from _data_factory import label_datalist, run_cli, save_gray, write_datalist

import medseg.data.statistics as stats_mod
from medseg.data.statistics import compute_stats, count_classes, count_label_array
from medseg.imageio import LoadedImage, read_label

STATS_KEYS = {
    "num_classes",
    "class_counts",
    "num_pixels",
    "tau",
    "v",
    "rho_neg",
    "rho_pos",
    "num_cases",
    "split",
    "datalist",
}


def test_count_label_array_hand_values() -> None:
    label = np.array([[0, 0, 1], [2, 1, 255]], np.uint8)
    # class 0: two pixels, class 1: two, class 2: one; 255 is ignored
    counts, ignored = count_label_array(label, 3, ignore_index=255)
    assert counts.tolist() == [2, 2, 1]
    assert counts.dtype == np.int64
    assert ignored == 1
    floats = np.array([[0.0, 1.0], [1.0, 1.0]], np.float32)
    assert count_label_array(floats, 2)[0].tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"lab\.png: label values \[255\] are outside the classes 0\.\.2"):
        count_label_array(label, 3, source="lab.png")
    with pytest.raises(ValueError, match=r"non-integer or non-finite values \(0\.5, nan\)"):
        count_label_array(np.array([0.5, np.nan, 1.0]), 2)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        count_label_array(np.array([-1, 0, 1]), 2)


def test_chunked_counting_equals_one_bincount(monkeypatch: pytest.MonkeyPatch) -> None:
    label = np.random.default_rng(0).integers(0, 5, size=(7, 11, 3)).astype(np.int16)
    label[0, 0, :] = 9  # ignore index spread over chunk borders
    reference = np.bincount(label[label != 9].ravel(), minlength=5)  # independent: NumPy on the whole array
    monkeypatch.setattr(stats_mod, "CHUNK_ELEMENTS", 4)
    counts, ignored = count_label_array(label, 5, ignore_index=9)
    assert counts.tolist() == reference.tolist()
    assert ignored == 3


def test_count_classes_over_png_and_nifti_datalists(tmp_path: Path) -> None:
    a = np.array([[0, 1, 1], [0, 0, 2]], np.uint8)  # 3 x class 0, 2 x class 1, 1 x class 2
    b = np.array([[2, 2, 2], [2, 0, 1]], np.uint8)  # 1, 1, 4
    png = label_datalist(tmp_path / "png", [a, b])
    result = count_classes(png, 3)
    assert result.counts.tolist() == [4, 3, 5]
    assert result.num_cases == 2
    assert result.num_pixels == 12
    nii = label_datalist(
        tmp_path / "nii",
        [a[..., None].astype(np.float32), b[..., None].astype(np.float32)],
        fmt="nifti",
        split="validation",
    )
    assert count_classes(nii, 3, "validation").counts.tolist() == [4, 3, 5]
    with pytest.raises(
        ValueError, match=r"split 'training' not found; the datalist has \['validation'\]; choose one \(--split\)"
    ):
        count_classes(nii, 3)


def test_label_map_as_training_and_ignore_index(tmp_path: Path) -> None:
    parts = np.array([[0, 10, 20], [30, 40, 255]], np.uint8)
    path = label_datalist(tmp_path, [parts, parts])
    res = count_classes(path, 5, label_map="endovis_parts", ignore_index=255)
    assert res.counts.tolist() == [2, 2, 2, 2, 2]
    assert res.num_ignored == 2
    binary = count_classes(path, 2, label_map="endovis_binary", ignore_index=255)
    assert binary.counts.tolist() == [2, 8]
    with pytest.raises(ValueError, match=r"c0\.png: .*255"):
        count_classes(path, 5, label_map="endovis_parts")  # 255 unknown to the preset without ignore_index


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    path = label_datalist(tmp_path, [np.zeros((2, 2), np.uint8)])
    (tmp_path / "labels" / "c0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"c0\.png: unreadable or truncated image"):
        count_classes(path, 2)
    (tmp_path / "labels" / "c0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"c0\.png"):
        count_classes(path, 2)
    nolabel = write_datalist(tmp_path / "n.json", {"training": [{"image": "x.png"}]})
    with pytest.raises(ValueError, match=r"training\[0\] has no 'label'"):
        count_classes(nolabel, 2)
    with pytest.raises(ValueError, match="is empty"):
        count_classes(write_datalist(tmp_path / "e.json", {"training": []}), 2)
    with pytest.raises(ValueError, match="num_classes"):
        count_classes(path, 1)
    save_gray(
        tmp_path / "rgb.png",
        np.dstack([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8), np.zeros((2, 2), np.uint8)]),
    )
    with pytest.raises(ValueError, match="colour label with differing channels"):
        read_label(tmp_path / "rgb.png")
    same = np.dstack([np.eye(2, dtype=np.uint8)] * 3)
    save_gray(tmp_path / "gray_rgb.png", same)
    np.testing.assert_array_equal(read_label(tmp_path / "gray_rgb.png").array, np.eye(2))


def test_memory_stays_flat_as_cases_grow(tmp_path: Path) -> None:
    # 2 vs 12 cases of the same 64x64x32 int16 label (256 KiB each). After a warm-up run (lazy imports allocate
    # too), the traced peak is one case plus fixed chunk buffers (~1.6 MB measured) whatever the case count;
    # keeping the 12 labels alive would add 3 MiB, far beyond the 1.25x margin.
    vol = np.random.default_rng(0).integers(0, 3, size=(64, 64, 32)).astype(np.int16)
    paths = {n: label_datalist(tmp_path / str(n), [vol] * n, fmt="nifti") for n in (1, 2, 12)}
    count_classes(paths[1], 3)

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            count_classes(paths[n], 3)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2), peak(12)
    assert large < 1.25 * small, (small, large)


def test_compute_stats_keys_and_offsets(tmp_path: Path) -> None:
    a = np.array([[0, 0, 0, 1], [0, 0, 2, 1]], np.uint8)  # counts [5, 2, 1]
    path = label_datalist(tmp_path, [a, a])
    stats = compute_stats(path, 3, tau=10.0, v=1.0)
    assert set(stats) == STATS_KEYS
    assert stats["class_counts"] == [10, 4, 2]
    assert stats["num_pixels"] == 16
    assert stats["num_cases"] == 2
    assert stats["split"] == "training"
    assert stats["datalist"] == str(path)
    # Algorithm 1 (Yu et al. 2021): rho_0k = tau * sqrt(N - N_k) / N_k; with N = 16:
    # k=0: 10*sqrt(6)/10 = 2.449..., k=1: 10*sqrt(12)/4 = 8.660..., k=2: 10*sqrt(14)/2 = 18.708...
    expected_neg = [10 * math.sqrt(6) / 10, 10 * math.sqrt(12) / 4, 10 * math.sqrt(14) / 2]
    assert stats["rho_neg"] == pytest.approx(expected_neg, rel=1e-12)
    # rho_k0 = mu_k rho_0k, mu_k = P_k sqrt(N_k) / (v (N - N_k) - P_k sqrt(N - N_k)), P_k = N_k / N
    mu = [(nk / 16) * math.sqrt(nk) / ((16 - nk) - (nk / 16) * math.sqrt(16 - nk)) for nk in (10, 4, 2)]
    assert stats["rho_pos"] == pytest.approx([m * r for m, r in zip(mu, expected_neg, strict=True)], rel=1e-12)
    json.dumps(stats)  # JSON-ready


def test_compute_stats_empty_class(tmp_path: Path) -> None:
    path = label_datalist(tmp_path, [np.array([[0, 1], [1, 0]], np.uint8)])
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no pixels in split 'training'.*--empty zero"):
        compute_stats(path, 3)
    stats = compute_stats(path, 3, empty="zero")
    assert stats["class_counts"] == [2, 2, 0]
    assert stats["rho_neg"][2] == 0.0
    assert stats["rho_pos"][2] == 0.0


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = label_datalist(tmp_path, [np.array([[0, 1], [2, 1]], np.uint8)])
    out = tmp_path / "res" / "stats.json"
    assert run_cli(["stats", str(path), "--num-classes", "3", "--tau", "5", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == STATS_KEYS
    assert doc["class_counts"] == [1, 2, 1]
    assert doc["tau"] == 5.0
    assert "4 pixels" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    assert run_cli(["stats", str(path), "--num-classes", "2", "--out", str(bad)]) == 2
    assert "label values [2] are outside the classes 0..1" in capsys.readouterr().err
    assert not bad.exists()
    assert run_cli(["stats", str(path), "--num-classes", "3", "--tau", "-1", "--out", str(bad)]) == 2
    assert run_cli(["stats", str(path), "--num-classes", "3"]) == 2  # --out is required
    assert run_cli(["stats", str(path), "--num-classes", "4", "--out", str(bad)]) == 2
    assert "--empty zero" in capsys.readouterr().err
    assert run_cli(["stats", "--help"]) == 0


@pytest.mark.slow
def test_counts_beyond_int32(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 2 cases x 2**30 + 7 pixels of class 1 (a zero-stride view, no real memory): the sum exceeds 2**31 - 1
    path = label_datalist(tmp_path, [np.ones((2, 2), np.uint8)] * 2)
    big = np.broadcast_to(np.uint8(1), (2**30 + 7,))
    loaded = LoadedImage(big, None, None, "pixel", "raster")
    monkeypatch.setattr(stats_mod, "read_label", lambda p, max_voxels=None: loaded)
    result = count_classes(path, 2)
    assert result.counts.tolist() == [0, 2 * (2**30 + 7)]
    assert result.num_pixels > 2**31
