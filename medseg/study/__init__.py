"""Loss studies: the papers' CE-then-fine-tune comparison run on a dataset and written up as a report.

``medseg study CONFIG`` (:mod:`medseg.cli.study`) is a thin wrapper over :func:`run_study`; study definitions live
in ``configs/experiments/`` (schema: :mod:`medseg.study.config`).
"""

from __future__ import annotations

from medseg.study.config import StudyConfig, load_study_config
from medseg.study.runner import StudyResult, plan_runs, run_study

__all__ = ["StudyConfig", "StudyResult", "load_study_config", "plan_runs", "run_study"]
