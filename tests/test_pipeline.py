"""The pipeline DAG: ordering, retries of transient errors, data errors, --from and --only."""

from __future__ import annotations

from pathlib import Path

import pytest
from featurelake.core.config import ConfigError, Settings
from featurelake.core.errors import DataError, TransientError
from featurelake.core.pipeline import (
    PipelineSpec,
    RetryPolicy,
    StageResult,
    is_transient,
    load_pipeline,
    plan_stages,
    run_pipeline,
)

JOB = """
from pathlib import Path
from featurelake.core.errors import DataError, TransientError

def add_arguments(parser):
    parser.add_argument("--marker", required=True)

def main(ctx, args):
    marker = Path(args.marker)
    calls = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(calls + 1))
    behaviour = "{behaviour}"
    if behaviour == "flaky" and calls == 0:
        raise TransientError("executor lost")
    if behaviour == "bad-data":
        raise DataError("silver: 12 rows break rule not_null:customer_id")
    ctx.summary["calls"] = calls + 1
"""


def _spec(stages: dict) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {"stages": stages, "retry": {"max_attempts": 3, "backoff_seconds": 0.5}}
    )


def _jobs(tmp_path: Path, **behaviours: str) -> Path:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for name, behaviour in behaviours.items():
        (jobs / f"{name}.py").write_text(JOB.format(behaviour=behaviour))
    return jobs


def _load_file(jobs: Path, job: str):
    import importlib.util

    file = jobs / f"{job.replace('-', '_')}.py"
    spec = importlib.util.spec_from_file_location(f"pipeline_test_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(spark, tmp_path, spec, stages, jobs):
    conf = Path(__file__).resolve().parents[1] / "conf"
    recorded: list[tuple[str, str, int]] = []
    waits: list[float] = []

    def record(result: StageResult, run_id: str) -> None:
        recorded.append((result.stage, result.status, result.attempts))

    results = run_pipeline(
        spec,
        stages,
        load=lambda job: _load_file(jobs, job),
        spark=spark,
        record=record,
        run_id="run-1",
        common_args=["--conf-dir", str(conf), "--conf", f"lakehouse.root={tmp_path}/lake"],
        sleep=waits.append,
        progress=lambda text: None,
    )
    return results, recorded, waits


def _stage(job: str, marker: Path, *deps: str) -> dict:
    return {"job": job, "args": ["--marker", str(marker)], "depends_on": list(deps)}


def test_stages_run_in_dependency_order_not_declaration_order():
    spec = _spec(
        {
            "gold": {"job": "g", "depends_on": ["silver"]},
            "silver": {"job": "s", "depends_on": ["bronze"]},
            "bronze": {"job": "b"},
        }
    )
    assert plan_stages(spec) == ["bronze", "silver", "gold"]


def test_from_runs_the_stage_and_everything_after_it():
    spec = _spec(
        {
            "a": {"job": "a"},
            "b": {"job": "b", "depends_on": ["a"]},
            "c": {"job": "c", "depends_on": ["b"]},
        }
    )
    assert plan_stages(spec, start_from="b") == ["b", "c"]
    assert plan_stages(spec, only=["c", "a"]) == ["a", "c"]
    with pytest.raises(ValueError, match="unknown stage 'x'"):
        plan_stages(spec, start_from="x")


def test_a_cycle_or_an_unknown_dependency_is_a_config_error(tmp_path):
    file = tmp_path / "pipeline.yaml"
    file.write_text("stages:\n  a: {job: a, depends_on: [b]}\n  b: {job: b, depends_on: [a]}\n")
    with pytest.raises(ConfigError, match="dependency cycle"):
        load_pipeline(Settings(), file)
    file.write_text("stages:\n  a: {job: a, depends_on: [zz]}\n")
    with pytest.raises(ConfigError, match=r"pipeline.yaml.*unknown stages \['zz'\]"):
        load_pipeline(Settings(), file)


def test_the_shipped_pipeline_is_valid():
    conf = Path(__file__).resolve().parents[1] / "conf"
    spec = load_pipeline(Settings(conf_dir=str(conf)))
    order = plan_stages(spec)
    jobs = Path(__file__).resolve().parents[1] / "jobs"
    for name in order:
        assert (jobs / f"{spec.stages[name].job.replace('-', '_')}.py").is_file(), name


def test_transient_errors_are_retried_data_errors_never():
    policy = RetryPolicy()
    assert is_transient(TransientError("x"), policy)
    assert is_transient(RuntimeError("Py4JNetworkError: Connection refused"), policy)
    assert not is_transient(DataError("Connection refused in a column"), policy)
    assert not is_transient(ValueError("bad value"), policy)


def test_a_stage_failing_once_with_a_transient_error_succeeds_on_retry(spark, tmp_path):
    jobs = _jobs(tmp_path, first="ok", flaky="flaky", last="ok")
    marks = {n: tmp_path / f"{n}.count" for n in ("first", "flaky", "last")}
    spec = _spec(
        {
            "first": _stage("first", marks["first"]),
            "flaky": _stage("flaky", marks["flaky"], "first"),
            "last": _stage("last", marks["last"], "flaky"),
        }
    )
    results, recorded, waits = _run(spark, tmp_path, spec, plan_stages(spec), jobs)
    assert [(r.stage, r.status, r.attempts) for r in results] == [
        ("first", "succeeded", 1),
        ("flaky", "succeeded", 2),
        ("last", "succeeded", 1),
    ]
    assert ("flaky", "retrying", 1) in recorded
    assert waits == [0.5]
    assert marks["flaky"].read_text() == "2"


def test_a_data_error_stops_at_once_with_the_stage_and_reason(spark, tmp_path):
    jobs = _jobs(tmp_path, first="ok", broken="bad-data", last="ok")
    marks = {n: tmp_path / f"{n}.count" for n in ("first", "broken", "last")}
    spec = _spec(
        {
            "first": _stage("first", marks["first"]),
            "broken": _stage("broken", marks["broken"], "first"),
            "last": _stage("last", marks["last"], "broken"),
        }
    )
    results, recorded, waits = _run(spark, tmp_path, spec, plan_stages(spec), jobs)
    assert [(r.stage, r.status) for r in results] == [("first", "succeeded"), ("broken", "failed")]
    assert "not_null:customer_id" in results[-1].error
    assert waits == [] and marks["broken"].read_text() == "1"
    assert not marks["last"].exists()


def test_from_resumes_after_the_failure_is_fixed(spark, tmp_path):
    jobs = _jobs(tmp_path, first="ok", second="ok", third="ok")
    marks = {n: tmp_path / f"{n}.count" for n in ("first", "second", "third")}
    spec = _spec(
        {
            "first": _stage("first", marks["first"]),
            "second": _stage("second", marks["second"], "first"),
            "third": _stage("third", marks["third"], "second"),
        }
    )
    results, _, _ = _run(spark, tmp_path, spec, plan_stages(spec, start_from="second"), jobs)
    assert [r.stage for r in results] == ["second", "third"]
    assert not marks["first"].exists()


def test_every_job_exposes_main_and_its_options_for_the_pipeline():
    from featurelake.jobs import job_names, load_job

    entry_points = Path(__file__).resolve().parents[1] / "jobs"
    for name in job_names():
        job = load_job(name)
        assert (entry_points / f"{job.module.__name__.rsplit('.', 1)[1]}.py").is_file(), name
        if hasattr(job.module, "run"):
            continue  # serve runs uvicorn, not a Spark job
        assert callable(job.main), name
        assert job.add_arguments is None or callable(job.add_arguments), name
