"""Fit a NeuroIoU surrogate on a CE-trained model (Nagendar et al., BMVC 2018, Sec. 3.1 and Eq. (3)).

The loss and the surrogate network live in :mod:`medseg.losses.neuroiou`; this module holds the training side of
the method: running the CE-trained model over the training data to collect the statistics
(:func:`collect_neuroiou_statistics`), and fitting the surrogate to them with the squared error of Eq. (3)
(:func:`fit_neuroiou_surrogate_on_statistics`, or both steps with :func:`fit_neuroiou_surrogate`). Save the result
with :meth:`~medseg.losses.neuroiou.NeuroIoUSurrogate.save` and fine-tune with ``NeuroIoULoss(surrogate=path)``
(Algorithm 1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.losses._input import as_plain_tensor
from medseg.losses.neuroiou import (
    PAPER_HIDDEN,
    Features,
    NeuroIoUSurrogate,
    Normalize,
    check_fit_data,
    finish_fit,
    neuroiou_statistics,
    random_feature_surrogate,
    seeded,
)

__all__ = ["collect_neuroiou_statistics", "fit_neuroiou_surrogate", "fit_neuroiou_surrogate_on_statistics"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def collect_neuroiou_statistics(
    model: nn.Module,
    data_loader: Iterable[Any],
    *,
    features: Features = "prob3",
    normalize: Normalize = "total",
    include_background: bool = True,
    ignore_index: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
    device: str | torch.device | None = None,
    max_batches: int | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a (CE-trained) model over a data loader and record NeuroIoU's statistics (Sec. 3.1, steps 2-3).

    Args:
        model: the segmentation network; called in eval mode without gradients (its mode is restored after).
        data_loader: yields dicts with ``image_key`` / ``label_key`` (MONAI style) or ``(image, label)`` pairs.
        features: see :func:`neuroiou_statistics`.
        normalize: see :func:`neuroiou_statistics`.
        include_background: keep class 0.
        ignore_index: label value whose pixels are left out.
        image_key: dictionary key of the images.
        label_key: dictionary key of the labels.
        device: where to run; default: the model's device.
        max_batches: stop after this many batches (``None``: all).
        progress: show a tqdm bar.

    Returns:
        ``(x, iou_loss)`` over every (image, class) pair where the IoU is defined, on the CPU.

    Raises:
        ValueError: if the loader yields no usable batch.
    """
    from tqdm.auto import tqdm

    dev = torch.device(device) if device is not None else _module_device(model)
    was_training = model.training
    model.eval()
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    try:
        for i, batch in enumerate(tqdm(data_loader, desc="NeuroIoU statistics", disable=not progress)):
            if max_batches is not None and i >= max_batches:
                break
            image, label = _split_batch(batch, image_key, label_key)
            out = model(as_plain_tensor(image).to(dev))
            if isinstance(out, (list, tuple)):
                out = out[0]
            x, y, defined = neuroiou_statistics(
                as_plain_tensor(out),
                as_plain_tensor(label).to(dev),
                features=features,
                normalize=normalize,
                include_background=include_background,
                ignore_index=ignore_index,
            )
            xs.append(x[defined].cpu())
            ys.append(y[defined].cpu())
    finally:
        model.train(was_training)
    if not xs or sum(t.shape[0] for t in xs) == 0:
        raise ValueError("data_loader gave no (image, class) pair with a defined IoU; check the loader and labels")
    return torch.cat(xs).float(), torch.cat(ys).float()


def _module_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _split_batch(batch: Any, image_key: str, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict):
        if image_key not in batch or label_key not in batch:
            raise ValueError(
                f"batch dict has keys {sorted(batch)}, but image_key={image_key!r} and label_key={label_key!r} "
                "are needed; pass the right keys"
            )
        return batch[image_key], batch[label_key]
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"data_loader must yield dicts or (image, label) pairs, got {type(batch).__name__}")


def fit_neuroiou_surrogate_on_statistics(
    x: torch.Tensor,
    iou_loss: torch.Tensor,
    *,
    features: Features = "prob3",
    normalize: Normalize = "total",
    hidden: Sequence[int] = PAPER_HIDDEN,
    activation: str = "tanh",
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 3e-3,
    ridge: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
) -> NeuroIoUSurrogate:
    """Fit a :class:`NeuroIoUSurrogate` to (statistics, true IoU loss) pairs with the squared error (Eq. (3)).

    The hidden layers start as random features and the output layer as their ridge least-squares fit to the
    targets; Adam then minimises Eq. (3) over all weights for ``steps`` steps. (The paper does not say how it
    fits; the least-squares start makes short fits good and ``steps=0`` exactly reproducible.)

    Args:
        x: surrogate inputs ``(M, F)`` (from :func:`collect_neuroiou_statistics` or
            :func:`sample_neuroiou_statistics`).
        iou_loss: true IoU losses ``(M,)``.
        features: which statistics ``x`` holds (checks F).
        normalize: how they were normalised (recorded in the surrogate).
        hidden: hidden layer widths (the paper: four layers of 100).
        activation: hidden activation.
        steps: Adam steps after the least-squares start, >= 0; 0 keeps the random hidden features and the
            least-squares output layer (a random-feature fit: fast and deterministic).
        batch_size: mini-batch size (the full set if smaller).
        lr: Adam learning rate, with cosine decay to 1 % over ``steps``.
        ridge: ridge penalty of the least-squares output layer (relative to the mean squared feature), > 0.
        seed: seed for the initialisation and the mini-batch order.
        progress: show a tqdm bar.

    Returns:
        The fitted surrogate in eval mode, parameters frozen; ``fit_info`` records the sample count and the final
        root-mean-square error on the fitting data.

    Raises:
        ValueError: for mismatched or non-finite inputs.
    """
    from tqdm.auto import trange

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    xt, yt = check_fit_data(x, iou_loss, features)
    model = random_feature_surrogate(
        xt, yt, features=features, normalize=normalize, hidden=hidden, activation=activation, ridge=ridge, seed=seed
    )
    if steps == 0:
        return model
    model.train()
    model.requires_grad_(True)
    with seeded(seed), torch.enable_grad():
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.01)
        m = xt.shape[0]
        bs = min(batch_size, m)
        perm = torch.randperm(m)
        pos = 0
        for _ in trange(steps, desc="fit NeuroIoU surrogate", disable=not progress):
            if bs == m:
                xb, yb = xt, yt
            else:
                if pos + bs > m:
                    perm, pos = torch.randperm(m), 0
                idx = perm[pos : pos + bs]
                pos += bs
                xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
    finish_fit(model, xt, yt, steps=steps, seed=seed)
    return model


def fit_neuroiou_surrogate(
    model: nn.Module,
    data_loader: Iterable[Any],
    *,
    features: Features = "prob3",
    normalize: Normalize = "total",
    include_background: bool = True,
    ignore_index: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
    device: str | torch.device | None = None,
    max_batches: int | None = None,
    hidden: Sequence[int] = PAPER_HIDDEN,
    activation: str = "tanh",
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> NeuroIoUSurrogate:
    """Fit the surrogate on a CE-trained model's outputs (Sec. 3.1): collect statistics, then fit.

    The arguments are those of :func:`collect_neuroiou_statistics` and
    :func:`fit_neuroiou_surrogate_on_statistics`. Save the result with :meth:`NeuroIoUSurrogate.save` and pass
    the path as ``NeuroIoULoss(surrogate=...)`` to fine-tune (Algorithm 1).

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 1)
        >>> loader = [(torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 1, 8, 8))) for _ in range(2)]
        >>> surrogate = fit_neuroiou_surrogate(net, loader, hidden=(8,), steps=20)
        >>> from medseg.losses import NeuroIoULoss
        >>> loss = NeuroIoULoss(surrogate)
        >>> loss(net(loader[0][0]), loader[0][1]).shape
        torch.Size([])
    """
    x, y = collect_neuroiou_statistics(
        model,
        data_loader,
        features=features,
        normalize=normalize,
        include_background=include_background,
        ignore_index=ignore_index,
        image_key=image_key,
        label_key=label_key,
        device=device,
        max_batches=max_batches,
        progress=progress,
    )
    surrogate = fit_neuroiou_surrogate_on_statistics(
        x,
        y,
        features=features,
        normalize=normalize,
        hidden=hidden,
        activation=activation,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        progress=progress,
    )
    surrogate.fit_info["source"] = "model"
    return surrogate
