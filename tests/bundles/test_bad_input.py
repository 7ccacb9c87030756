"""Bad input fails while the bundle initialises, before the first iteration, with a message saying what to do.

Each case runs ``ConfigWorkflow.initialize()`` only: the error must come from there, and nothing may have been
written to the run's folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _bundle_helpers import Dataset, bundle_configs, make_workflow, raises_in_chain, small_overrides

pytestmark = pytest.mark.bundle


def _initialize(bundle: str, configs: list[str], overrides: dict[str, object]) -> None:
    workflow = make_workflow(bundle, configs, overrides)
    workflow.initialize()


def _nothing_written(run_dir: Path) -> None:
    assert not (run_dir / "models").exists()
    assert not (run_dir / "runs" / "history.csv").exists()


@pytest.mark.parametrize("loss", ["mc", "dice_mc", "tversky_mc"])
def test_mc_overlay_without_stats_file(loss: str, covid_data: Dataset, tmp_path: Path) -> None:
    overrides = small_overrides(covid_data, tmp_path, stats_file=str(tmp_path / "nowhere" / "stats.json"))
    with raises_in_chain(FileNotFoundError, "run `medseg-data stats DATALIST --num-classes 2 --out STATS_JSON`"):
        _initialize("covid19_ct_lesion", bundle_configs("covid19_ct_lesion", loss), overrides)
    _nothing_written(tmp_path)


def test_class_counts_not_matching_num_classes(
    covid_data: Dataset, covid_multiclass_data: Dataset, tmp_path: Path
) -> None:
    # the multiclass overlay (3 classes) with the binary data's 2-class stats.json
    overrides = small_overrides(covid_multiclass_data, tmp_path, stats_file=str(covid_data.stats_file))
    configs = bundle_configs("covid19_ct_lesion", "multiclass", "mc")
    with raises_in_chain(ValueError, "holds counts for 2 classes but the network predicts num_classes=3"):
        _initialize("covid19_ct_lesion", configs, overrides)
    _nothing_written(tmp_path)


def test_datalist_with_missing_files(covid_data: Dataset, tmp_path: Path) -> None:
    datalist = json.loads(covid_data.datalist.read_text(encoding="utf-8"))
    datalist["training"][0]["image"] = "images/not_there.nii.gz"
    broken = covid_data.root / "datalist_missing.json"
    broken.write_text(json.dumps(datalist), encoding="utf-8")
    overrides = small_overrides(covid_data, tmp_path, datalist=str(broken))
    with raises_in_chain(FileNotFoundError, "not_there.nii.gz"):
        _initialize("covid19_ct_lesion", bundle_configs("covid19_ct_lesion"), overrides)
    _nothing_written(tmp_path)


def test_wrong_channel_count_for_the_network(covid_data: Dataset, tmp_path: Path) -> None:
    overrides = small_overrides(covid_data, tmp_path, **{"network_def#in_channels": 3})
    with raises_in_chain(ValueError, "training images have 1 channel(s) (shape (1, 32, 32)) but the network expects"):
        _initialize("covid19_ct_lesion", bundle_configs("covid19_ct_lesion"), overrides)
    _nothing_written(tmp_path)


def test_labels_outside_num_classes(robotic_parts_data: Dataset, tmp_path: Path) -> None:
    # part labels 0..3 kept as they are (label_map identity) but a binary network
    overrides = small_overrides(robotic_parts_data, tmp_path, num_classes=2)
    overrides["stats_file"] = str(tmp_path / "unused.json")
    with raises_in_chain(ValueError, "but num_classes=2: set num_classes or the label mapping"):
        _initialize("robotic_instrument", bundle_configs("robotic_instrument"), overrides)
    _nothing_written(tmp_path)


def test_pretrained_checkpoint_that_does_not_exist(covid_data: Dataset, tmp_path: Path) -> None:
    overrides = small_overrides(covid_data, tmp_path, pretrained_ckpt=str(tmp_path / "ce" / "model.pt"))
    with raises_in_chain(FileNotFoundError, "pass the model.pt of a finished CE pre-training run"):
        _initialize("covid19_ct_lesion", bundle_configs("covid19_ct_lesion", "mc"), overrides)
    _nothing_written(tmp_path)
