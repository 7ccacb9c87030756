"""Run a 2D network on 3D volumes slice by slice, as the COPLE-Net papers do for CT.

A volume ``(B, C, H, W, D)`` in MONAI's spatial order (after RAS orientation the axial slice axis is the last
spatial axis) is cut into ``B·D`` slices ``(C, H, W)``, which go through the 2D network in batches of
``slice_batch``; the logits are stitched back to ``(B, K, H, W, D)``.

MONAI's :class:`monai.inferers.SliceInferer` does the same through a sliding-window inferer. This wrapper is a
plain ``nn.Module`` instead, so it works with any inferer (``SimpleInferer``, ``SlidingWindowInferer`` with 3D
patches), inside a bundle's ``network_def``, and under TorchScript.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["SliceWise"]

_AXES = (-3, -2, -1, 2, 3, 4)


class SliceWise(nn.Module):
    """Apply a 2D segmentation network to every slice of a 3D volume along one spatial axis.

    Args:
        network: a 2D network mapping ``(N, C, H, W)`` to ``(N, K, H, W)``, e.g. ``CopleNet(spatial_dims=2)``.
            It is stored as ``self.network``, so a 2D checkpoint loads into ``wrapper.network`` (the wrapper's
            own state-dict keys carry the ``network.`` prefix).
        axis: the tensor axis of a 5D input ``(B, C, S0, S1, S2)`` that indexes the slices: 2, 3 or 4, or the
            equivalent -3, -2, -1. Default -1, the axial axis of a RAS-oriented CT volume.
        slice_batch: how many slices go through the network at once (bounds the memory used); ``None`` runs
            all ``B·D`` slices in one call. Default 32.

    Shape:
        - input: ``(B, C, S0, S1, S2)``; a 4D ``(B, C, H, W)`` batch of slices is passed to the network as is.
        - output: ``(B, K, S0, S1, S2)`` (or ``(B, K, H, W)``).

    Raises:
        ValueError: for an axis outside {2, 3, 4, -3, -2, -1}, a non-positive ``slice_batch``, or a network
            whose ``spatial_dims`` attribute is not 2.

    Example:
        >>> import torch
        >>> from medseg.networks import CopleNet
        >>> net2d = CopleNet(2, 1, 3, features=(8, 16, 32, 64, 128), norm=("group", {"num_groups": 2}))
        >>> SliceWise(net2d, axis=-1, slice_batch=4).eval()(torch.zeros(1, 1, 32, 16, 5)).shape
        torch.Size([1, 3, 32, 16, 5])

    Note:
        Slices are independent: in eval mode the result equals looping the 2D network over the slices. With
        BatchNorm in training mode the statistics are per chunk of ``slice_batch`` slices; GroupNorm (the
        default of :class:`~medseg.networks.CopleNet`) has no such dependence.
    """

    def __init__(self, network: nn.Module, axis: int = -1, slice_batch: int | None = 32) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must be a torch.nn.Module (a 2D network), got {type(network).__name__}; "
                "pass e.g. medseg.networks.CopleNet(spatial_dims=2)"
            )
        dims = getattr(network, "spatial_dims", 2)
        if dims != 2:
            raise ValueError(
                f"network must be a 2D network, got one with spatial_dims={dims!r}; build it with "
                "spatial_dims=2, or call a 3D network on the volume directly"
            )
        if isinstance(axis, bool) or not isinstance(axis, int) or axis not in _AXES:
            raise ValueError(
                f"axis must be the slice axis of a (B, C, S0, S1, S2) tensor: one of 2, 3, 4 or -3, -2, -1; "
                f"got {axis!r}. Use -1 for the axial axis of a RAS-oriented volume"
            )
        if slice_batch is not None and (
            isinstance(slice_batch, bool) or not isinstance(slice_batch, int) or slice_batch < 1
        ):
            raise ValueError(f"slice_batch must be a positive int or None (all slices at once), got {slice_batch!r}")
        self.network = network
        self.axis: int = axis % 5
        self.slice_batch = slice_batch
        # TorchScript-friendly copy: 0 means "all slices at once".
        self._chunk: int = 0 if slice_batch is None else slice_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment each slice of ``x`` with the 2D network and stack the results.

        Args:
            x: ``(B, C, S0, S1, S2)`` volume, or a ``(B, C, H, W)`` batch of slices.

        Returns:
            Logits ``(B, K, S0, S1, S2)`` (or ``(B, K, H, W)`` for a 4D input).
        """
        if x.dim() == 4:
            out4: torch.Tensor = self.network(x)
            return out4
        if x.dim() != 5:
            raise ValueError(
                "SliceWise expects a (B, C, S0, S1, S2) volume or a (B, C, H, W) batch of slices, got shape "
                + str(list(x.shape))
            )
        b = x.shape[0]
        moved = x.movedim(self.axis, 1)  # (B, D, C, h, w), the other spatial axes keep their order
        d = moved.shape[1]
        slices = moved.reshape(b * d, moved.shape[2], moved.shape[3], moved.shape[4])
        n = slices.shape[0]
        step = n if self._chunk == 0 else self._chunk
        outs: list[torch.Tensor] = []
        for start in range(0, n, step):
            outs.append(self.network(slices[start : start + step]))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)  # (B·D, K, h, w)
        y = y.reshape(b, d, y.shape[1], y.shape[2], y.shape[3])
        return y.movedim(1, self.axis)
