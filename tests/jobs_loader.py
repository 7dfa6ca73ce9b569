"""Load a job module from jobs/ the way the pipeline runner does."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from featurelake.core.pipeline import load_job_module

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def load(job: str) -> ModuleType:
    return load_job_module(job)
