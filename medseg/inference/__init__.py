"""Inference: fast sliding-window prediction and masks written in each input's own geometry.

Pieces:

* :class:`Predictor` (:mod:`~medseg.inference.predictor`): a network plus every inference setting (window size,
  overlap 0.5, Gaussian blending, window batch, flip TTA, multi-scale, device, stitching device, AMP), built once
  and applied to tensors. A 2D network given a 3D volume runs on its slices, batched.
* :func:`sliding_window_predict` (:mod:`~medseg.inference.sliding_window`): the blending core, with MONAI's
  windows and weights and less overhead (``medseg bench infer`` measures both).
* :class:`Preprocessing`: the model's :mod:`medseg.transforms` pipelines per input kind (volumes, 2D images),
  whose spatial steps are undone with MONAI's ``Invertd``.
* :class:`MaskWriter` and :func:`predict_files` / :func:`run_inference`: files in, files out (NIfTI masks with the
  input's header, PNG masks and overlays, overlay videos), atomic, skipping finished outputs.
* :func:`load_bundle` / :func:`predict_with_bundle`: the same from a bundle's ``configs/inference.json``.

Bundle contract: the ids of ``configs/inference.json``
------------------------------------------------------

Required:

``predictor``
    A component ``{"_target_": "medseg.inference.Predictor", ...}`` (a dict, so ``medseg predict`` can override
    its ``device``, ``tta`` and ``checkpoint`` keys). It names the network and its weights::

        "predictor": {
            "_target_": "medseg.inference.Predictor",
            "network": "@network_def",
            "checkpoint": "@ckpt_path",
            "roi_size": [256, 256],
            "overlap": 0.5,
            "sw_batch_size": 8,
            "tta": "@tta",
            "device": "@device"
        }

Conventional ids the predictor refers to (MONAI model-zoo names):

``network_def``
    The network, e.g. ``{"_target_": "medseg.networks.CopleNet", "spatial_dims": 2, ...}``; a 2D network is
    applied slice-wise to volumes (the slice axis is the last one after RAS orientation: axial).
``ckpt_path``
    ``"$@bundle_root + '/models/model.pt'"``: the trained weights (a state dict). A bundle without them
    fails with a one-line error naming the missing file (``medseg predict --ckpt FILE`` points elsewhere).
``device``, ``tta``
    ``"cpu"`` and ``false`` by default; ``medseg predict --device``/``--tta`` override them.

Optional (defaults in brackets):

``preprocessing`` [``medseg.inference.Preprocessing()``: CT volumes with the lung window, 8-bit 1-channel slices]
    ``{"_target_": "medseg.inference.Preprocessing", "volume": ..., "image": ...}`` where each entry is the
    training pipeline without augmentation and labels, e.g.
    ``{"_target_": "medseg.transforms.ct_volume_transforms", "keys": ["image"], "train": false,
    "window": "lung"}`` and ``{"_target_": "medseg.transforms.frame_transforms", "keys": ["image"],
    "train": false, "spatial_size": [256, 320]}``; ``null`` for a kind the model does not take.
``writer`` [``medseg.inference.MaskWriter()``]
    ``{"_target_": "medseg.inference.MaskWriter", "label_colors": [[0, 0, 0], [255, 0, 0]],
    "save_probabilities": false}``.

For ``python -m monai.bundle run --config_file configs/inference.json --bundle_root BUNDLE
--input_paths "['scan.nii.gz']" --output_dir OUT``:

``bundle_root`` (``"."``), ``input_paths`` (``[]``), ``output_dir``, ``overwrite`` (``false``), and
``"imports": ["$import medseg", "$import medseg.inference"]`` (MONAI binds ``import a.b`` to the name
``a.b``, so ``medseg`` itself must be imported too) with::

    "run": "$medseg.inference.run_inference(@input_paths, @output_dir, @predictor,
            preprocessing=@preprocessing, writer=@writer, overwrite=@overwrite)"

:func:`inference_config` writes such a config (used by the tests and as a starting point for bundles).
"""

from __future__ import annotations

from typing import Any

from medseg.inference.api import (
    CasePrediction,
    CaseResult,
    InputCase,
    PredictionReport,
    discover_input,
    predict_case,
    predict_files,
    run_inference,
)
from medseg.inference.bundle import INFERENCE_CONFIG, BundleInference, load_bundle, predict_with_bundle
from medseg.inference.predictor import Predictor, load_weights, tta_flips
from medseg.inference.preprocessing import Preprocessing
from medseg.inference.sliding_window import importance_map, sliding_window_predict
from medseg.inference.writers import DEFAULT_COLORS, MaskWriter

__all__ = [
    "DEFAULT_COLORS",
    "INFERENCE_CONFIG",
    "BundleInference",
    "CasePrediction",
    "CaseResult",
    "InputCase",
    "MaskWriter",
    "PredictionReport",
    "Predictor",
    "Preprocessing",
    "discover_input",
    "importance_map",
    "inference_config",
    "load_bundle",
    "load_weights",
    "predict_case",
    "predict_files",
    "predict_with_bundle",
    "run_inference",
    "sliding_window_predict",
    "tta_flips",
]


def inference_config(
    network_def: dict[str, Any],
    *,
    predictor: dict[str, Any] | None = None,
    preprocessing: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """A complete ``inference.json`` following the contract above.

    Args:
        network_def: the network component.
        predictor: extra :class:`Predictor` arguments (``roi_size``, ``sw_batch_size``, ...).
        preprocessing: the ``preprocessing`` component (default: ``Preprocessing()``'s defaults).
        writer: extra :class:`MaskWriter` arguments.
        device: the default device.

    Returns:
        A JSON-serialisable dict.

    Example:
        >>> cfg = inference_config({"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2,
        ...                         "kernel_size": 3, "padding": 1}, predictor={"roi_size": [64, 64]})
        >>> cfg["predictor"]["roi_size"], cfg["ckpt_path"]
        ([64, 64], "$@bundle_root + '/models/model.pt'")
    """
    return {
        "imports": ["$import medseg", "$import medseg.inference"],
        "bundle_root": ".",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "device": device,
        "tta": False,
        "overwrite": False,
        "input_paths": [],
        "output_dir": "$@bundle_root + '/eval'",
        "network_def": network_def,
        "predictor": {
            "_target_": "medseg.inference.Predictor",
            "network": "@network_def",
            "checkpoint": "@ckpt_path",
            "tta": "@tta",
            "device": "@device",
            **(predictor or {}),
        },
        "preprocessing": preprocessing or {"_target_": "medseg.inference.Preprocessing"},
        "writer": {"_target_": "medseg.inference.MaskWriter", **(writer or {})},
        "run": "$medseg.inference.run_inference(@input_paths, @output_dir, @predictor, "
        "preprocessing=@preprocessing, writer=@writer, overwrite=@overwrite)",
    }
