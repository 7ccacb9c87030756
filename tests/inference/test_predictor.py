"""The Predictor: slice-wise use of 2D networks, TTA, multi-scale, devices, checkpoints, input checks."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medseg.inference import Predictor, load_weights, tta_flips


def _net2d(in_channels: int = 1, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, classes, 3, padding=1))


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("axis", [-1, 2])
def test_2d_network_on_volume_equals_looping_over_slices(memory_format, axis):
    net = _net2d()
    x = torch.randn(2, 1, 12, 10, 7)
    with torch.no_grad():
        moved = x.movedim(axis, 1)  # (B, S, C, h, w)
        expected = torch.stack([net(moved[:, s]) for s in range(moved.shape[1])], dim=1).movedim(1, axis)
    predictor = Predictor(_net2d(), sw_batch_size=3, slice_axis=axis, memory_format=memory_format)
    torch.testing.assert_close(predictor.predict_logits(x), expected, rtol=1e-5, atol=1e-5)


def test_2d_network_on_volume_with_windows_matches_monai_slicewise():
    # MONAI's usual slice-wise set-up: windows (rh, rw, 1) with the depth squeezed for the 2D network.
    net = _net2d()
    x = torch.randn(1, 1, 20, 17, 3)
    with torch.no_grad():
        ref = sliding_window_inference(x, (8, 8, 1), 4, lambda w: net(w[..., 0])[..., None], 0.5, "gaussian")
    ours = Predictor(net, roi_size=(8, 8), sw_batch_size=4).predict_logits(x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_slicewise_wrapper_is_unwrapped():
    slicewise = pytest.importorskip("medseg.networks").SliceWise
    net = _net2d()
    wrapped = slicewise(net, axis=-2, slice_batch=2).eval()
    x = torch.randn(1, 1, 6, 5, 4)
    with torch.no_grad():
        expected = wrapped(x)
    predictor = Predictor(wrapped, memory_format="contiguous")
    assert predictor.slice_axis == 3  # -2 of a 5D tensor
    torch.testing.assert_close(predictor.predict_logits(x), expected, rtol=1e-5, atol=1e-5)


def test_tta_averages_logits_over_flips():
    net = _net2d()
    x = torch.randn(1, 1, 9, 11)
    flips = [(), (1,)]
    with torch.no_grad():
        expected = (net(x) + net(x.flip(3)).flip(3)) / 2
    out = Predictor(net, tta=flips, memory_format="contiguous").predict_logits(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert len(tta_flips(3)) == 8
    assert tta_flips(3)[-1] == (0, 1, 2)


def test_tta_true_uses_all_flip_combinations_and_keeps_an_equivariant_net_unchanged(threshold_net):
    net = threshold_net()  # a 1x1 convolution commutes with flips
    x = torch.rand(1, 1, 8, 6)
    plain = Predictor(threshold_net()).predict_proba(x)
    tta = Predictor(net, tta=True)
    assert tta.flips == [(), (0,), (1,), (0, 1)]
    torch.testing.assert_close(tta.predict_proba(x), plain)


def test_multiscale_averages_probabilities(threshold_net):
    # A 1x1 network on a constant image gives the same probabilities at every scale.
    x = torch.full((1, 1, 16, 12), 0.7)
    single = Predictor(threshold_net(), scales=(1.0,)).predict_proba(x)
    multi = Predictor(threshold_net(), scales=(0.5, 1.0, 1.5)).predict_proba(x)
    torch.testing.assert_close(multi, single)
    torch.testing.assert_close(single.sum(1), torch.ones(1, 16, 12))


def test_labels_and_sigmoid(threshold_net):
    x = torch.tensor([[[[0.2, 0.8], [0.9, 0.1]]]])
    labels = Predictor(threshold_net()).predict_labels(x)
    assert labels.dtype == torch.uint8
    assert labels[0, 0].tolist() == [[0, 1], [1, 0]]
    binary = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        binary.weight.fill_(10.0)
        binary.bias.fill_(-5.0)  # sigmoid(10x - 5) >= 0.5 iff x >= 0.5
    assert Predictor(binary, activation="sigmoid").predict_labels(x)[0, 0].tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="activation='sigmoid'"):
        Predictor(binary).predict_proba(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"overlap": 1.5}, "overlap"),
        ({"sw_batch_size": 0}, "sw_batch_size"),
        ({"tta": [[5]]}, "tta must be"),
        ({"scales": [0.0]}, "scales must be"),
        ({"activation": "relu"}, "activation must be"),
        ({"amp": "fp8"}, "amp must be"),
        ({"amp": "fp16"}, "needs a CUDA device"),
        ({"roi_size": [8, 8, 8]}, "roi_size must have 2 entries"),
        ({"slice_axis": 1}, "slice_axis must be"),
        ({"memory_format": "nhwc"}, "memory_format must be"),
        ({"mode": "linear"}, "mode must be"),
        ({"padding_mode": "wrap"}, "padding_mode must be"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Predictor(_net2d(), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_device_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        Predictor(_net2d(), device="cuda")


def test_wrong_channel_count_and_dims_are_refused():
    predictor = Predictor(_net2d(in_channels=3))
    with pytest.raises(ValueError, match=r"1 channel.*expects 3"):
        predictor.predict_logits(torch.zeros(1, 1, 8, 8))
    net3d = nn.Conv3d(1, 2, 1)
    with pytest.raises(ValueError, match="a 3D network needs a volume"):
        Predictor(net3d).predict_logits(torch.zeros(1, 1, 8, 8))


def test_3d_network_on_volume():
    torch.manual_seed(0)
    net = nn.Conv3d(1, 2, 3, padding=1)
    x = torch.randn(1, 1, 10, 9, 8)
    with torch.no_grad():
        ref = sliding_window_inference(x, (6, 6, 6), 2, net, 0.5, "gaussian")
    out = Predictor(net, roi_size=(6, 6, 6), sw_batch_size=2).predict_logits(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["plain", "model-key", "dataparallel"])
def test_load_weights_forms(tmp_path, form):
    source = _net2d(seed=1)
    state = source.state_dict()
    if form == "model-key":
        obj: object = {"model": state, "epoch": 3}
    elif form == "dataparallel":
        obj = {f"module.{k}": v for k, v in state.items()}
    else:
        obj = state
    torch.save(obj, tmp_path / "model.pt")
    target = load_weights(_net2d(seed=2), tmp_path / "model.pt")
    for key, value in target.state_dict().items():
        assert torch.equal(value, state[key])


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.pt: no such file"):
        Predictor(_net2d(), checkpoint=tmp_path / "model.pt")
    torch.save(_net2d(classes=5).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: its weights do not fit"):
        Predictor(_net2d(), checkpoint=tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt: cannot be read"):
        load_weights(_net2d(), tmp_path / "junk.pt")


# ---------------------------------------------------------------------------------------------- blending (MONAI's)
BLEND_CASES = [
    # (input shape, roi, overlap, sw_batch_size)
    ((2, 2, 21, 17), (8, 8), 0.5, 3),  # 2D, odd sizes, windows from two images mixed in one batch
    ((1, 1, 5, 30), (8, 8), 0.25, 4),  # input smaller than the window along one axis: padded, then cropped
    ((1, 2, 13, 11, 9), (6, 5, 4), 0.5, 5),  # 3D, anisotropic window
    ((1, 1, 16, 16, 6), (8, 8, 8), 0.0, 2),  # no overlap along two axes, padding along the third
]


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "batch"), BLEND_CASES, ids=["2d-odd", "2d-pad", "3d", "3d-no-overlap"]
)
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_blending_matches_monai_sliding_window(shape, roi, overlap, batch, mode):
    # The predictor calls MONAI's sliding_window_inference with a cached importance map: the reference is MONAI
    # called directly (which builds its own map), so this checks the map and the settings that are passed on.
    torch.manual_seed(0)
    conv = nn.Conv2d if len(shape) == 4 else nn.Conv3d
    net = conv(shape[1], 3, 3, padding=1)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = sliding_window_inference(x, roi, batch, net, overlap=overlap, mode=mode)
    predictor = Predictor(
        net, roi_size=roi, overlap=overlap, sw_batch_size=batch, mode=mode, memory_format="contiguous", device="cpu"
    )
    out = predictor.predict_logits(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_whole_image_window_returns_the_network_output():
    # One window covering the image: MONAI multiplies by the Gaussian weight w and divides by the same w, so the
    # output is the network's up to float32 rounding (2 roundings, ~1e-7 relative). The network itself runs on
    # batches of 2 here and of 5 in the reference, and oneDNN may pick another convolution algorithm for each,
    # which changes the summation order: hence a tolerance, not bit equality (1e-5, as MONAI's own tests use).
    torch.manual_seed(1)
    net = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(5, 1, 12, 10)
    out = Predictor(net, roi_size=None, sw_batch_size=2, memory_format="contiguous", device="cpu").predict_logits(x)
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("roi", [(8, 8), (5, 12), (6, 5, 4)])
def test_gaussian_weights_are_monais_and_cached(roi):
    from monai.data.utils import compute_importance_map

    from medseg.inference import gaussian_weights

    weights = gaussian_weights(roi)
    torch.testing.assert_close(weights, compute_importance_map(roi, mode="gaussian", sigma_scale=0.125), rtol=0, atol=0)
    assert gaussian_weights(roi) is weights  # built once per window size
    assert torch.equal(gaussian_weights(roi, "constant"), torch.ones(roi))


def test_output_is_stitched_on_the_stitch_device():
    x = torch.rand(1, 1, 9, 9)
    predictor = Predictor(nn.Conv2d(1, 2, 1), roi_size=(4, 4), device="cpu", stitch_device="cpu")
    out = predictor.predict_logits(x)
    assert out.device.type == "cpu"
    assert out.dtype == torch.float32
