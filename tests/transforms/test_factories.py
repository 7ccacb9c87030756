"""The Compose factories on synthetic files: shapes, dtypes, ranges, label mapping, determinism, JSON configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medseg.data import load_datalist, make_ct_slices, make_ct_volume, make_instrument_frames, write_dicom_series
from medseg.transforms import ct_slice_transforms, ct_volume_transforms, frame_transforms


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("factories")
    vol = make_ct_volume(root / "vol" / "ct.nii.gz", shape=(24, 24, 12), lesion_radius_mm=4.0)
    return {
        "slices": load_datalist(make_ct_slices(root / "s", num_cases=3, size=(32, 32)), "training")[0],
        "slices_hu": load_datalist(
            make_ct_slices(root / "h", num_cases=3, size=(32, 32), intensity="hu", multiclass=True), "training"
        )[0],
        "slices_png": load_datalist(make_ct_slices(root / "p", num_cases=3, size=(32, 40), fmt="png"), "training")[0],
        "frames": load_datalist(make_instrument_frames(root / "f", num_frames=3, size=(32, 40)), "training")[0],
        "volume": {"image": str(vol.image), "label": str(vol.label)},
        "root": root,
    }


def _check_sample(out: dict[str, Any], channels: int, spatial: tuple[int, ...]) -> None:
    image, label = out["image"], out["label"]
    assert tuple(image.shape) == (channels, *spatial)
    assert image.dtype == torch.float32
    assert tuple(label.shape) == (1, *spatial)
    assert label.dtype == torch.int64
    assert bool(torch.isfinite(image).all())


AFFINE = {"preset": "light", "affine_prob": 1.0}  # every sample gets a random affine


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_ct_slices_uint8(data: dict[str, Any], train: bool) -> None:
    t = ct_slice_transforms(train=train, spatial_size=[24, 20], seed=0)
    out = t(data["slices"])
    _check_sample(out, 1, (24, 20))
    if not train:  # no intensity augmentation: exactly the [0, 255] -> [0, 1] scaling
        assert float(out["image"].min()) >= 0.0
        assert float(out["image"].max()) <= 1.0
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1}
    assert bool((out["label"] == 1).any())


def test_ct_slices_hu_with_lung_window_and_multiclass(data: dict[str, Any]) -> None:
    t = ct_slice_transforms(train=False, window="lung", spatial_size=[32, 32], label_map="covid_multiclass")
    out = t(data["slices_hu"])
    _check_sample(out, 1, (32, 32))
    raw = np.asarray(nib.load(data["slices_hu"]["image"]).dataobj, dtype=np.float64)
    # same grid (32 -> 32): the pipeline equals the window formula (x + 1400) / 1500 clipped, to resize noise
    expected = np.clip((raw + 1400.0) / 1500.0, 0, 1)
    np.testing.assert_allclose(out["image"][0].numpy(), expected, atol=1e-4)
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2}


def test_ct_slices_png_no_resize_keeps_geometry(data: dict[str, Any]) -> None:
    t = ct_slice_transforms(train=False, resize_mode="none", spatial_size=None)
    out = t(data["slices_png"])
    png = np.asarray(Image.open(data["slices_png"]["label"]))
    assert png.shape == (32, 40)
    np.testing.assert_array_equal(out["label"][0].numpy(), png)


def test_ct_slices_raw_255_masks_need_a_map(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "i.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    item = {"image": str(tmp_path / "i.png"), "label": str(tmp_path / "m.png")}
    out = ct_slice_transforms(train=False, spatial_size=[8, 8], label_map="binary255")(item)
    assert int(out["label"].sum()) == 9
    # MONAI's Compose wraps errors in "applying transform ..."; medseg's message (naming the file) is the cause
    with pytest.raises(RuntimeError, match="MapLabelsd") as info:
        ct_slice_transforms(train=False, spatial_size=[8, 8], label_map="covid_multiclass")(item)
    assert isinstance(info.value.__cause__, ValueError)
    assert "[255]" in str(info.value.__cause__)
    assert "m.png" in str(info.value.__cause__)


@pytest.mark.parametrize("normalize", ["imagenet", "unit"])
def test_frames(data: dict[str, Any], normalize: str) -> None:
    t = frame_transforms(train=True, spatial_size=[16, 20], normalize=normalize, seed=0)  # type: ignore[arg-type]
    out = t(data["frames"])
    _check_sample(out, 3, (16, 20))
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2, 3}
    if normalize == "unit":
        assert float(out["image"].min()) >= 0.0
        assert float(out["image"].max()) <= 1.0
    else:
        assert float(out["image"].min()) < 0.0  # mean subtracted


def test_frames_raw_endovis_values(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "f.png")
    raw = np.zeros((6, 8), np.uint8)
    raw[0, :4] = [10, 20, 30, 40]
    Image.fromarray(raw).save(tmp_path / "m.png")
    item = {"image": str(tmp_path / "f.png"), "label": str(tmp_path / "m.png")}
    out = frame_transforms(train=False, resize_mode="none", spatial_size=None, label_map="endovis_parts")(item)
    assert out["label"][0, 0, :4].tolist() == [1, 2, 3, 4]


def test_ct_volume_eval_geometry(data: dict[str, Any]) -> None:
    out = ct_volume_transforms(train=False)(data["volume"])
    assert tuple(out["image"].shape) == (1, 24, 24, 12)
    assert float(out["image"].min()) >= 0.0
    assert float(out["image"].max()) <= 1.0
    assert int(out["label"].sum()) > 0


def test_ct_volume_resample_and_crop(data: dict[str, Any]) -> None:
    # voxels 0.8 x 0.8 x 2.5 mm -> 1.6 x 1.6 x 2.5: the in-plane size about halves (24 -> 12 or 13, MONAI
    # keeps the full extent), then the foreground crop can only shrink it
    out = ct_volume_transforms(train=False, spacing=[1.6, 1.6, 2.5], crop_foreground=True)(data["volume"])
    assert out["image"].shape[1] <= 13
    assert out["image"].shape[3] == 12
    assert tuple(out["label"].shape) == tuple(out["image"].shape)
    np.testing.assert_allclose(out["image"].pixdim.numpy(), [1.6, 1.6, 2.5], atol=1e-5)


def test_ct_volume_train_crops_balanced(data: dict[str, Any]) -> None:
    t = ct_volume_transforms(train=True, roi_size=[8, 8, 4], num_samples=4, pos=1.0, neg=0.0, seed=0)
    samples = t(data["volume"])
    assert len(samples) == 4
    for s in samples:
        _check_sample(s, 1, (8, 8, 4))
        assert int(s["label"].sum()) > 0  # pos=1, neg=0: every crop is centred on lesion


def test_ct_volume_to_2d(data: dict[str, Any]) -> None:
    samples = ct_volume_transforms(train=True, roi_size=[16, 16, 1], to_2d=True, num_samples=2, seed=0)(data["volume"])
    for s in samples:
        _check_sample(s, 1, (16, 16))


def test_ct_volume_from_dicom_folder_equals_nifti(data: dict[str, Any], tmp_path: Path) -> None:
    img = nib.load(data["volume"]["image"])
    write_dicom_series(tmp_path / "dcm", np.asarray(img.dataobj), img.affine, shuffle_instance_numbers=True)
    t = ct_volume_transforms(["image", "label"], train=False)
    from_dicom = t({"image": str(tmp_path / "dcm"), "label": data["volume"]["label"]})
    from_nifti = t(data["volume"])
    np.testing.assert_allclose(from_dicom["image"].numpy(), from_nifti["image"].numpy(), atol=1e-6)
    np.testing.assert_allclose(from_dicom["image"].affine.numpy(), from_nifti["image"].affine.numpy(), atol=1e-4)


FACTORY_CASES = [
    (
        "slices",
        lambda seed: ct_slice_transforms(train=True, spatial_size=[24, 24], augmentation=AFFINE, seed=seed),
    ),
    (
        "frames",
        lambda seed: frame_transforms(train=True, spatial_size=[16, 20], augmentation=AFFINE, seed=seed),
    ),
    ("volume", lambda seed: ct_volume_transforms(train=True, roi_size=[8, 8, 4], num_samples=2, seed=seed)),
]


def _first(out: Any) -> dict[str, Any]:
    return out[0] if isinstance(out, list) else out


@pytest.mark.parametrize(("kind", "build"), FACTORY_CASES, ids=[c[0] for c in FACTORY_CASES])
def test_deterministic_given_seed(data: dict[str, Any], kind: str, build: Any) -> None:
    a = [_first(build(0)(data[kind]))["image"] for _ in range(2)]
    torch.testing.assert_close(a[0], a[1])
    # the same pipeline object continues its random sequence; a new one with another seed differs
    pipeline = build(0)
    first, second = _first(pipeline(data[kind]))["image"], _first(pipeline(data[kind]))["image"]
    assert not torch.equal(first, second)
    assert not torch.equal(_first(build(1)(data[kind]))["image"], a[0])


def test_flatten_and_len_keep_the_seed(data: dict[str, Any]) -> None:
    # MONAI's Compose.flatten() (called by len() and by PersistentDataset) reseeds the transforms it holds;
    # the factories' pipelines keep their seeded generators.
    reference = ct_slice_transforms(train=True, spatial_size=[24, 24], augmentation=AFFINE, seed=0)(data["slices"])
    pipeline = ct_slice_transforms(train=True, spatial_size=[24, 24], augmentation=AFFINE, seed=0)
    assert len(pipeline) == len(pipeline.flatten().transforms)
    torch.testing.assert_close(pipeline(data["slices"])["image"], reference["image"])


def test_eval_pipelines_have_no_random_transform() -> None:
    from monai.transforms.traits import RandomizableTrait

    for t in (
        ct_slice_transforms(train=False),
        frame_transforms(train=False),
        ct_volume_transforms(train=False, spacing=[1, 1, 1]),
    ):
        assert not any(isinstance(x, RandomizableTrait) for x in t.flatten().transforms)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: ct_slice_transforms(train=True, spatial_size=[0, 4]), "spatial_size"),
        (lambda: ct_slice_transforms(train=True, augmentation={"flip_prob": 2}), "flip_prob"),
        (lambda: ct_slice_transforms(train=True, window="lungs"), "window"),
        (lambda: ct_slice_transforms(train=True, label_map="endovis_part"), "did you mean"),
        (lambda: ct_slice_transforms(train=True, resize_mode="stretch"), "resize_mode"),  # type: ignore[arg-type]
        (lambda: ct_slice_transforms(["image", "image"], train=True), "duplicates"),
        (lambda: frame_transforms(train=True, normalize="zscore"), "normalize"),  # type: ignore[arg-type]
        (lambda: frame_transforms(train=True, augmentation={"flip_axes": [2]}), "flip_axes"),
        (lambda: ct_volume_transforms(train=True), "roi_size"),
        (lambda: ct_volume_transforms(["image"], train=True, roi_size=8), "label key"),
        (lambda: ct_volume_transforms(train=True, roi_size=[8, 8, 4], to_2d=True), "to_2d"),
        (lambda: ct_volume_transforms(train=False, spacing=[1, 1]), "spacing"),
        (lambda: ct_volume_transforms(train=False, seed=-1), "seed"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_arguments(call: Any, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


def test_inference_keys_without_label(data: dict[str, Any]) -> None:
    out = ct_slice_transforms(["image"], train=False, spatial_size=[16, 16])({"image": data["slices"]["image"]})
    assert tuple(out["image"].shape) == (1, 16, 16)
    assert "label" not in out


def test_bundle_json_instantiation(data: dict[str, Any]) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser(
        {
            "pre": {
                "_target_": "medseg.transforms.frame_transforms",
                "train": True,
                "spatial_size": [16, 20],
                "label_map": "binary",
                "augmentation": {"preset": "light", "flip_axes": [0, 1]},
                "seed": 3,
            }
        }
    )
    out = parser.get_parsed_content("pre")(data["frames"])
    _check_sample(out, 3, (16, 20))
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1}


def test_monai_dataloader_collates(data: dict[str, Any]) -> None:
    from monai.data import DataLoader, Dataset

    t = ct_volume_transforms(train=True, roi_size=[8, 8, 4], num_samples=2, seed=0)
    batch = next(iter(DataLoader(Dataset([data["volume"]] * 2, t), batch_size=2, num_workers=0)))
    assert tuple(batch["image"].shape) == (4, 1, 8, 8, 4)  # 2 volumes x 2 crops
    assert batch["label"].dtype == torch.int64


def test_shared_dicom_series_aligns_with_reference_segmentation(shared_data: Path) -> None:
    # The real JPEG 2000 series and TotalSegmentator's NIfTI (stored LAS) describe one world grid: after
    # reorientation to RAS they overlap voxel for voxel. README of the sample: mean HU in the liver (label 5)
    # is about 89, in the spleen (label 1) about 80.
    folder = shared_data / "totalsegmentator_example_ct_dicom"
    t = ct_volume_transforms(train=False, window=None)
    out = t({"image": str(folder / "dicom"), "label": str(folder / "example_seg_dicom.nii.gz")})
    image, label = out["image"], out["label"]
    assert tuple(image.shape) == tuple(label.shape) == (1, 512, 512, 20)
    np.testing.assert_allclose(image.affine.numpy(), label.affine.numpy(), atol=1e-3)
    hu = image.numpy()
    assert abs(float(hu[label.numpy() == 5].mean()) - 89) < 5
    assert abs(float(hu[label.numpy() == 1].mean()) - 80) < 5
