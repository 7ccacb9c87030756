"""Studies: cross-validated training runs of a bundle compared image by image, written up as a report.

``medseg study CONFIG`` (:mod:`medseg.cli.study`) is a thin wrapper over :func:`run_study`; shipped study
definitions live in ``medseg/configs/experiments/`` (schema: :mod:`medseg.study.config`).
"""

from __future__ import annotations

from medseg.study.config import StudyConfig, load_study_config
from medseg.study.runner import StudyResult, plan_runs, run_study

__all__ = ["StudyConfig", "StudyResult", "load_study_config", "plan_runs", "run_study"]
