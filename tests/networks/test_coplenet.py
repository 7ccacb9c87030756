from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import medseg.networks.coplenet as coplenet_module
from medseg.networks import CopleNet, create_network, nearest_valid_sizes
from medseg.networks.coplenet import coplenet, coplenet_small

SMALL = (16, 32, 64, 128, 256)
TINY = (8, 16, 32, 64, 128)  # fastest valid widths; GroupNorm then needs num_groups dividing 4
TINY_NORM = ("group", {"num_groups": 2})


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def expected_params(in_ch: int, out_ch: int, feats: tuple[int, ...], dims: int = 2) -> int:
    """Parameter count written out from the issue's architecture description, layer by layer.

    conv k^d·cin·cout + cout (bias); affine norm 2·C; SE C·C/2 + C/2 + C/2·C + C.
    """

    def conv(cin: int, cout: int, k: int) -> int:
        return k**dims * cin * cout + cout

    def norm(c: int) -> int:
        return 2 * c

    def se(c: int) -> int:
        return c * (c // 2) + c // 2 + (c // 2) * c + c

    def block(cin: int, cout: int) -> int:
        return conv(cin, cout, 3) + norm(cout) + conv(cout, cout, 3) + norm(cout) + se(cout)

    f = feats
    total = block(in_ch, f[0])
    total += sum(block(2 * f[i], 2 * f[i]) for i in range(4))  # down stages, 2C → 2C
    total += conv(f[4], f[4] // 4, 1) + 3 * conv(f[4], f[4] // 4, 3)  # ASPP: 1×1 and three dilated 3×3
    total += conv(f[4], f[4], 1) + norm(f[4])  # ASPP fusion
    total += sum(conv(f[i], f[i] // 2, 1) + norm(f[i] // 2) for i in range(4))  # bridges
    total += sum(conv(f[i + 1], f[i] // 2, 1) + block(f[i], f[i]) for i in range(4))  # up stages
    total += conv(f[0], out_ch, 3)
    return total


# ---------------------------------------------------------------- parameter counts


def test_published_parameter_counts() -> None:
    # 10,521,666 and 2,634,146: the counts stated in issue 3 for in=1, out=2, 2D.
    assert n_params(coplenet()) == 10_521_666
    assert n_params(coplenet_small()) == 2_634_146


@pytest.mark.parametrize("norm", ["batch", ("group", {"num_groups": 8})], ids=["batch", "group8"])
def test_batch_and_group_norm_give_the_same_count(norm: object) -> None:
    assert n_params(coplenet_small(norm=norm)) == 2_634_146


def test_independent_count_formula_matches_2d_and_3d() -> None:
    # The hand formula reproduces the published numbers, then checks the 3D and other-channel variants.
    assert expected_params(1, 2, (32, 64, 128, 256, 512)) == 10_521_666
    assert expected_params(1, 2, SMALL) == 2_634_146
    assert n_params(CopleNet(3, 3, 5, features=TINY, norm=TINY_NORM)) == expected_params(3, 5, TINY, dims=3)


def test_deconv_variant_replaces_conv1x1_with_transposed_conv() -> None:
    # A 2×2 transposed conv (4·cin·cout + cout) instead of the 1×1 conv (cin·cout + cout) in each up stage.
    extra = sum(3 * SMALL[i + 1] * (SMALL[i] // 2) for i in range(4))
    assert n_params(coplenet_small(upsample="deconv")) == 2_634_146 + extra


# ---------------------------------------------------------------- structure


def test_block_layer_order_matches_the_paper() -> None:
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM)
    level2 = net.down[1].block  # dropout 0.3
    assert [name for name, _ in level2.conv1.named_children()] == ["conv", "adn"]
    assert [type(m).__name__ for m in level2.conv1.adn] == ["GroupNorm", "LeakyReLU", "Dropout"]
    assert [type(m).__name__ for m in level2.conv2.adn] == ["GroupNorm", "LeakyReLU"]
    assert level2.conv1.adn.D.p == pytest.approx(0.3)
    assert not hasattr(net.in_block.conv1.adn, "D")  # dropout 0 adds no layer
    assert level2.conv1.adn.A.negative_slope == pytest.approx(0.01)
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    # Squeeze-excitation: LeakyReLU hidden, ReLU out, residual.
    se = level2.se
    assert [type(m).__name__ for m in se.fc] == ["Linear", "LeakyReLU", "Linear", "ReLU"]
    assert se.add_residual


@pytest.mark.parametrize(
    ("norm", "present", "absent"),
    [
        (("group", {"num_groups": 2}), nn.GroupNorm, nn.modules.batchnorm._BatchNorm),
        ("batch", nn.BatchNorm2d, nn.GroupNorm),
        ("instance", nn.InstanceNorm2d, nn.modules.batchnorm._BatchNorm),
    ],
    ids=["group", "batch", "instance"],
)
def test_norm_choice(norm: object, present: type, absent: type) -> None:
    net = CopleNet(2, 1, 2, features=TINY, norm=norm)
    kinds = [type(m) for m in net.modules()]
    # 9 blocks × 2 convs + 4 bridges + ASPP = 23 normalisation layers.
    assert sum(issubclass(k, present) for k in kinds) == 23
    assert not any(issubclass(k, absent) for k in kinds)


def test_default_is_group_norm_with_four_groups() -> None:
    groups = [m for m in coplenet_small().modules() if isinstance(m, nn.GroupNorm)]
    assert len(groups) == 23
    assert {g.num_groups for g in groups} == {4}


# ---------------------------------------------------------------- shapes and gradients


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("out_channels", [2, 5])
@pytest.mark.parametrize(("dims", "size"), [(2, (32, 48)), (3, (16, 16, 32))], ids=["2d", "3d"])
def test_output_shape(dims: int, size: tuple[int, ...], in_channels: int, out_channels: int) -> None:
    net = CopleNet(dims, in_channels, out_channels, features=TINY, norm=TINY_NORM).eval()
    with torch.no_grad():
        out = net(torch.randn(2, in_channels, *size))
    assert out.shape == (2, out_channels, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("dims", "upsample", "size"),
    [(2, "bilinear", (32, 32)), (2, "deconv", (32, 32)), (3, "trilinear", (16, 16, 16)), (3, "deconv", (16,) * 3)],
    ids=["2d-bilinear", "2d-deconv", "3d-trilinear", "3d-deconv"],
)
def test_every_parameter_gets_a_gradient(dims: int, upsample: str, size: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = CopleNet(dims, 1, 3, features=TINY, norm=TINY_NORM, upsample=upsample).train()
    net(torch.randn(2, 1, *size)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout() -> None:
    torch.manual_seed(0)
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM)
    x = torch.randn(1, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # positive control: dropout 0.3-0.5 is active


def test_linear_upsampling_uses_align_corners() -> None:
    net = CopleNet(3, 1, 2, features=TINY, norm=TINY_NORM)
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 4
    assert all(u.mode == "trilinear" and u.align_corners for u in ups)


# ---------------------------------------------------------------- gradient checkpointing


def test_checkpointing_gives_identical_outputs_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = coplenet_module.checkpoint

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(coplenet_module, "checkpoint", counting)
    torch.manual_seed(1)
    plain = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM).train()
    ckpt = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM, gradient_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 32, 32)
    results = []
    for net in (plain, ckpt):
        torch.manual_seed(123)  # same dropout masks in both (train mode, dropout active)
        out = net(x)
        out.square().mean().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    assert len(calls) == 9  # every block was checkpointed: input, 4 down, 4 up
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], rtol=1e-6, atol=1e-7, msg=name)


def test_checkpointing_is_inactive_in_eval_and_switchable(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(coplenet_module, "checkpoint", lambda *a, **k: calls.append(1))
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM, gradient_checkpointing=True).eval()
    net(torch.randn(1, 1, 32, 32))
    assert calls == []
    net.set_gradient_checkpointing(False)
    net.train()(torch.randn(1, 1, 32, 32))
    assert calls == []


# ---------------------------------------------------------------- spatial size


@pytest.mark.parametrize(
    ("dims", "shape", "fragments"),
    [
        (2, (1, 1, 30, 32), ["multiple of 16", "[30, 32]", "axis 0 has 30 (nearest valid: 16 or 32)"]),
        (2, (1, 1, 32, 8), ["axis 1 has 8 (nearest valid: 16)"]),
        (3, (1, 1, 16, 16, 20), ["axis 2 has 20 (nearest valid: 16 or 32)"]),
    ],
    ids=["2d-30", "2d-8", "3d-20"],
)
def test_size_error_names_the_multiple_and_nearest_sizes(
    dims: int, shape: tuple[int, ...], fragments: list[str]
) -> None:
    net = CopleNet(dims, 1, 2, features=TINY, norm=TINY_NORM)
    with pytest.raises(ValueError, match="pad_to_multiple=True") as info:
        net(torch.zeros(shape))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_wrong_channels_or_rank_raise_with_both_shapes() -> None:
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM)
    with pytest.raises(ValueError, match=r"\(B, 1, S, S\), got \[1, 3, 32, 32\]"):
        net(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got \[1, 1, 32, 32, 32\]"):
        net(torch.zeros(1, 1, 32, 32, 32))


@pytest.mark.parametrize("size", [(30, 21), (32, 17), (32, 32)], ids=["30x21", "32x17", "valid"])
def test_pad_to_multiple_equals_manual_pad_and_crop(size: tuple[int, int]) -> None:
    torch.manual_seed(2)
    padded_net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM, pad_to_multiple=True).eval()
    plain_net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM).eval()
    plain_net.load_state_dict(padded_net.state_dict())
    x = torch.randn(1, 1, *size)
    # Independent reference: zero-pad symmetrically (extra voxel after) to the next multiple of 16, crop back.
    h, w = size
    ph, pw = (-h) % 16, (-w) % 16
    xp = torch.zeros(1, 1, h + ph, w + pw)
    xp[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w] = x
    with torch.no_grad():
        expected = plain_net(xp)[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        got = padded_net(x)
    assert got.shape == (1, 2, h, w)
    torch.testing.assert_close(got, expected)


def test_nearest_valid_sizes() -> None:
    assert nearest_valid_sizes(30) == [16, 32]
    assert nearest_valid_sizes(1) == [16]
    assert nearest_valid_sizes(48) == [48]
    assert nearest_valid_sizes(50, multiple=8) == [48, 56]


# ---------------------------------------------------------------- construction checks


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"spatial_dims": 4}, ValueError, "spatial_dims must be 2 or 3"),
        ({"in_channels": 0}, ValueError, "in_channels must be a positive int"),
        ({"out_channels": 2.0}, ValueError, "out_channels must be a positive int"),
        ({"features": (16, 32, 64, 128)}, ValueError, "features must be 5 positive ints"),
        ({"features": (16, 32, 48, 128, 256)}, ValueError, "double at every level"),
        ({"features": 32}, TypeError, "features must be a sequence"),
        ({"dropout": (0, 0, 0.3, 0.4, 1.0)}, ValueError, r"dropout must be 5 rates in \[0, 1\)"),
        ({"dropout": (0, 0, 0.3)}, ValueError, "dropout must be 5 rates"),
        ({"norm": "layernorm2"}, ValueError, "norm='layernorm2' cannot be built"),
        ({"norm": ("group", {"num_groups": 3})}, ValueError, "norm=.*cannot be built"),
        ({"norm": 5}, TypeError, "norm must be a layer name"),
        ({"act": ("leakyrelu", {"slope": 0.1})}, ValueError, "act=.*cannot be built"),
        ({"upsample": "nearest"}, ValueError, "upsample must be"),
        ({"upsample": "trilinear"}, ValueError, "needs spatial_dims=3"),
        ({"pad_to_multiple": 1}, TypeError, "pad_to_multiple must be a bool"),
    ],
    ids=lambda v: str(v)[:30] if not isinstance(v, type) else v.__name__,
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args = {"features": SMALL} | kwargs
    with pytest.raises(error, match=match):
        CopleNet(**args)  # type: ignore[arg-type]


def test_json_config_builds_the_network() -> None:
    # What a bundle's network_def gives: lists instead of tuples, everything JSON.
    config = json.loads(
        '{"name": "coplenet_small", "spatial_dims": 2, "in_channels": 3, "out_channels": 4,'
        ' "dropout": [0, 0, 0.1, 0.2, 0.3], "norm": ["group", {"num_groups": 8}],'
        ' "act": ["leakyrelu", {"negative_slope": 0.02}], "upsample": "deconv",'
        ' "gradient_checkpointing": true, "pad_to_multiple": true}'
    )
    net = create_network(**config)
    assert isinstance(net, CopleNet)
    assert {m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)} == {8}
    assert net.features == SMALL
    assert net.gradient_checkpointing
    assert net.pad_to_multiple
    assert net.eval()(torch.zeros(1, 3, 20, 20)).shape == (1, 4, 20, 20)


def test_presets_reject_features() -> None:
    with pytest.raises(TypeError, match="features"):
        coplenet_small(features=TINY)  # type: ignore[call-arg]


# ---------------------------------------------------------------- TorchScript


# Scripted modules run with optimized_execution(False): the profiling executor's extra warm-up runs cost
# seconds of CPU per call shape and test nothing about our code.


def test_torchscript_script_matches_eager_and_validates() -> None:
    torch.manual_seed(3)
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM, gradient_checkpointing=True).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, 32, 48)
    with torch.jit.optimized_execution(False), torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
        with pytest.raises(torch.jit.Error, match="axis 0 has 30"):
            scripted(torch.zeros(1, 1, 30, 32))
    # Checkpointing is skipped, not broken, inside TorchScript in training mode.
    scripted.train()
    with torch.jit.optimized_execution(False):
        scripted(x).sum().backward()
    assert all(p.grad is not None for p in scripted.parameters())


def test_torchscript_script_pad_to_multiple_3d() -> None:
    net = CopleNet(3, 1, 2, features=TINY, norm=TINY_NORM, pad_to_multiple=True).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 16, 18, 13)
    with torch.jit.optimized_execution(False), torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


def test_torchscript_trace_matches_eager() -> None:
    torch.manual_seed(4)
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM).eval()
    x = torch.randn(1, 1, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trace's deprecation and TracerWarnings from the size check
        traced = torch.jit.trace(net, x, check_trace=False)  # checked below, on a different input
    y = torch.flip(x, (2,))
    with torch.jit.optimized_execution(False), torch.no_grad():
        torch.testing.assert_close(traced(y), net(y))
