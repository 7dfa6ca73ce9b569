"""JVM packages from Maven Central: matching coordinates, the cache, and every way to fail fast."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
from featurelake.core import jvm_packages
from featurelake.core.jvm_packages import (
    Resolution,
    delta_coordinates,
    kafka_coordinates,
    resolve_packages,
    standalone_classpath,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_delta_jar_matches_the_installed_wheels():
    spark = metadata.version("pyspark").split(".")
    expected = f"io.delta:delta-spark_{spark[0]}.{spark[1]}_2.13:{metadata.version('delta-spark')}"
    assert delta_coordinates() == [expected]


def test_the_kafka_connector_matches_the_installed_pyspark():
    expected = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{metadata.version('pyspark')}"
    assert kafka_coordinates() == [expected]


def test_a_standalone_classpath_adds_sparks_scala_library():
    found = Resolution(("g:a:1",), ("/cache/g_a-1.jar",))
    classpath = standalone_classpath(found)
    assert classpath[0] == "/cache/g_a-1.jar"
    assert [p for p in classpath[1:] if "scala-library-2.13" in p] == classpath[1:] != []


def test_a_registry_refusing_connections_is_reported_in_seconds(tmp_path):
    started = time.monotonic()
    found = resolve_packages(
        ["io.delta:delta-spark_4.2_2.13:4.4.0"],
        tmp_path,
        repository=f"http://127.0.0.1:{_free_port()}/maven2/",
    )
    assert not found.ok and found.jars == ()
    assert "unreachable" in found.reason
    assert time.monotonic() - started < 10


def test_a_registry_that_never_answers_is_given_up_after_the_probe_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        started = time.monotonic()
        found = resolve_packages(
            ["g:a:1"],
            tmp_path,
            probe_timeout=1.5,
            repository=f"http://127.0.0.1:{listener.getsockname()[1]}/",
        )
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert not found.ok and "unreachable" in found.reason
    assert elapsed < 6


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - the http.server API
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_coordinate_the_registry_does_not_publish_is_named(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        found = resolve_packages(
            ["io.delta:delta-spark_9.9_2.13:0.0.1"],
            tmp_path,
            repository=f"http://127.0.0.1:{server.server_port}/",
        )
    finally:
        server.shutdown()
    assert found.reason == (
        f"io.delta:delta-spark_9.9_2.13:0.0.1 is not published in "
        f"http://127.0.0.1:{server.server_port}/"
    )


def test_a_failure_is_remembered_and_not_retried_at_every_start(tmp_path):
    repository = f"http://127.0.0.1:{_free_port()}/"
    first = resolve_packages(["g:a:1"], tmp_path, repository=repository)
    second = resolve_packages(["g:a:1"], tmp_path, repository=repository)
    assert second.reason == first.reason + " (not retried yet)"


def test_a_cached_resolution_needs_no_registry(tmp_path):
    jar = tmp_path / "ivy" / "jars" / "g_a-1.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    repository = f"http://127.0.0.1:{_free_port()}/"  # unreachable: must not be asked
    import hashlib

    key = hashlib.sha256("\n".join([repository, "g:a:1"]).encode()).hexdigest()[:16]
    (tmp_path / f"manifest-{key}.json").write_text(json.dumps({"jars": [str(jar)]}))
    found = resolve_packages(["g:a:1"], tmp_path, repository=repository)
    assert found.ok and found.jars == (str(jar),) and not found.downloaded
    jar.unlink()  # a manifest whose jars are gone is not used
    assert not resolve_packages(["g:a:1"], tmp_path, repository=repository).ok


def test_jars_spark_ships_are_left_out_by_artifact_name():
    name = jvm_packages._artifact_name
    assert name("commons-pool_commons-pool-1.6.jar", grouped=True) == "commons-pool"
    assert name("io.delta_delta-spark_4.2_2.13-4.4.0.jar", grouped=True) == "delta-spark_4.2_2.13"
    assert name("spark-sql_2.13-4.2.0.jar", grouped=False) == "spark-sql_2.13"
    assert name("zstd-jni-1.5.7-3.jar", grouped=False) == "zstd-jni"


def test_the_command_line_prints_no_jars_and_one_reason_when_offline(tmp_path):
    env = {
        "FEATURELAKE_MAVEN_REPOSITORY": f"http://127.0.0.1:{_free_port()}/",
        "FEATURELAKE_JAR_CACHE": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "featurelake.core.jvm_packages", "--delta"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "unavailable" in done.stderr


def test_the_test_session_runs_with_the_resolved_jar(spark):
    """The suite's own session: on a machine that reaches Maven Central, native Delta is on."""
    from featurelake.delta import native_delta_available

    cache = Path(jvm_packages.default_cache_dir())
    if not list(cache.glob("manifest-*.json")):
        pytest.skip(f"no resolved jars in {cache}: the registry was not reachable")
    assert native_delta_available(spark)
