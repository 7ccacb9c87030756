"""Shared pieces of the hostile ``predict`` tests: a network whose mask is known, inputs, a tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from torch import nn


def threshold_conv(threshold: float = 0.5, scale: float = 50.0) -> nn.Conv2d:
    """A 1x1 convolution whose 2-class argmax is ``x > threshold`` on the preprocessed [0, 1] intensities.

    logits = (-s·x + s·t, s·x - s·t): class 1 wins iff x > t. After the lung window (W1500/L-650 HU onto
    [0, 1]) and t = 0.5 that is HU > -650; after the 8-bit range [0, 255] it is a pixel value above 127.5.
    """
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-scale, scale]).reshape(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([scale * threshold, -scale * threshold]))
    return conv


def phantom(shape: tuple[int, int, int] = (20, 18, 4)) -> np.ndarray:
    """HU volume: air (-1000) with a soft-tissue box (+40) off-centre; the expected mask is the box."""
    vol = np.full(shape, -1000.0, np.float32)
    vol[4:12, 3:10, 1:3] = 40.0
    return vol


def write_nifti(path: Path, vol: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.5, 1.0]) if affine is None else affine), str(path))
    return path


def gray_png(path: Path, value: int = 220, size: tuple[int, int] = (24, 30), box: bool = True) -> np.ndarray:
    """An 8-bit PNG: dark background (30) with a bright box (``value``) when ``box``; returns the pixels."""
    img = np.full(size, 30, np.uint8)
    if box:
        img[4:14, 6:20] = value
    Image.fromarray(img).save(path)
    return img


def tiny_bundle(root: Path, payload: str | None = None, threshold: float = 0.5) -> Path:
    """A bundle folder (outside medseg, so untrusted) with a 1x1 threshold convolution as its model.

    ``payload``: a ``$`` expression placed where the predictor's device is resolved (code a crafted bundle runs).
    """
    from medseg.checkpoint import save_checkpoint
    from medseg.inference import inference_config

    network = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    config = inference_config(network, predictor={"roi_size": [16, 16], "amp": None}, device="cpu")
    if payload is not None:
        config["device"] = payload
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    # a medseg checkpoint, as training writes them (a bare state dict would add a note that its metadata is missing)
    save_checkpoint(root / "models" / "model.pt", threshold_conv(threshold).state_dict(), {"classes": ["bg", "fg"]})
    return root
