from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.transforms import LABEL_MAP_PRESETS, MapLabels, MapLabelsd, resolve_label_map

# (preset, raw values, expected classes): each row is the preset's definition from the brief / data READMEs.
PRESET_CASES = [
    ("identity", [0, 3, 7, 255], [0, 3, 7, 255]),
    ("binary", [0, 1, 2, 200], [0, 1, 1, 1]),
    ("binary255", [0, 255, 0, 255], [0, 1, 0, 1]),
    ("endovis_binary", [0, 10, 20, 30, 40], [0, 1, 1, 1, 1]),
    ("endovis_parts", [0, 10, 20, 30, 40], [0, 1, 2, 3, 4]),
    ("covid_multiclass", [0, 1, 2, 2], [0, 1, 2, 2]),
]


@pytest.mark.parametrize(("preset", "raw", "expected"), PRESET_CASES, ids=[c[0] for c in PRESET_CASES])
@pytest.mark.parametrize("kind", ["numpy_uint8", "torch_float", "metatensor"])
def test_presets(preset: str, raw: list[int], expected: list[int], kind: str) -> None:
    m = MapLabels(preset)
    if kind == "numpy_uint8":
        out = m(np.array(raw, dtype=np.uint8))
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.uint8
    elif kind == "torch_float":
        out = m(torch.tensor(raw, dtype=torch.float32))
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.float32
    else:
        src = MetaTensor(torch.tensor(raw, dtype=torch.float32), meta={"filename_or_obj": "a.png"})
        out = m(src)
        assert isinstance(out, MetaTensor)
        assert out.meta["filename_or_obj"] == "a.png"
    assert np.asarray(out).tolist() == expected


def test_every_preset_is_tested() -> None:
    assert {c[0] for c in PRESET_CASES} == set(LABEL_MAP_PRESETS)


def test_shape_preserved_2d() -> None:
    lab = np.array([[[0, 10], [20, 40]]], dtype=np.uint8)  # (1, 2, 2)
    out = MapLabels("endovis_parts")(lab)
    assert out.shape == (1, 2, 2)
    assert out.tolist() == [[[0, 1], [2, 4]]]


def test_unknown_values_error_names_them() -> None:
    with pytest.raises(ValueError, match=r"\[5, 7\].*endovis_parts|endovis_parts.*\[5, 7\]"):
        MapLabels("endovis_parts")(np.array([0, 5, 7, 10]))


def test_unknown_values_to_default() -> None:
    out = MapLabels("endovis_parts", default=0)(np.array([0, 5, 10, 50]))
    assert out.tolist() == [0, 0, 1, 0]


def test_binary_keeps_ignore_index() -> None:
    out = MapLabels("binary", ignore_index=255)(np.array([0, 3, 255, 1], dtype=np.uint8))
    assert out.tolist() == [0, 1, 255, 1]


def test_binary_negative_is_unknown() -> None:
    with pytest.raises(ValueError, match=r"\[-1\]"):
        MapLabels("binary")(np.array([0, -1, 1]))


def test_ignore_index_passes_table() -> None:
    out = MapLabels("endovis_parts", ignore_index=255)(torch.tensor([255, 10, 0]))
    assert out.tolist() == [255, 1, 0]


def test_ignore_index_collides_with_table() -> None:
    with pytest.raises(ValueError, match="ignore_index=255"):
        MapLabels("binary255", ignore_index=255)


def test_non_integer_labels_rejected() -> None:
    with pytest.raises(ValueError, match="non-integer"):
        MapLabels("binary255")(torch.tensor([0.0, 0.5, 255.0]))
    with pytest.raises(ValueError, match="non-integer"):
        MapLabels("binary255")(np.array([0.0, np.nan]))


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ValueError, match=r"did you mean.*endovis_parts"):
        MapLabels("endovis_part")


@pytest.mark.parametrize(
    "spec",
    [{0: 0, 255: 1}, {"0": 0, "255": 1}, "0:0,255:1", '{"0": 0, "255": 1}', json.loads('{"0": 0, "255": 1}')],
    ids=["int_keys", "str_keys", "inline", "json_string", "json_loaded"],
)
def test_custom_table_forms(spec: object) -> None:
    m = resolve_label_map(spec)  # type: ignore[arg-type]
    assert m.source_values == (0, 255)
    assert m.class_values == (0, 1)
    assert m(np.array([255, 0])).tolist() == [1, 0]


@pytest.mark.parametrize(
    "spec",
    [{"a": 1}, "0-0", {}, {0: True}, {0: 1.5}],
    ids=["non_int_key", "bad_inline", "empty", "bool", "float"],
)
def test_malformed_tables(spec: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        MapLabels(spec)  # type: ignore[arg-type]


def test_dtype_promotion_and_override() -> None:
    # -1 does not fit uint8 -> promoted to int64 instead of wrapping around to 255
    assert MapLabels({0: 0, 1: -1})(np.array([0, 1], dtype=np.uint8)).tolist() == [0, -1]
    out = MapLabels("endovis_parts", dtype="int64")(torch.tensor([10, 20], dtype=torch.uint8))
    assert out.dtype == torch.int64
    with pytest.raises(ValueError, match="dtype"):
        MapLabels("binary", dtype="nonsense")


def test_resolve_none_is_identity_and_passthrough() -> None:
    m = resolve_label_map(None)
    assert m.rule == "identity"
    assert m.class_values is None
    same = MapLabels("binary")
    assert resolve_label_map(same) is same


def test_dict_wrapper_names_file_and_skips_missing() -> None:
    t = MapLabelsd(["label"], "endovis_parts", allow_missing_keys=True)
    assert t({"image": 1})["image"] == 1
    bad = MetaTensor(torch.tensor([5.0]), meta={"filename_or_obj": "/x/frame_7.png"})
    with pytest.raises(ValueError, match=r"frame_7\.png"):
        t({"label": bad})


def test_wide_value_range_and_empty() -> None:
    # values spread wider than the look-up table range go through np/torch.unique instead
    wide = MapLabels({0: 0, 5_000_000: 1})
    assert wide(np.array([5_000_000, 0])).tolist() == [1, 0]
    assert wide(torch.tensor([5_000_000, 0])).tolist() == [1, 0]
    assert MapLabels({-3: 1, 2: 0})(torch.tensor([-3, 2, -3])).tolist() == [1, 0, 1]
    assert MapLabels("binary")(np.zeros((0, 3))).shape == (0, 3)
