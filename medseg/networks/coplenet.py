"""COPLE-Net: a U-Net variant with max/avg-pool downsampling, squeeze-excitation, bridges and ASPP.

The network of Wang et al. (IEEE TMI 2020), used with GroupNorm by Li, Yu and Zhang (distribution-aware
margin calibration (Li, Yu, Zhang, arXiv:2011.01462)), built here from MONAI blocks so that it is 2D or 3D and
configurable from JSON.

Layout (F = ``features``, default 32, 64, 128, 256, 512)::

    x ── block(in→F0) ─────────────────────────────── bridge(F0→F0/2) ─┐
          └ down(F0→F1) ───────────────────────── bridge(F1→F1/2) ─┐ │
             └ down(F1→F2) ─────────────── bridge(F2→F2/2) ─┐      │ │
                └ down(F2→F3) ────── bridge(F3→F3/2) ─┐     │      │ │
                   └ down(F3→F4) ─ ASPP(F4→F4) ─ up ──┴ up ─┴ up ──┴ up ─ conv3×3(F0→K) ─ logits

References:
    Wang G., Liu X., Li C., Xu Z., Ruan J., Zhu H., Meng T., Li K., Huang N., Zhang S. "A Noise-Robust
    Framework for Automatic Segmentation of COVID-19 Pneumonia Lesions From CT Images." IEEE Transactions on
    Medical Imaging 39(8):2653-2663, 2020. doi:10.1109/TMI.2020.3000314.

    Wu Y., He K. "Group Normalization." ECCV 2018.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.blocks.aspp import SimpleASPP
from monai.networks.blocks.convolutions import Convolution
from monai.networks.blocks.downsample import MaxAvgPool
from monai.networks.blocks.squeeze_and_excitation import ResidualSELayer
from monai.networks.blocks.upsample import UpSample
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn
from torch.utils.checkpoint import checkpoint

from medseg.registry import NETWORKS
from medseg.typing import LayerSpec

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ACT",
    "DEFAULT_DROPOUT",
    "DEFAULT_FEATURES",
    "DEFAULT_NORM",
    "SIZE_MULTIPLE",
    "SMALL_FEATURES",
    "CopleNet",
    "coplenet",
    "coplenet_small",
    "nearest_valid_sizes",
]

#: GroupNorm with 4 groups, as in the margin-calibration paper (small batches).
DEFAULT_NORM: tuple[str, dict[str, Any]] = ("group", {"num_groups": 4})
#: LeakyReLU with PyTorch's default slope, as in the published COPLE-Net.
DEFAULT_ACT: tuple[str, dict[str, Any]] = ("leakyrelu", {"negative_slope": 0.01})
#: Published widths and dropout rates (Wang et al. 2020).
DEFAULT_FEATURES: tuple[int, ...] = (32, 64, 128, 256, 512)
DEFAULT_DROPOUT: tuple[float, ...] = (0.0, 0.0, 0.3, 0.4, 0.5)
#: Half widths, as in the margin-calibration authors' code.
SMALL_FEATURES: tuple[int, ...] = (16, 32, 64, 128, 256)
#: Four 2× poolings: every spatial size must be a multiple of this.
SIZE_MULTIPLE = 16

Upsample = Literal["bilinear", "trilinear", "deconv"]
#: A MONAI layer spec in the form MONAI's blocks are typed for.
Spec = str | tuple[str, dict[str, Any]]


def _dropout_or_none(p: float) -> float | None:
    # MONAI's ADN adds an ``nn.Dropout(p=0)`` layer for ``dropout=0.0``; ``None`` leaves it out entirely.
    return p if p > 0 else None


class _ConvBlock(nn.Module):
    """conv3×3 → norm → act → dropout → conv3×3 → norm → act → residual squeeze-excitation.

    ``Convolution`` with ``adn_ordering="NAD"`` gives exactly conv → norm → act → dropout (MONAI's default
    "NDA" would put dropout before the activation). The squeeze-excitation is MONAI's ``ResidualSELayer``:
    its two ``nn.Linear`` layers on the pooled vector are the published 1×1 convolutions C→C/2→C (same
    weights, same parameter count), hidden activation ``act``, output ReLU, and ``x·f + x``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dropout: float,
        norm: Spec,
        act: Spec,
    ) -> None:
        super().__init__()
        self.conv1 = Convolution(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=3,
            adn_ordering="NAD",
            act=act,
            norm=norm,
            dropout=_dropout_or_none(dropout),
            bias=True,
        )
        self.conv2 = Convolution(
            spatial_dims,
            out_channels,
            out_channels,
            kernel_size=3,
            adn_ordering="NA",
            act=act,
            norm=norm,
            bias=True,
        )
        self.se = ResidualSELayer(spatial_dims, out_channels, r=2, acti_type_1=act, acti_type_2="relu")
        self.checkpoint: bool = False

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.se(self.conv2(self.conv1(x)))
        return out

    @torch.jit.unused
    def _checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        # Non-reentrant checkpointing with the RNG state preserved: the recomputation in backward draws the
        # same dropout masks, so outputs and gradients equal the plain forward.
        out: torch.Tensor = checkpoint(self._plain, x, use_reentrant=False, preserve_rng_state=True)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_checkpoint = self.checkpoint and self.training and torch.is_grad_enabled()
        if use_checkpoint and not torch.jit.is_scripting():  # type: ignore[attr-defined]
            return self._checkpointed(x)
        return self._plain(x)


class _DownStage(nn.Module):
    """Concatenated max- and average-pooling (C → 2C), a block 2C → 2C, plus the concatenation as residual."""

    def __init__(self, spatial_dims: int, in_channels: int, dropout: float, norm: Spec, act: Spec) -> None:
        super().__init__()
        self.pool = MaxAvgPool(spatial_dims, kernel_size=2)
        self.block = _ConvBlock(spatial_dims, 2 * in_channels, 2 * in_channels, dropout, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.pool(x)
        out: torch.Tensor = self.block(pooled) + pooled
        return out


class _UpStage(nn.Module):
    """Deep features → half the skip width, ×2 upsampling, concat with the bridged skip, block, residual.

    ``bilinear``/``trilinear``: MONAI ``UpSample`` in "nontrainable" mode, whose default pre-convolution is
    the published 1×1 conv (with bias) applied *before* interpolating with ``align_corners=True``.
    ``deconv``: a 2×2 (2×2×2) transposed convolution with stride 2 replaces both, as in the authors' code.
    """

    def __init__(
        self,
        spatial_dims: int,
        deep_channels: int,
        skip_channels: int,
        dropout: float,
        norm: Spec,
        act: Spec,
        upsample: str,
    ) -> None:
        super().__init__()
        half = skip_channels // 2
        if upsample == "deconv":
            self.up = UpSample(spatial_dims, deep_channels, half, scale_factor=2, mode="deconv", bias=True)
        else:
            self.up = UpSample(
                spatial_dims,
                deep_channels,
                half,
                scale_factor=2,
                mode="nontrainable",
                pre_conv="default",
                interp_mode="linear",  # MONAI picks bilinear (2D) or trilinear (3D)
                align_corners=True,
                bias=True,
            )
        self.block = _ConvBlock(spatial_dims, skip_channels, skip_channels, dropout, norm, act)

    def forward(self, deep: torch.Tensor, bridged_skip: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([bridged_skip, self.up(deep)], dim=1)
        out: torch.Tensor = self.block(cat) + cat
        return out


def _as_int_tuple(name: str, value: Any, length: int) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError as err:
        raise TypeError(
            f"{name} must be a sequence of {length} positive ints, got {value!r} ({type(value).__name__}); "
            f"pass e.g. {list(DEFAULT_FEATURES)}"
        ) from err
    if len(items) != length or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(f"{name} must be {length} positive ints, got {value!r}; pass e.g. {list(DEFAULT_FEATURES)}")
    return items


def _as_dropout_tuple(value: Any) -> tuple[float, ...]:
    try:
        items = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"dropout must be a sequence of 5 floats in [0, 1), got {value!r} ({type(value).__name__}); "
            f"pass e.g. {list(DEFAULT_DROPOUT)}"
        ) from err
    if len(items) != 5 or not all(0.0 <= p < 1.0 for p in items):
        raise ValueError(
            f"dropout must be 5 rates in [0, 1) (one per resolution level), got {value!r}; "
            f"pass e.g. {list(DEFAULT_DROPOUT)}"
        )
    return items


def _layer_spec(name: str, spec: Any, build: Any) -> Spec:
    """Normalise a name-or-[name, kwargs] spec to MONAI's form and build one layer from it.

    Building once here makes a bad name or kwarg fail at construction with a message naming the argument.
    """
    example = list(DEFAULT_NORM if name == "norm" else DEFAULT_ACT)
    normalised: Spec
    if isinstance(spec, str):
        normalised = spec
    elif isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
        normalised = (spec[0], dict(spec[1]))
    else:
        raise TypeError(
            f"{name} must be a layer name or a [name, kwargs] pair, got {spec!r} ({type(spec).__name__}); "
            f"pass e.g. {name}={example!r}"
        )
    try:
        build(normalised)
    except Exception as err:
        names = "group, batch, instance" if name == "norm" else "leakyrelu, relu, prelu"
        raise ValueError(
            f"{name}={spec!r} cannot be built by MONAI's layer factory ({err}); use a MONAI name such as "
            f"{names} with valid kwargs, e.g. {name}={example!r}"
        ) from err
    return normalised


def nearest_valid_sizes(size: int, multiple: int = SIZE_MULTIPLE) -> list[int]:
    """The positive multiples of ``multiple`` nearest to ``size``: ``[size]`` if valid, else below and above.

    TorchScript-compatible, so the scripted network builds the same error message.

    Example:
        >>> nearest_valid_sizes(100)
        [96, 112]
        >>> nearest_valid_sizes(10)
        [16]
        >>> nearest_valid_sizes(64)
        [64]
    """
    below = (size // multiple) * multiple
    if below == size and size > 0:
        return [size]
    if below <= 0:
        return [multiple]
    return [below, below + multiple]


class CopleNet(nn.Module):
    """COPLE-Net (Wang et al., 2020) in 2D or 3D, with GroupNorm by default.

    Every convolution has a bias. Blocks are conv3×3 → norm → act → dropout → conv3×3 → norm → act →
    residual squeeze-excitation (global average pool, C→C/2, act, C/2→C, ReLU, ``x·f + x``). The input
    block maps ``in_channels → F0`` without residual; four down stages concatenate max- and average-pooling
    and add the concatenation back after their block; the bottleneck is an ASPP (four F4→F4/4 convs, 1×1 and
    3×3 with dilation 2, 4, 6, concatenated, 1×1 conv with bias, norm, act); the four skips go through 1×1
    bridges C→C/2; four up stages reduce the deeper features to half the skip width with a 1×1 conv,
    upsample ×2 (align_corners=True), concatenate with the bridged skip, run a block and add the
    concatenation back; a 3×3 conv gives the logits.

    With the defaults (2D, 1 → 2 channels) the network has 10,521,666 trainable parameters, and 2,634,146
    with ``features=(16, 32, 64, 128, 256)``; BatchNorm and GroupNorm give the same count.

    Args:
        spatial_dims: 2 for slices (the paper's use) or 3 for a true volumetric network.
        in_channels: input channels (1 for CT, 3 for RGB frames).
        out_channels: number of classes K; the output is raw logits.
        features: five widths F0..F4 with F(i+1) = 2·F(i) (the down stages add their 2C-channel pooled input
            back as a residual, so each level must double); F0 must be even. Default (32, 64, 128, 256, 512).
        dropout: five dropout rates in [0, 1), one per resolution level, used by the block of that level on
            the way down and on the way up. Default (0, 0, 0.3, 0.4, 0.5).
        norm: MONAI normalisation spec, a name or ``(name, kwargs)``; ``None`` means the default
            ``("group", {"num_groups": 4})``. ``"batch"`` and ``"instance"`` also work. With GroupNorm,
            ``num_groups`` must divide F0/2 (the narrowest bridge).
        act: MONAI activation spec for every block, bridge, the ASPP and the squeeze-excitation's hidden
            layer; ``None`` means ``("leakyrelu", {"negative_slope": 0.01})``.
        upsample: ``"bilinear"`` (default: 1×1 conv then linear interpolation, i.e. bilinear in 2D and
            trilinear in 3D), ``"trilinear"`` (the same, accepted for ``spatial_dims=3`` only) or ``"deconv"``
            (2× transposed convolution).
        gradient_checkpointing: recompute each block in backward instead of storing its activations (saves
            memory in training; outputs and gradients are unchanged). Inactive in eval mode, without grad
            and in TorchScript. Can be switched later with :meth:`set_gradient_checkpointing`.
        pad_to_multiple: if True, inputs whose spatial size is not a multiple of 16 are zero-padded
            symmetrically to the next multiple and the output is cropped back; if False (default) such
            inputs raise.

    Shape:
        - input: ``(B, in_channels, *spatial)`` with ``len(spatial) == spatial_dims``.
        - output: ``(B, out_channels, *spatial)``.

    Raises:
        ValueError: for an invalid argument (the message names it and the allowed values).
        TypeError: for an argument of the wrong type.

    Example:
        >>> import torch
        >>> net = CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128), norm=("group", {"num_groups": 2}))
        >>> net.eval()(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 2, 32, 32])

    Note:
        Deviations from the published network: ``spatial_dims=3`` (3×3×3 kernels, 2×2×2 pooling, trilinear
        upsampling) is an extension; the published network uses BatchNorm, ours defaults to GroupNorm as the
        margin-calibration paper trained it; the squeeze-excitation uses ``nn.Linear`` on the pooled vector,
        which equals the published 1×1 convolutions. The paper applied the 2D network to 3D volumes slice by
        slice; use :class:`medseg.networks.SliceWise` for that.

    References:
        Wang G. et al. "A Noise-Robust Framework for Automatic Segmentation of COVID-19 Pneumonia Lesions From
        CT Images." IEEE TMI 39(8):2653-2663, 2020. doi:10.1109/TMI.2020.3000314.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = DEFAULT_FEATURES,
        dropout: Sequence[float] = DEFAULT_DROPOUT,
        norm: LayerSpec | None = DEFAULT_NORM,
        act: LayerSpec | None = DEFAULT_ACT,
        upsample: Upsample = "bilinear",
        gradient_checkpointing: bool = False,
        pad_to_multiple: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}; use 2 for slices, 3 for volumes")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
        feats = _as_int_tuple("features", features, 5)
        if any(feats[i + 1] != 2 * feats[i] for i in range(4)) or feats[0] % 2:
            raise ValueError(
                f"features must double at every level (F(i+1) = 2*F(i)) with an even F0, got {list(feats)}; "
                "the down stages add their 2C-channel pooled input back as a residual. "
                "Pass e.g. [32, 64, 128, 256, 512] or [16, 32, 64, 128, 256]"
            )
        drops = _as_dropout_tuple(dropout)
        if upsample not in ("bilinear", "trilinear", "deconv"):
            raise ValueError(f"upsample must be 'bilinear', 'trilinear' or 'deconv', got {upsample!r}")
        if upsample == "trilinear" and spatial_dims != 3:
            raise ValueError(
                f"upsample='trilinear' needs spatial_dims=3, got spatial_dims={spatial_dims}; use 'bilinear'"
            )
        for name, value in (
            ("gradient_checkpointing", gradient_checkpointing),
            ("pad_to_multiple", pad_to_multiple),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
        narrowest = feats[0] // 2  # the first bridge; GroupNorm's num_groups must divide it
        norm_spec = _layer_spec(
            "norm",
            DEFAULT_NORM if norm is None else norm,
            lambda spec: get_norm_layer(name=spec, spatial_dims=spatial_dims, channels=narrowest),
        )
        act_spec = _layer_spec("act", DEFAULT_ACT if act is None else act, get_act_layer)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = feats
        self.pad_to_multiple = pad_to_multiple
        self.size_multiple = SIZE_MULTIPLE
        # the constructor arguments, so that a checkpoint can rebuild this network (medseg.checkpoint)
        self.init_args: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "features": list(feats),
            "dropout": list(drops),
            "norm": norm_spec,
            "act": act_spec,
            "upsample": upsample,
            "pad_to_multiple": pad_to_multiple,
        }

        self.in_block = _ConvBlock(spatial_dims, in_channels, feats[0], drops[0], norm_spec, act_spec)
        self.down = nn.ModuleList(
            _DownStage(spatial_dims, feats[i], drops[i + 1], norm_spec, act_spec) for i in range(4)
        )
        self.bridges = nn.ModuleList(
            Convolution(
                spatial_dims,
                feats[i],
                feats[i] // 2,
                kernel_size=1,
                adn_ordering="NA",
                act=act_spec,
                norm=norm_spec,
            )
            for i in range(4)
        )
        self.aspp = SimpleASPP(
            spatial_dims,
            feats[4],
            feats[4] // 4,
            kernel_sizes=(1, 3, 3, 3),
            dilations=(1, 2, 4, 6),
            norm_type=norm_spec,
            acti_type=act_spec,
            bias=True,
        )
        # up[0] is the deepest: F4 → F3, ..., up[3]: F1 → F0.
        self.up = nn.ModuleList(
            _UpStage(spatial_dims, feats[i + 1], feats[i], drops[i], norm_spec, act_spec, upsample)
            for i in (3, 2, 1, 0)
        )
        self.out_conv = Convolution(spatial_dims, feats[0], out_channels, kernel_size=3, conv_only=True, bias=True)
        self.set_gradient_checkpointing(gradient_checkpointing)

    @torch.jit.ignore
    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Switch activation checkpointing of every block on or off (takes effect in training mode only)."""
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {enabled!r} ({type(enabled).__name__})")
        self.gradient_checkpointing = enabled
        for module in self.modules():
            if isinstance(module, _ConvBlock):
                module.checkpoint = enabled

    def _check_input(self, x: torch.Tensor) -> None:
        # Written with TorchScript-compatible string building so the scripted network validates too.
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            expected = "(B, " + str(self.in_channels) + ", " + ", ".join(["S"] * self.spatial_dims) + ")"
            raise ValueError(
                "CopleNet input must have shape " + expected + ", got " + str(list(x.shape)) + "; check "
                "in_channels and spatial_dims of the network against the data"
            )
        if self.pad_to_multiple:
            return
        bad: list[str] = []
        for axis in range(self.spatial_dims):
            size = x.shape[axis + 2]
            if size % self.size_multiple != 0:
                options = " or ".join([str(v) for v in nearest_valid_sizes(size, self.size_multiple)])
                bad.append("axis " + str(axis) + " has " + str(size) + " (nearest valid: " + options + ")")
        if len(bad) > 0:
            raise ValueError(
                "CopleNet needs every spatial size to be a multiple of "
                + str(self.size_multiple)
                + " (four 2x poolings), got spatial size "
                + str(list(x.shape[2:]))
                + ": "
                + "; ".join(bad)
                + ". Crop, pad or resample the input (e.g. MONAI DivisiblePad(k=16)), "
                "or build the network with pad_to_multiple=True"
            )

    def _forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        h = self.in_block(x)
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.aspp(h)
        bridged: list[torch.Tensor] = []
        for i, bridge in enumerate(self.bridges):
            bridged.append(bridge(skips[i]))
        for j, up in enumerate(self.up):
            h = up(h, bridged[3 - j])
        out: torch.Tensor = self.out_conv(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x``.

        Args:
            x: ``(B, in_channels, *spatial)``; each spatial size a multiple of 16 unless ``pad_to_multiple``.

        Returns:
            Raw logits ``(B, out_channels, *spatial)``.

        Raises:
            ValueError: wrong number of dimensions or channels, or (without ``pad_to_multiple``) a spatial
                size that is not a multiple of 16; the message gives the nearest valid sizes.
        """
        self._check_input(x)
        if not self.pad_to_multiple:
            return self._forward_valid(x)
        sizes: list[int] = []
        pads: list[int] = []  # F.pad order: last axis first, (before, after) pairs
        for axis in range(self.spatial_dims - 1, -1, -1):
            size = x.shape[axis + 2]
            total = (-size) % self.size_multiple
            pads.append(total // 2)
            pads.append(total - total // 2)
        for axis in range(self.spatial_dims):
            sizes.append(x.shape[axis + 2])
        if sum(pads) == 0:
            return self._forward_valid(x)
        out = self._forward_valid(F.pad(x, pads))
        for axis in range(self.spatial_dims):
            before = pads[2 * (self.spatial_dims - 1 - axis)]
            out = out.narrow(axis + 2, before, sizes[axis])
        return out


@NETWORKS.register("coplenet")
def coplenet(
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    dropout: Sequence[float] = DEFAULT_DROPOUT,
    norm: LayerSpec | None = DEFAULT_NORM,
    act: LayerSpec | None = DEFAULT_ACT,
    upsample: Upsample = "bilinear",
    gradient_checkpointing: bool = False,
    pad_to_multiple: bool = False,
) -> CopleNet:
    """COPLE-Net with the published widths 32–512 (10,521,666 parameters in 2D for 1 → 2 channels).

    The arguments are those of :class:`CopleNet`, with ``features`` fixed to (32, 64, 128, 256, 512).

    Example:
        >>> sum(p.numel() for p in coplenet().parameters())
        10521666
    """
    return CopleNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=DEFAULT_FEATURES,
        dropout=dropout,
        norm=norm,
        act=act,
        upsample=upsample,
        gradient_checkpointing=gradient_checkpointing,
        pad_to_multiple=pad_to_multiple,
    )


@NETWORKS.register("coplenet_small")
def coplenet_small(
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    dropout: Sequence[float] = DEFAULT_DROPOUT,
    norm: LayerSpec | None = DEFAULT_NORM,
    act: LayerSpec | None = DEFAULT_ACT,
    upsample: Upsample = "bilinear",
    gradient_checkpointing: bool = False,
    pad_to_multiple: bool = False,
) -> CopleNet:
    """COPLE-Net at half width, 16–256, as in the margin-calibration authors' code (2,634,146 params in 2D).

    The arguments are those of :class:`CopleNet`, with ``features`` fixed to (16, 32, 64, 128, 256).

    Example:
        >>> sum(p.numel() for p in coplenet_small().parameters())
        2634146
    """
    return CopleNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=SMALL_FEATURES,
        dropout=dropout,
        norm=norm,
        act=act,
        upsample=upsample,
        gradient_checkpointing=gradient_checkpointing,
        pad_to_multiple=pad_to_multiple,
    )
