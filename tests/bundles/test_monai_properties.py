"""MONAI's model-zoo ids in each bundle's ``inference.json``: the inference-properties check, the evaluator they
build (it writes the masks ``medseg predict`` writes), and ``verify_metadata`` offline with the shipped schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _bundle_helpers import BUNDLES, FEATURES, SIZE, Dataset

pytestmark = pytest.mark.bundle

BUNDLE_NAMES = ("covid19_ct_lesion", "robotic_instrument")
SMALL = {"network_def#features": FEATURES, "spatial_size": [SIZE, SIZE]}
SHIPPED_SCHEMA = BUNDLES.parent / "configs" / "monai" / "meta_schema_20240725.json"


def _workflow(bundle: str, config: Path | None = None, **overrides: Any) -> Any:
    from monai.bundle import ConfigWorkflow

    folder = BUNDLES / bundle / "configs"
    return ConfigWorkflow(
        config_file=str(config or folder / "inference.json"),
        meta_file=str(folder / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(BUNDLES / bundle),
        device="cpu",
        **{**SMALL, **overrides},
    )


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_monai_inference_properties_check_passes(bundle: str, tmp_path: Path) -> None:
    from monai.inferers import Inferer
    from monai.transforms import Compose

    from medseg.inference import Preprocessing

    workflow = _workflow(bundle, dataset_dir=str(tmp_path))
    workflow.initialize()
    assert workflow.check_properties() == []  # required ids present, optional ones referenced by their ids
    # what MONAI Label and MONAI Deploy take from these ids
    assert isinstance(workflow.preprocessing, Compose)
    assert isinstance(workflow.preprocessing, Preprocessing)  # the same object medseg predict uses
    assert len(workflow.preprocessing.transforms) >= 3  # a transform list: loader, scaling, ...
    assert isinstance(workflow.inferer, Inferer)
    assert isinstance(workflow.postprocessing, Compose)
    assert workflow.dataset.transform is workflow.preprocessing


def _edited(tmp_path: Path, edit: Any) -> Path:
    config = json.loads((BUNDLES / "covid19_ct_lesion" / "configs" / "inference.json").read_text(encoding="utf-8"))
    edit(config)
    path = tmp_path / "inference.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_the_check_fails_without_the_model_zoo_ids(tmp_path: Path) -> None:
    """The check is not vacuous: a missing ``dataset`` or a wrongly wired ``postprocessing`` fails it."""
    config = _edited(tmp_path, lambda c: c.pop("dataset"))
    workflow = _workflow("covid19_ct_lesion", config=config, dataset_dir=str(tmp_path))
    workflow.initialize()
    with pytest.raises(KeyError, match="Property 'dataset'"):  # MONAI's way of reporting a missing required id
        workflow.check_properties()
    config = _edited(tmp_path, lambda c: c["evaluator"].update(postprocessing="@preprocessing"))
    workflow = _workflow("covid19_ct_lesion", config=config, dataset_dir=str(tmp_path))
    workflow.initialize()
    assert workflow.check_properties() == ["postprocessing"]


def _save_weights(bundle: str, path: Path) -> Path:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "inference.json"))
    for key, value in SMALL.items():
        parser[key] = value
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        from PIL import Image

        return np.asarray(Image.open(path))
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_the_model_zoo_evaluator_writes_the_masks_of_medseg_predict(
    bundle: str, robotic_data: Dataset, tmp_path: Path
) -> None:
    """``monai.bundle run --run_id evaluate`` (dataset -> preprocessing -> inferer -> postprocessing) and
    ``medseg predict`` (our predictor) give the same masks on the same grid."""
    from medseg.data import load_datalist
    from medseg.data.synthetic import make_ct_volume
    from medseg.inference import predict_with_bundle

    data = tmp_path / "data"
    data.mkdir()
    if bundle == "covid19_ct_lesion":
        make_ct_volume(tmp_path / "ct.nii.gz", shape=(48, 40, 4), seed=1)
        shutil.copy(tmp_path / "ct.nii.gz", data / "ct.nii.gz")
        names = ["ct_seg.nii.gz"]
    else:
        frame = Path(load_datalist(robotic_data.datalist, "test")[0]["image"])
        shutil.copy(frame, data / frame.name)
        names = [f"{frame.stem}_seg.png"]
    ckpt = _save_weights(bundle, tmp_path / "model.pt")
    workflow = _workflow(
        bundle, run_id="evaluate", dataset_dir=str(data), ckpt_path=str(ckpt), output_dir=str(tmp_path / "monai")
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = predict_with_bundle(
        BUNDLES / bundle,
        sorted(data.iterdir()),
        tmp_path / "medseg",
        ckpt=ckpt,
        overrides={**SMALL, "tta": False},  # MONAI's evaluator does not flip-average
        device="cpu",
    )
    assert report.exit_code == 0, [r.error for r in report.failed]
    for name in names:
        ours, theirs = _read(tmp_path / "medseg" / name), _read(tmp_path / "monai" / name)
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
        assert ours.any()  # a mask with foreground: the comparison is not between two empty arrays


def test_verify_metadata_works_offline_with_the_shipped_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify_metadata`` downloads the schema unless a file sits at ``--filepath``: with the shipped copy no
    connection is opened (any attempt fails this test)."""
    import socket

    from monai.bundle import verify_metadata

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("verify_metadata tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert SHIPPED_SCHEMA.is_file()
    for bundle in BUNDLE_NAMES:
        meta = BUNDLES / bundle / "configs" / "metadata.json"
        verify_metadata(meta_file=str(meta), filepath=str(SHIPPED_SCHEMA))  # raises ValueError when not met
    schema = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    assert "network_data_format" in schema["required"]
