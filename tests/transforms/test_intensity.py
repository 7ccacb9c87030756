"""Window maths, fixed-range scaling, colour jitter (random -> deterministic twin), channel adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.transforms import (
    AdaptChannels,
    AdjustColor,
    EnsureSpatialDims,
    RandColorJitter,
    RandColorJitterd,
    window_range,
)
from medseg.transforms.intensity import imagenet_normalize, intensity_range_transform, window_transform


def test_lung_window_hand_values() -> None:
    # W1500/L-650: window [L - W/2, L + W/2] = [-1400, 100]; x' = (x + 1400) / 1500, clipped to [0, 1].
    assert window_range("lung") == (-1400.0, 100.0)
    hu = torch.tensor([[-3000.0, -1400.0, -650.0, 100.0, 1000.0, -1025.0]])
    out = window_transform("image", "lung")({"image": hu})["image"]
    # -1025 HU: (−1025 + 1400) / 1500 = 375 / 1500 = 0.25
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.0, 0.5, 1.0, 1.0, 0.25]], atol=1e-6)


def test_custom_window_pair() -> None:
    # W400/L40 -> [-160, 240]; 40 HU is the middle
    assert window_range([400, 40]) == (-160.0, 240.0)
    out = window_transform("image", (400, 40))({"image": torch.tensor([40.0, -160.0, 240.0])})["image"]
    np.testing.assert_allclose(out.numpy(), [0.5, 0.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("bad", ["lungs", [1500], [0, -600], [-10, 0], [float("nan"), 0], "x"], ids=str)
def test_window_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="window"):
        window_range(bad)  # type: ignore[arg-type]


def test_intensity_range_8bit() -> None:
    out = intensity_range_transform("image", [0, 255])({"image": torch.tensor([0.0, 51.0, 255.0, 300.0])})
    np.testing.assert_allclose(out["image"].numpy(), [0.0, 0.2, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="intensity_range"):
        intensity_range_transform("image", [255, 0])


def test_imagenet_normalize_per_channel() -> None:
    img = torch.ones(3, 2, 2) * 0.5
    out = imagenet_normalize("image")({"image": img})["image"]
    expected = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    np.testing.assert_allclose(out[:, 0, 0].numpy(), expected, rtol=1e-5)


def test_adjust_color_identity_and_formula() -> None:
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.uniform(0.2, 0.6, size=(3, 4, 4)), dtype=torch.float32)
    torch.testing.assert_close(AdjustColor()(img), img)
    # brightness only: x * 1.5 (stays below 1 since x <= 0.6)
    torch.testing.assert_close(AdjustColor(brightness=1.5)(img), img * 1.5)
    # saturation 0: every channel equals the BT.601 luma 0.299 R + 0.587 G + 0.114 B
    gray = AdjustColor(saturation=0.0)(img)
    luma = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    for c in range(3):
        torch.testing.assert_close(gray[c], luma)
    # contrast 0: a flat image at the mean luma
    flat = AdjustColor(contrast=0.0)(img)
    torch.testing.assert_close(flat, torch.full_like(img, float(luma.mean())))
    # numpy in, numpy out; clipping to [0, 1]
    out = AdjustColor(brightness=3.0)(img.numpy())
    assert isinstance(out, np.ndarray)
    assert out.max() <= 1.0


def test_adjust_color_validation() -> None:
    with pytest.raises(ValueError, match="brightness"):
        AdjustColor(brightness=-1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        AdjustColor()(torch.zeros(2, 3, 3))


def test_rand_color_jitter_replays_through_twin() -> None:
    img = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.8
    jitter = RandColorJitter(prob=1.0, brightness=0.3, contrast=0.3, saturation=0.3)
    jitter.set_random_state(seed=1)
    out = jitter(img)
    assert jitter.params is not None
    for name, value in jitter.params.items():
        assert 0.7 <= value <= 1.3, name
    torch.testing.assert_close(out, AdjustColor(**jitter.params)(img))
    skipped = RandColorJitter(prob=0.0)
    assert skipped(img) is img
    assert skipped.params is None


def test_rand_color_jitterd_seeded() -> None:
    img = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    a = RandColorJitterd("image", prob=1.0)
    b = RandColorJitterd("image", prob=1.0)
    a.set_random_state(seed=5)
    b.set_random_state(seed=5)
    torch.testing.assert_close(a({"image": img})["image"], b({"image": img})["image"])


@pytest.mark.parametrize(
    ("channels", "wanted", "out_channels"),
    [(1, 1, 1), (1, 3, 3), (2, 1, 1), (3, 1, 1), (3, 3, 3), (4, 3, 3), (4, 1, 1)],
    ids=["1-1", "1-3", "LA-1", "RGB-1", "RGB-3", "RGBA-3", "RGBA-1"],
)
def test_adapt_channels_shapes(channels: int, wanted: int, out_channels: int) -> None:
    img = torch.rand(channels, 3, 4)
    assert tuple(AdaptChannels(wanted)(img).shape) == (out_channels, 3, 4)


def test_adapt_channels_values() -> None:
    equal = torch.stack([torch.arange(4.0).reshape(2, 2)] * 3)
    torch.testing.assert_close(AdaptChannels(1)(equal), equal[:1])
    rgb = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    assert float(AdaptChannels(1, "luma")(rgb)) == pytest.approx(0.299)
    assert float(AdaptChannels(1, "first")(rgb)) == 1.0
    with pytest.raises(ValueError, match="colour"):
        AdaptChannels(1, "strict")(rgb)
    with pytest.raises(ValueError, match="5 channels"):
        AdaptChannels(3)(torch.zeros(5, 2, 2))


def test_ensure_spatial_dims() -> None:
    assert tuple(EnsureSpatialDims(2)(torch.zeros(1, 4, 5, 1)).shape) == (1, 4, 5)
    assert tuple(EnsureSpatialDims(2)(np.zeros((1, 4, 5))).shape) == (1, 4, 5)
    with pytest.raises(ValueError, match="not singletons"):
        EnsureSpatialDims(2)(torch.zeros(1, 4, 5, 3))
