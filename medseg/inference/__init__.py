"""Inference: sliding-window prediction and masks written in each input's own geometry.

Pieces, one job each:

* :class:`Predictor` (:mod:`~medseg.inference.predictor`): a network plus every inference setting (window size,
  overlap 0.5, Gaussian blending through MONAI's ``sliding_window_inference``, window batch, flip TTA,
  multi-scale, device ``auto``/``cpu``/``cuda[:N]``/``mps``, stitching device, AMP), built once and applied to
  tensors. A 2D network given a 3D volume runs on its slices, batched, in channels-last memory.
* :class:`Preprocessing`: the model's :mod:`medseg.transforms` pipelines per input kind (volumes, 2D images),
  split into reading (files, or arrays in memory) and preparing; spatial steps are undone with MONAI's ``Invertd``.
* :func:`segment` (:mod:`~medseg.inference.segment`): in memory, an array with its affine or a nibabel image in,
  its :class:`Segmentation` out, after the input checks of :mod:`~medseg.inference.checks` (non-finite values,
  intensities far from the model's range).
* :func:`discover_input` (:mod:`~medseg.inference.discovery`): paths -> cases (files, folders of volumes, DICOM
  folders with one or several series, frame folders, videos), and :func:`split_parts` for several processes.
* writers (:mod:`~medseg.inference.writers`): one class per output kind (NIfTI mask, PNG mask, overlay,
  probabilities; register another with :func:`register_writer`) configured by :class:`MaskWriter`.
* :func:`predict_files` / :func:`run_inference` (:mod:`~medseg.inference.api`): files in, files out, atomic, with a
  provenance sidecar per case (:mod:`~medseg.inference.provenance`) so up-to-date cases are skipped and stale ones
  recomputed.
* :func:`load_bundle` / :func:`predict_with_bundle`: the same from a bundle's ``configs/inference.json``; bundles
  from outside medseg run only when trusted.

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
    ``"$@bundle_root + '/models/model.pt'"``: the trained model: a medseg checkpoint (what training writes), a
    ``last.pt``, a bare state dict, a TorchScript or an ONNX file (:func:`medseg.checkpoint.load_model`). A bundle
    without it fails with a one-line error naming the missing file (``medseg predict --ckpt FILE`` points
    elsewhere). What a checkpoint records (network, input size, normalisation, window, class names) wins over
    the ids below unless the caller overrides them (:func:`load_bundle`).
``device``, ``tta``
    ``"auto"`` and ``false`` by default; ``medseg predict --device``/``--tta`` override them
    (``--engine`` sets ``predictor#engine``: ``eager`` unless the bundle says otherwise).

Optional (defaults in brackets):

``preprocessing`` [``medseg.inference.Preprocessing()``: CT volumes with the lung window, 8-bit 1-channel slices]
    ``{"_target_": "medseg.inference.Preprocessing", "volume": ..., "image": ...}`` where each entry is the
    training pipeline without augmentation and labels, e.g.
    ``{"_target_": "medseg.transforms.ct_volume_transforms", "keys": ["image"], "train": false,
    "window": "lung"}`` and ``{"_target_": "medseg.transforms.frame_transforms", "keys": ["image"],
    "train": false, "spatial_size": [256, 320]}``; ``null`` for a kind the model does not take.
``writer`` [``medseg.inference.MaskWriter()``]
    ``{"_target_": "medseg.inference.MaskWriter", "label_colors": [[0, 0, 0], [255, 0, 0]],
    "save_probabilities": false, "class_names": "@class_names"}``.
``class_names``, ``spatial_size``, ``normalization``, ``window``, ``intensity_range``, ``volume_window``
    The ids a checkpoint's metadata sets (see ``ckpt_path``) when the config has them.

MONAI model-zoo ids (what ``ConfigWorkflow(workflow_type="infer").check_properties()``, MONAI Label and MONAI
Deploy look for; the shipped bundles have them): ``dataset_dir``, ``dataset`` (a MONAI ``Dataset`` whose
``transform`` is ``@preprocessing``: a :class:`Preprocessing` is a MONAI ``Compose`` of its primary pipeline),
``inferer`` (``SliceInferer`` for a 2D network on volumes), ``postprocessing`` (activation, ``Invertd`` over
``@preprocessing``, argmax, ``SaveImaged``), ``handlers`` (``CheckpointLoader``) and ``evaluator`` (a
``SupervisedEvaluator``); ``python -m monai.bundle run --run_id evaluate --config_file configs/inference.json
--dataset_dir DIR`` runs it and writes the masks ``medseg predict`` writes.

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

from medseg.inference.api import CaseResult, PredictionReport, predict_files, run_inference
from medseg.inference.bundle import (
    INFERENCE_CONFIG,
    BundleInference,
    UntrustedBundleError,
    is_shipped_bundle,
    load_bundle,
    parse_override,
    predict_with_bundle,
)
from medseg.inference.checks import IntensityReference
from medseg.inference.devices import resolve_device
from medseg.inference.discovery import InputCase, discover_input, split_parts
from medseg.inference.predictor import Predictor, gaussian_weights, load_weights, tta_flips
from medseg.inference.preprocessing import Preprocessing
from medseg.inference.segment import Segmentation, segment
from medseg.inference.writers import (
    DEFAULT_COLORS,
    WRITERS,
    MaskWriter,
    OutputWriteError,
    OutputWriter,
    register_writer,
)

__all__ = [
    "DEFAULT_COLORS",
    "INFERENCE_CONFIG",
    "WRITERS",
    "BundleInference",
    "CaseResult",
    "InputCase",
    "IntensityReference",
    "MaskWriter",
    "OutputWriteError",
    "OutputWriter",
    "PredictionReport",
    "Predictor",
    "Preprocessing",
    "Segmentation",
    "UntrustedBundleError",
    "discover_input",
    "gaussian_weights",
    "inference_config",
    "is_shipped_bundle",
    "load_bundle",
    "load_weights",
    "parse_override",
    "predict_files",
    "predict_with_bundle",
    "register_writer",
    "resolve_device",
    "run_inference",
    "segment",
    "split_parts",
    "tta_flips",
]


def inference_config(
    network_def: dict[str, Any],
    *,
    predictor: dict[str, Any] | None = None,
    preprocessing: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """A complete ``inference.json`` following the contract above.

    Args:
        network_def: the network component.
        predictor: extra :class:`Predictor` arguments (``roi_size``, ``sw_batch_size``, ...).
        preprocessing: the ``preprocessing`` component (default: ``Preprocessing()``'s defaults).
        writer: extra :class:`MaskWriter` arguments.
        device: the default device (``"auto"``: CUDA, else MPS, else CPU).

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
