"""The pipeline DAG: stages declared in conf/pipeline.yaml, run in dependency order.

Each stage is a job in jobs/ (its ``main`` and ``add_arguments``), run in the pipeline's one
SparkSession. Transient failures are retried with exponential backoff; data and configuration
errors stop the pipeline at once. Every attempt is recorded in the run-log table
``ops/pipeline_runs``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurelake.core.config import ConfigError, Settings, load_yaml_file, parse_model
from featurelake.core.console import SparkProgress, rows_per_second
from featurelake.core.errors import DataError, TransientError, UserError
from featurelake.core.runner import JobOutcome, execute_job

__all__ = [
    "PipelineSpec",
    "RetryPolicy",
    "StageResult",
    "StageSpec",
    "is_transient",
    "load_pipeline",
    "plan_stages",
    "run_pipeline",
]

log = logging.getLogger(__name__)


class RetryPolicy(BaseModel):
    """Retries for transient errors: ``max_attempts`` in all, waits growing by ``multiplier``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1)
    backoff_seconds: float = Field(default=5.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    # Error messages (regular expressions) that mark a failure as transient, besides the
    # TransientError and ConcurrentWriteError types.
    transient_patterns: tuple[str, ...] = (
        "Connection refused",
        "Connection reset",
        "timed out",
        "ExecutorLostFailure",
        "Py4JNetworkError",
        "Too many open files",
        "database is locked",
    )


class StageSpec(BaseModel):
    """One stage: the job it runs, its arguments and the stages it depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str
    args: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    description: str = ""


class PipelineSpec(BaseModel):
    """The whole DAG."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: dict[str, StageSpec]
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    run_log_table: str = "ops/pipeline_runs"

    @model_validator(mode="after")
    def _check_graph(self) -> PipelineSpec:
        for name, stage in self.stages.items():
            unknown = [d for d in stage.depends_on if d not in self.stages]
            if unknown:
                raise ValueError(
                    f"stage {name!r} depends on unknown stages {unknown}; "
                    f"stages: {sorted(self.stages)}"
                )
        _topological(self.stages)  # raises on a cycle
        return self


def _topological(stages: Mapping[str, StageSpec]) -> list[str]:
    """Stages in dependency order; declaration order breaks ties so runs are predictable."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise UserError(f"dependency cycle: {' -> '.join([*path, name])}")
        state[name] = "visiting"
        for dep in stages[name].depends_on:
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in stages:
        visit(name, [])
    return order


def load_pipeline(settings: Settings, path: str | Path | None = None) -> PipelineSpec:
    """Read and validate conf/pipeline.yaml.

    Raises:
        ConfigError: the file is invalid; the message names the file and key.
    """
    file = Path(path) if path else settings.conf_path("pipeline.yaml")
    return parse_model(PipelineSpec, load_yaml_file(file), str(file))


def plan_stages(
    spec: PipelineSpec, start_from: str | None = None, only: Sequence[str] = ()
) -> list[str]:
    """The stages to run, in order: all, those from ``start_from`` on, or just ``only``.

    Raises:
        ValueError: an unknown stage name, or both options.
    """
    order = _topological(spec.stages)
    if start_from and only:
        raise UserError("use --from or --only, not both")
    for name in [*([start_from] if start_from else []), *only]:
        if name not in spec.stages:
            raise UserError(f"unknown stage {name!r}; stages: {order}")
    if start_from:
        return order[order.index(start_from) :]
    if only:
        return [s for s in order if s in set(only)]
    return order


def is_transient(error: BaseException | None, policy: RetryPolicy) -> bool:
    """True for failures worth retrying; data and configuration errors never are."""
    if error is None or isinstance(error, (DataError, ConfigError)):
        return False
    from featurelake.delta import ConcurrentWriteError

    if isinstance(error, (TransientError, ConcurrentWriteError, ConnectionError, TimeoutError)):
        return True
    text = f"{type(error).__name__}: {error}"
    return any(re.search(p, text) for p in policy.transient_patterns)


@dataclass
class StageResult:
    """How one stage ended."""

    stage: str
    status: str
    attempts: int
    started: datetime
    ended: datetime
    rows_written: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.ended - self.started).total_seconds()


def load_job_module(job: str) -> ModuleType:
    """The module of the job called ``job`` (the job registry's)."""
    from featurelake.jobs import load_job

    return load_job(job).module


def run_pipeline(
    spec: PipelineSpec,
    stages: Sequence[str],
    *,
    common_args: Sequence[str],
    spark: Any,
    record: Callable[[StageResult, str], None],
    run_id: str,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
    load: Callable[[str], ModuleType] = load_job_module,
) -> list[StageResult]:
    """Run ``stages`` in order, retrying transient failures; stop at the first failure.

    Args:
        spec: the validated pipeline.
        stages: the stages to run (from :func:`plan_stages`).
        common_args: arguments every stage gets (``--env``, ``--conf`` ...).
        spark: the shared session.
        record: called after every attempt (writes the run-log row).
        run_id: the pipeline's run id, shared by all its stages' commits.
        sleep: waits between retries (injectable for tests).
        progress: called with a one-line progress message.
        load: gives a stage's job module (the registry's; injectable for tests).

    Returns:
        One :class:`StageResult` per stage attempted; the last one failed if the run stopped.
    """
    results: list[StageResult] = []
    say = progress or (lambda text: sys.stderr.write(text + "\n"))
    for index, name in enumerate(stages, start=1):
        stage = spec.stages[name]
        policy = stage.retry or spec.retry
        module = load(stage.job)
        started = datetime.now(timezone.utc)
        attempt, outcome = 0, JobOutcome(1, {})
        while True:
            attempt += 1
            say(
                f"[{index}/{len(stages)}] {name}: running"
                + (f" (attempt {attempt})" if attempt > 1 else "")
            )
            argv = [*stage.args, *common_args, "--run-id", run_id]
            with SparkProgress(spark, name):
                outcome = execute_job(
                    stage.job,
                    module.main,
                    argv,
                    getattr(module, "add_arguments", None),
                    spark,
                    nested=True,
                )
            ok = outcome.code == 0
            retry = not ok and attempt < policy.max_attempts and is_transient(outcome.error, policy)
            result = StageResult(
                stage=name,
                status="succeeded" if ok else ("retrying" if retry else "failed"),
                attempts=attempt,
                started=started,
                ended=datetime.now(timezone.utc),
                rows_written=dict(outcome.summary.get("rows_written", {})),
                error=outcome.summary.get("error"),
                summary=outcome.summary,
            )
            record(result, run_id)
            if not retry:
                break
            wait = policy.backoff_seconds * policy.multiplier ** (attempt - 1)
            say(
                f"[{index}/{len(stages)}] {name}: transient failure, retrying in {wait:.0f}s: "
                f"{result.error}"
            )
            sleep(wait)
        results.append(result)
        mark = "done" if result.status == "succeeded" else "FAILED"
        written = rows_per_second(result.rows_written, result.seconds)
        say(
            f"[{index}/{len(stages)}] {name}: {mark} in {result.seconds:.1f}s"
            + (f", wrote {written}" if written else "")
        )
        if result.status != "succeeded":
            break
    return results


def format_summary(results: Sequence[StageResult], locations: Mapping[str, str]) -> str:
    """A readable table of stages plus where the outputs are."""
    lines = [f"{'stage':<22}{'status':<11}{'attempts':>8}{'seconds':>10}{'rows written':>14}"]
    lines.append("-" * len(lines[0]))
    for r in results:
        rows = sum(r.rows_written.values())
        lines.append(f"{r.stage:<22}{r.status:<11}{r.attempts:>8}{r.seconds:>10.1f}{rows:>14,}")
    failed = [r for r in results if r.status != "succeeded"]
    if failed:
        lines.append("")
        lines.append(f"stopped at stage {failed[-1].stage!r}: {failed[-1].error}")
        lines.append(f"resume with: ./spark-submit.sh full-pipeline --from {failed[-1].stage}")
    lines.append("")
    width = max((len(k) for k in locations), default=0)
    lines.extend(f"{key:<{width}}  {value}" for key, value in locations.items())
    return "\n".join(lines)
