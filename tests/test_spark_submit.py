"""spark-submit.sh and the job runner, run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from featurelake.delta import DeltaTables

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "spark-submit.sh"), *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_jobs():
    result = _run("--help")
    assert result.returncode == 0
    assert "usage: ./spark-submit.sh <job>" in result.stdout
    assert "tables" in result.stdout


def test_unknown_job_exits_non_zero_and_lists_the_jobs():
    result = _run("no-such-job")
    assert result.returncode == 2
    assert "unknown job 'no-such-job'" in result.stderr
    assert "tables" in result.stderr


def test_configuration_error_stops_before_spark_and_names_the_key():
    result = _run("tables", "history", "silver/x", "--conf", "spark.shuffle_partitions=none")
    assert result.returncode == 2
    assert "--conf spark.shuffle_partitions=none: spark.shuffle_partitions" in result.stderr


def test_a_lakehouse_root_that_is_a_file_is_one_line_before_spark(tmp_path):
    root = tmp_path / "lake.txt"
    root.write_text("not a directory")
    result = _run("bronze", "--conf", f"lakehouse.root={root}")
    assert result.returncode == 2
    assert result.stdout == ""  # no JVM, no job log
    assert result.stderr.splitlines() == [
        f"featurelake: configuration error: --conf lakehouse.root={root}: lakehouse.root: "
        f"{root} exists and is not a directory"
    ]


def test_an_invalid_declaration_is_one_line_before_spark(tmp_path):
    conf = Path(shutil.copytree(ROOT / "conf", tmp_path / "conf"))
    table = conf / "tables" / "customers.yaml"
    table.write_text(table.read_text() + "\nno_such_key: 1\n")
    result = _run(
        "tables",
        "history",
        "silver/customers",
        "--conf-dir",
        str(conf),
        "--conf",
        f"lakehouse.root={tmp_path / 'lake'}",
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"featurelake: configuration error: {table}: no_such_key: unknown key")


def test_a_job_logs_json_lines_and_a_run_summary(spark, tmp_path):
    path = tmp_path / "silver" / "kv"
    DeltaTables(spark).write(spark.createDataFrame([(1, "a")], "k long, v string"), str(path))
    result = _run("tables", "history", "silver/kv", "--conf", f"lakehouse.root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    # spark-submit merges the Python driver's stderr (our JSON logs) into stdout
    lines = [
        json.loads(line)
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith("{")
    ]
    history = [line for line in lines if "event" not in line]
    assert [h["version"] for h in history] == [0]
    events = [line for line in lines if "event" in line]
    names = [e["event"] for e in events]
    assert names[0] == "job_started" and names[-1] == "run_summary"
    summary = events[-1]
    assert {"time", "level", "job", "run_id", "event"} <= set(summary)
    assert summary["job"] == "tables"
    assert summary["fields"]["status"] == "succeeded"
    assert summary["fields"]["duration_s"] > 0
    assert len({e["run_id"] for e in events}) == 1


def test_a_failing_job_exits_non_zero_with_the_reason(tmp_path):
    result = _run("tables", "history", "silver/absent", "--conf", f"lakehouse.root={tmp_path}")
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "no Delta table at" in output
    summary = [json.loads(line) for line in output.splitlines() if line.startswith('{"time"')][-1]
    assert summary["fields"]["status"] == "failed"
    assert "TableNotFoundError" in summary["fields"]["error"]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs ./.venv")
def test_venv_bootstrap_is_quick_when_up_to_date():
    import time

    subprocess.run([str(ROOT / "bin" / "bootstrap-venv.sh")], check=True, cwd=ROOT)
    started = time.monotonic()
    subprocess.run([str(ROOT / "bin" / "bootstrap-venv.sh")], check=True, cwd=ROOT)
    assert time.monotonic() - started < 2


def _events(result: subprocess.CompletedProcess[str]) -> list[dict]:
    return [
        json.loads(line)
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith('{"time"')
    ]


def test_a_job_runs_on_native_delta_when_the_jar_is_cached(spark, tmp_path):
    from featurelake.delta import native_delta_available

    if not native_delta_available(spark):
        pytest.skip("delta-spark's jar could not be fetched for this test session")
    path = tmp_path / "silver" / "kv"
    DeltaTables(spark).write(spark.createDataFrame([(1, "a")], "k long, v string"), str(path))
    result = _run("tables", "history", "silver/kv", "--conf", f"lakehouse.root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    started = next(e for e in _events(result) if e["event"] == "job_started")
    assert started["fields"]["backend"] == "native"


def test_without_registry_or_cache_a_job_falls_back_to_delta_rs_and_says_why(tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on: the registry refuses at once
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {
        "FEATURELAKE_MAVEN_REPOSITORY": f"http://127.0.0.1:{closed}/maven2/",
        "FEATURELAKE_JAR_CACHE": str(tmp_path / "empty-cache"),
        "FEATURELAKE_LOG_FORMAT": "json",
    }
    (tmp_path / "silver").mkdir()
    started = time.monotonic()
    result = _run(
        "tables", "history", "silver/absent", "--conf", f"lakehouse.root={tmp_path}", env=env
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2  # the table is absent: the job itself ran
    # One line per package set: delta-spark's, and the declared sources' (the Kafka connector).
    reason = [
        line for line in output.splitlines() if "delta-spark" in line and "unavailable" in line
    ]
    assert len(reason) == 1 and "unreachable" in reason[0]
    job_started = next(e for e in _events(result) if e["event"] == "job_started")
    assert job_started["fields"]["backend"] == "delta-rs"
    assert elapsed < 120  # a refused registry costs seconds, not a hang
