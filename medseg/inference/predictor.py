"""The :class:`Predictor`: a network plus every inference setting, configured once, then applied per tensor.

It turns preprocessed images ``(B, C, *spatial)`` into blended logits, class probabilities or label maps, with

* Gaussian-blended sliding windows through MONAI's :func:`monai.inferers.sliding_window_inference`, given a
  cached importance map (``roi_weight_map``) so it is not rebuilt per call;
* a 2D network on 3D volumes: the volume's slices become a batch of 2D images, so whole slices (or 2D windows
  of them) from several slices go through the network together, and the logits are stitched back;
* channels-last memory for 2D networks (oneDNN/cuDNN convolutions then run without layout reorders);
* test-time augmentation by flips (logits averaged over the flipped copies, as nnU-Net does) and optional
  multi-scale prediction (probabilities averaged over rescaled copies);
* devices: ``auto`` (CUDA, else MPS, else CPU), windows on ``device``, the stitched output on
  ``stitch_device`` (CPU when a GPU would not hold a large volume's output), mixed precision (bf16/fp16) on
  CUDA by default.

Where the speed comes from (``medseg bench infer``, CPU, coplenet_small, paired runs, ratios of median times):
slice batching and channels-last memory, 0.65-0.85x the time of MONAI called slice by slice with a contiguous
network. medseg's own window and blending code, measured against MONAI's given the same batching, memory format
and Gaussian, was level with it (0.95-1.10x over four cases), so it was removed in favour of MONAI's. The other
gain on a CPU is the engine (``engine=``, :mod:`medseg.inference.engines`).

References:
    Isensee et al., "nnU-Net", Nature Methods 18, 2021, doi:10.1038/s41592-020-01008-z (Gaussian blending,
    mirroring test-time augmentation).
    Yu, Li, Xu, Gao, Luo, Zhang, "Distribution-aware Margin Calibration for Semantic Segmentation in Images",
    IJCV 2021 (flipping and multi-scale prediction at test time, Sec. 5).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medseg.inference.devices import resolve_device
from medseg.inference.engines import Engine, build_engine
from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["Predictor", "gaussian_weights", "load_weights", "tta_flips"]

Activation = Literal["softmax", "sigmoid"]
BlendMode = Literal["gaussian", "constant"]
MemoryFormat = Literal["auto", "channels_last", "contiguous"]
_AMP = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def tta_flips(spatial_dims: int) -> list[tuple[int, ...]]:
    """Every combination of flips over ``spatial_dims`` axes (``2**spatial_dims`` of them, identity first).

    Example:
        >>> tta_flips(2)
        [(), (0,), (1,), (0, 1)]
    """
    axes = range(spatial_dims)
    return [c for n in range(spatial_dims + 1) for c in itertools.combinations(axes, n)]


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in ("model", "network", "network_def", "net", "state_dict", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    raise ValueError(
        f"checkpoint {path}: no network weights found (keys: {sorted(obj)[:8]}); expected a state dict or a "
        "dict holding one under 'model', 'network' or 'state_dict'"
    )


def load_weights(network: nn.Module, checkpoint: PathLike, *, strict: bool = True) -> nn.Module:
    """Load a checkpoint into ``network`` (in place) and return it.

    Accepts a plain state dict (``models/model.pt`` of a MONAI bundle), a MONAI ``CheckpointSaver`` file
    (``{"model": state_dict, "optimizer": ...}``), DataParallel ``module.`` prefixes, and 2D weights for a
    :class:`~medseg.networks.SliceWise` wrapper.

    Args:
        network: the network to fill.
        checkpoint: path of the ``.pt``/``.pth`` file.
        strict: require the keys to match exactly.

    Returns:
        ``network``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a readable checkpoint or its weights do not fit the network.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path}: no such file; trained weights are needed (a bundle keeps them in "
            "models/model.pt: train it first, or pass another checkpoint with --ckpt FILE)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        detail = " ".join(str(err).split())[:200]
        raise ValueError(f"checkpoint {path}: cannot be read by torch.load ({type(err).__name__}: {detail})") from err
    state = _unwrap_state_dict(obj, path)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    target = network
    inner = getattr(network, "network", None)
    if isinstance(inner, nn.Module) and not any(k.startswith("network.") for k in state):
        target = inner  # 2D weights for a slice-wise wrapper
    try:
        result = target.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise ValueError(
            f"checkpoint {path}: its weights do not fit {type(network).__name__} ({' '.join(lines)[:400]}); "
            "check that network_def matches the trained network"
        ) from err
    if result.missing_keys or result.unexpected_keys:
        logger.warning(
            "checkpoint %s: %d missing and %d unexpected keys (strict=False)",
            path,
            len(result.missing_keys),
            len(result.unexpected_keys),
        )
    logger.info("loaded weights from %s", path)
    return network


def _network_dims(network: nn.Module) -> int | None:
    dims = getattr(network, "spatial_dims", None)
    if isinstance(dims, int) and not isinstance(dims, bool):
        return dims
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return 2
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            return 3
    return None


def _network_in_channels(network: nn.Module) -> int | None:
    dims = getattr(network, "in_channels", None)
    if isinstance(dims, int) and not isinstance(dims, bool):
        return dims
    for module in network.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return None


_WEIGHTS_MAX_ENTRIES = 8
_weights_cache: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()


def gaussian_weights(
    roi_size: Sequence[int],
    mode: BlendMode = "gaussian",
    sigma_scale: Sequence[float] | float = 0.125,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    r"""MONAI's window importance map (``compute_importance_map``), cached per window size, mode, σ and device.

    .. math::
        w(\mathbf{x}) = \max\Big(\prod_d \exp\big(-\tfrac{(x_d - c_d)^2}{2\sigma_d^2}\big),\ w_{min}\Big),
        \qquad \sigma_d = s_d \cdot r_d,

    with :math:`w_{min} = \max(\min_\mathbf{x} w, 10^{-3})`; ones for ``mode="constant"``.

    Returns:
        A float32 tensor of shape ``roi_size`` (shared through the cache: do not modify it in place).

    Example:
        >>> gaussian_weights((4, 4)).shape
        torch.Size([4, 4])
    """
    from monai.data.utils import compute_importance_map

    roi = tuple(int(r) for r in roi_size)
    sig = tuple(float(v) for v in sigma_scale) if isinstance(sigma_scale, Sequence) else float(sigma_scale)
    key = (roi, mode, sig, str(torch.device(device)))
    cached = _weights_cache.get(key)
    if cached is None:
        cached = compute_importance_map(roi, mode=mode, sigma_scale=sigma_scale, device=device, dtype=torch.float32)
        _weights_cache[key] = cached
        while len(_weights_cache) > _WEIGHTS_MAX_ENTRIES:
            _weights_cache.popitem(last=False)
    else:
        _weights_cache.move_to_end(key)
    return cached


def _check_overlap(overlap: Sequence[float] | float, nd: int) -> tuple[float, ...]:
    ov = tuple(float(o) for o in overlap) if isinstance(overlap, Sequence) else (float(overlap),) * nd
    if len(ov) != nd or any(not 0.0 <= o < 1.0 for o in ov):
        raise ValueError(
            f"overlap must be in [0, 1), one value or one per spatial dim ({nd}), got {overlap!r}; "
            "0.5 (the default) is what nnU-Net and MONAI bundles use"
        )
    return ov


def _tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


class Predictor:
    """Sliding-window prediction with a network, configured once and applied to any number of images.

    Args:
        network: a segmentation network mapping ``(n, C, *roi)`` to logits ``(n, K, *roi)``. The predictor takes
            it over: it is moved to ``device``, set to ``eval()`` and possibly converted to channels-last
            memory. A :class:`~medseg.networks.SliceWise` wrapper is unwrapped to its 2D network (its axis is
            used as ``slice_axis``), since the predictor batches slices itself.
        roi_size: window size in the network's spatial dims; ``None`` (or non-positive entries) = the whole
            image (slice) along that dim, i.e. no tiling.
        overlap: overlap of neighbouring windows in ``[0, 1)``; default 0.5.
        mode: ``"gaussian"`` (default) or ``"constant"`` blending of overlapping windows.
        sigma_scale: Gaussian σ as a fraction of the window size; default 0.125 (MONAI, nnU-Net).
        sw_batch_size: windows per network call. For a 2D network on a volume whose slices are one window
            each, this is the number of slices per call.
        padding_mode: how inputs smaller than ``roi_size`` are padded (``"constant"``, ``"reflect"``,
            ``"replicate"``, ``"circular"``).
        cval: fill value for constant padding.
        spatial_dims: the network's spatial dims (2 or 3); default: its ``spatial_dims`` attribute, else the
            kind of its first convolution.
        slice_axis: for a 2D network given a 3D volume ``(B, C, S0, S1, S2)``: the tensor axis holding the
            slices, 2..4 or -3..-1 (default -1: the axial axis of a RAS-oriented CT).
        in_channels: expected image channels; default: the network's first convolution. Images with another
            channel count are refused.
        tta: test-time flips. ``False`` (default): none; ``True``: every combination of flips over the
            network's spatial axes (4 passes in 2D, 8 in 3D); or an explicit list of axis tuples such as
            ``[[], [1]]`` (identity and a horizontal flip, the papers' "flipping").
        scales: input rescaling factors for multi-scale prediction; default ``(1.0,)`` (single scale).
        activation: ``"softmax"`` over classes (default) or ``"sigmoid"`` for a 1-channel binary output.
        device: where the network runs: ``"auto"`` (default: CUDA when present, else MPS, else the CPU),
            ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; a device that is not available is refused.
        stitch_device: where the blended output is accumulated; ``None``: ``device`` on CPU, and on CUDA
            the CPU when the output would take more than half of the free GPU memory ("auto").
        amp: mixed precision for the network on CUDA: ``"auto"`` (default: bf16 where supported else fp16 on
            CUDA; off on CPU and MPS), ``None`` (off), ``"bf16"`` or ``"fp16"``. Blending is always in float32.
        memory_format: ``"channels_last"``, ``"contiguous"`` or ``"auto"`` (channels-last for 2D networks,
            which oneDNN/cuDNN run faster without layout reorders; contiguous for 3D).
        checkpoint: weights to load with :func:`load_weights` (e.g. a bundle's ``models/model.pt``).
        strict: strict key matching when loading ``checkpoint``.
        progress: show a bar over window batches.
        engine: what runs the network's forward pass: ``"eager"`` PyTorch (default), ``"compile"``
            (``torch.compile``), ``"onnxruntime"`` or ``"openvino"`` (CPU only; see
            :mod:`medseg.inference.engines`).

    Raises:
        ValueError: for out-of-range settings, a CUDA device without CUDA, a missing or unfit checkpoint
            (``FileNotFoundError`` for a missing file).

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1)
        >>> predictor = Predictor(net, roi_size=(16, 16), sw_batch_size=2)
        >>> volume = torch.rand(1, 1, 20, 24, 5)  # (B, C, H, W, D): 5 slices for the 2D network
        >>> predictor.predict_proba(volume).shape, predictor.predict_labels(volume).shape
        (torch.Size([1, 2, 20, 24, 5]), torch.Size([1, 1, 20, 24, 5]))

    Note:
        Flip TTA averages logits over flips (nnU-Net); multi-scale averages probabilities over scales (the
        usual semantic-segmentation practice); rescaling uses (bi/tri)linear interpolation with
        ``align_corners=False``. For a 2D network on a volume, scales apply in-plane only.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        roi_size: Sequence[int] | int | None = None,
        overlap: Sequence[float] | float = 0.5,
        mode: BlendMode = "gaussian",
        sigma_scale: Sequence[float] | float = 0.125,
        sw_batch_size: int = 4,
        padding_mode: str = "constant",
        cval: float = 0.0,
        spatial_dims: int | None = None,
        slice_axis: int = -1,
        in_channels: int | None = None,
        tta: bool | Sequence[Sequence[int]] = False,
        scales: Sequence[float] = (1.0,),
        activation: Activation = "softmax",
        device: torch.device | str | None = "auto",
        stitch_device: torch.device | str | None = None,
        amp: str | None = "auto",
        memory_format: MemoryFormat = "auto",
        checkpoint: PathLike | None = None,
        strict: bool = True,
        progress: bool = False,
        engine: Engine = "eager",
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        if type(network).__name__ == "SliceWise" and isinstance(getattr(network, "network", None), nn.Module):
            if checkpoint is not None:
                load_weights(network, checkpoint, strict=strict)
                checkpoint = None
            slice_axis = int(getattr(network, "axis", slice_axis))
            network = network.network  # type: ignore[assignment]
        if checkpoint is not None:
            load_weights(network, checkpoint, strict=strict)
        dims = spatial_dims if spatial_dims is not None else _network_dims(network)
        if dims is None and roi_size is not None and not isinstance(roi_size, int):
            dims = len(roi_size)
        if dims not in (2, 3):
            raise ValueError(
                f"spatial_dims must be 2 or 3, got {dims!r}; pass spatial_dims= for a network without a "
                "spatial_dims attribute or convolutions"
            )
        self.spatial_dims: int = dims
        if roi_size is not None and not isinstance(roi_size, int) and len(roi_size) != dims:
            raise ValueError(
                f"roi_size must have {dims} entries for a {dims}D network, got {list(roi_size)}; for a 2D network "
                "on volumes give the in-plane window, e.g. [256, 256]"
            )
        self.roi_size = roi_size if roi_size is None or isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if slice_axis not in (2, 3, 4, -3, -2, -1):
            raise ValueError(f"slice_axis must be one of 2, 3, 4 or -3, -2, -1 (a 5D tensor axis), got {slice_axis!r}")
        self.slice_axis = slice_axis % 5
        self.overlap = _check_overlap(overlap, dims)
        if mode not in ("gaussian", "constant"):
            raise ValueError(f"mode must be 'gaussian' or 'constant' (blending of overlapping windows), got {mode!r}")
        self.mode: BlendMode = mode
        if padding_mode not in ("constant", "reflect", "replicate", "circular"):
            raise ValueError(
                f"padding_mode must be 'constant', 'reflect', 'replicate' or 'circular', got {padding_mode!r}"
            )
        self.sigma_scale = sigma_scale
        if isinstance(sw_batch_size, bool) or not isinstance(sw_batch_size, int) or sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be a positive int, got {sw_batch_size!r}")
        self.sw_batch_size = sw_batch_size
        self.padding_mode = padding_mode
        self.cval = cval
        self.in_channels = in_channels if in_channels is not None else _network_in_channels(network)
        self.flips = self._check_tta(tta, dims)
        self.scales = self._check_scales(scales)
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
        self.activation: Activation = activation
        self.device = resolve_device(device, "device")
        self.stitch_device = None if stitch_device in (None, "auto") else resolve_device(stitch_device, "stitch_device")
        self.amp_dtype = self._check_amp(amp, self.device)
        if memory_format not in ("auto", "channels_last", "contiguous"):
            raise ValueError(f"memory_format must be 'auto', 'channels_last' or 'contiguous', got {memory_format!r}")
        self.memory_format = (
            (torch.channels_last if dims == 2 else torch.contiguous_format)
            if memory_format == "auto"
            else torch.channels_last
            if memory_format == "channels_last"
            else torch.contiguous_format
        )
        if self.memory_format == torch.channels_last and dims == 3:
            self.memory_format = torch.channels_last_3d
        self.progress = progress
        self.network = network.to(self.device).eval()
        if engine in ("onnxruntime", "openvino"):
            self.memory_format = torch.contiguous_format  # the engine picks its own layout
        if self.memory_format != torch.contiguous_format:
            self.network.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.engine = engine
        self.forward = build_engine(self.network, engine, self.device)
        self.out_channels: int | None = None

    # ------------------------------------------------------------------ validation helpers
    @staticmethod
    def _check_tta(tta: bool | Sequence[Sequence[int]] | None, dims: int) -> list[tuple[int, ...]]:
        if tta is None or tta is False:
            return [()]
        if tta is True:
            return tta_flips(dims)
        flips: list[tuple[int, ...]] = []
        try:
            for combo in tta:
                axes = tuple(sorted({int(a) for a in combo}))
                if any(a < 0 or a >= dims for a in axes):
                    raise ValueError
                flips.append(axes)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"tta must be True, False or a list of flip-axis lists with spatial axes 0..{dims - 1}, got {tta!r}; "
                "e.g. [[], [1]] for identity plus a flip of the second spatial axis"
            ) from err
        if not flips:
            raise ValueError(f"tta must list at least one flip (use [[]] for none), got {tta!r}")
        return flips

    @staticmethod
    def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
        try:
            values = tuple(float(s) for s in scales)
        except (TypeError, ValueError) as err:
            raise ValueError(f"scales must be a list of positive numbers, got {scales!r}") from err
        if not values or any(not math.isfinite(s) or s <= 0 for s in values):
            raise ValueError(
                f"scales must be a non-empty list of positive numbers, e.g. [0.75, 1.0, 1.25], got {scales!r}"
            )
        return values

    @staticmethod
    def _check_amp(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
        if amp in (None, False, "none", "off"):
            return None
        if amp is True or amp == "auto":
            if device.type != "cuda":
                return None
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if not isinstance(amp, str) or amp not in _AMP:
            raise ValueError(f"amp must be None, 'auto', 'bf16' or 'fp16', got {amp!r}")
        if device.type != "cuda" and _AMP[amp] == torch.float16:
            raise ValueError("amp='fp16' needs a CUDA device; use amp='auto' (off on CPU) or 'bf16'")
        return _AMP[amp]

    # ------------------------------------------------------------------ core
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _window_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        network, flips, fmt = self.forward, self.flips, self.memory_format

        def run(windows: torch.Tensor) -> torch.Tensor:
            if fmt != torch.contiguous_format:
                windows = windows.contiguous(memory_format=fmt)
            total: torch.Tensor | None = None
            with torch.no_grad(), self._autocast():
                for axes in flips:
                    dims = [a + 2 for a in axes]
                    x = windows.flip(dims) if dims else windows
                    y = network(x).float()
                    y = y.flip(dims) if dims else y
                    total = y if total is None else total.add_(y)
                assert total is not None
                if len(flips) > 1:
                    total.div_(len(flips))
            return total

        return run

    def _stitch_device_for(self, x: torch.Tensor) -> torch.device:
        if self.stitch_device is not None:
            return self.stitch_device
        if self.device.type != "cuda":
            return self.device
        classes = self.out_channels or 8
        need = x.shape[0] * math.prod(x.shape[2:]) * 4 * (2 * classes + 2)
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.device if need < 0.5 * free else torch.device("cpu")

    def _check_input(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image must be a torch.Tensor (B, C, *spatial), got {type(image).__name__}")
        as_tensor = getattr(image, "as_tensor", None)
        image = as_tensor() if callable(as_tensor) else image  # MetaTensor -> plain tensor (no per-op meta)
        nd = image.ndim - 2
        if nd not in (2, 3) or (nd == 2 and self.spatial_dims == 3):
            raise ValueError(
                f"image must be (B, C, H, W) or (B, C, H, W, D) for a {self.spatial_dims}D network, got shape "
                f"{tuple(image.shape)}" + ("; a 3D network needs a volume" if nd == 2 else "")
            )
        if self.in_channels is not None and image.shape[1] != self.in_channels:
            raise ValueError(
                f"image has {image.shape[1]} channel(s), the network expects {self.in_channels} (shape "
                f"{tuple(image.shape)}); convert the input (e.g. RGB -> grayscale) or use a matching model"
            )
        if not image.is_floating_point():
            image = image.float()
        return image

    def _network_layout(self, image: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The input as the network sees it, plus a function mapping outputs back to the image layout."""
        if image.ndim - 2 == self.spatial_dims:
            return image, lambda y: y
        # 2D network, 3D image: slices along ``slice_axis`` become the batch.
        b, c = image.shape[:2]
        axis = self.slice_axis
        moved = image.movedim(axis, 1)  # (B, D, C, s, s)
        depth = moved.shape[1]
        plane = moved.shape[3:]
        slices = moved.reshape(b * depth, c, *plane)

        def back(y: torch.Tensor) -> torch.Tensor:
            k = y.shape[1]
            return y.reshape(b, depth, k, *plane).movedim(1, axis).contiguous()

        return slices, back

    def _roi_for(self, image_size: Sequence[int]) -> tuple[int, ...]:
        nd = len(image_size)
        sizes: list[int | None] = (
            [None] * nd
            if self.roi_size is None
            else [self.roi_size] * nd
            if isinstance(self.roi_size, int)
            else list(self.roi_size)
        )
        return tuple(int(r) if r is not None and int(r) > 0 else int(d) for r, d in zip(sizes, image_size, strict=True))

    def _blend(self, x: torch.Tensor) -> torch.Tensor:
        from monai.inferers.utils import sliding_window_inference

        roi = self._roi_for(x.shape[2:])
        out = sliding_window_inference(
            x,
            roi,
            self.sw_batch_size,
            self._window_fn(),
            overlap=self.overlap,
            mode=self.mode,
            sigma_scale=self.sigma_scale,
            padding_mode=self.padding_mode,
            cval=self.cval,
            sw_device=self.device,
            device=self._stitch_device_for(x),
            progress=self.progress,
            roi_weight_map=gaussian_weights(roi, self.mode, self.sigma_scale, self.device),
        )
        assert isinstance(out, torch.Tensor)  # one tensor in, one tensor out
        self.out_channels = int(out.shape[1])
        return out

    def _rescaled(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        size = [max(1, round(s * scale)) for s in x.shape[2:]]
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        return F.interpolate(x, size=size, mode=mode, align_corners=False)

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return logits.sigmoid_()
        if logits.shape[1] < 2:
            raise ValueError(
                f"softmax needs at least 2 output channels, the network gives {logits.shape[1]}; use "
                "activation='sigmoid' for a single-channel binary network"
            )
        return torch.softmax(logits, dim=1)

    @torch.no_grad()
    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Blended logits at scale 1 (flip-averaged if ``tta``).

        Shape:
            ``(B, C, *spatial)`` -> ``(B, K, *spatial)`` float32 on the stitching device.
        """
        image = self._check_input(image)
        x, back = self._network_layout(image)
        return back(self._blend(x))

    @torch.no_grad()
    def predict_proba(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax, or sigmoid for a binary 1-channel network), averaged over ``scales``.

        Shape:
            ``(B, C, *spatial)`` -> ``(B, K, *spatial)`` float32 on the stitching device.
        """
        image = self._check_input(image)
        x, back = self._network_layout(image)
        total: torch.Tensor | None = None
        for scale in self.scales:
            if scale == 1.0:
                logits = self._blend(x)
            else:
                logits = self._blend(self._rescaled(x, scale))
                logits = F.interpolate(
                    logits, size=list(x.shape[2:]), mode="bilinear" if x.ndim == 4 else "trilinear", align_corners=False
                )
            probs = self._activate(logits)
            total = probs if total is None else total.add_(probs.to(total.device))
        assert total is not None
        if len(self.scales) > 1:
            total.div_(len(self.scales))
        return back(total)

    def labels_from_proba(self, probs: torch.Tensor) -> torch.Tensor:
        """Label map from :meth:`predict_proba` output: argmax over classes (threshold 0.5 for sigmoid, K = 1).

        Shape:
            ``(B, K, *spatial)`` -> ``(B, 1, *spatial)`` uint8 (int64 above 256 classes).
        """
        if self.activation == "sigmoid" and probs.shape[1] == 1:
            return (probs >= 0.5).to(torch.uint8)
        labels = probs.argmax(dim=1, keepdim=True)
        return labels.to(torch.uint8) if probs.shape[1] <= 256 else labels

    def predict_labels(self, image: torch.Tensor) -> torch.Tensor:
        """Label map ``(B, 1, *spatial)`` (see :meth:`labels_from_proba`)."""
        return self.labels_from_proba(self.predict_proba(image))

    __call__ = predict_proba

    def fingerprint(self) -> str:
        """SHA-256 of what decides the output: the network's class and weights and the prediction settings.

        The device, stitching device, mixed precision and progress bar are left out: they change how the
        result is computed, not which result is meant. Used to tell whether a saved mask is stale.
        """
        digest = hashlib.sha256()
        network = self.network
        digest.update(f"{type(network).__module__}.{type(network).__qualname__}".encode())
        for key, value in network.state_dict().items():
            digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
            digest.update(_tensor_bytes(value))
        settings = {
            "spatial_dims": self.spatial_dims,
            "roi_size": self.roi_size,
            "overlap": self.overlap,
            "mode": self.mode,
            "sigma_scale": self.sigma_scale,
            "padding_mode": self.padding_mode,
            "cval": self.cval,
            "slice_axis": self.slice_axis,
            "flips": self.flips,
            "scales": self.scales,
            "activation": self.activation,
        }
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        return digest.hexdigest()
