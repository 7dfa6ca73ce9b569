"""JVM packages (delta-spark, Spark's Kafka connector, JDBC drivers) from Maven Central.

Spark resolves ``--packages`` with its own Ivy inside the JVM it is starting: slow on every
start without a warm cache, unbounded when the registry does not answer, and impossible to
fall back from once the JVM is up. Here resolution happens before any JVM starts, once per set
of coordinates, into a local cache:

1. a manifest of the jars resolved before for these coordinates, when every jar is still
   there, is used as it is (no network);
2. otherwise the registry is probed (an HTTP HEAD of each coordinate's POM, ``probe_timeout``
   seconds): an unreachable registry is reported at once;
3. otherwise Spark's own resolver (``spark-submit --packages`` running a script that does
   nothing) fills an Ivy folder in the cache, under ``resolve_timeout`` seconds.

The jars Spark itself ships (same artifact, any version) are left out: the JVM would load its
own copy first anyway.

Example:
    >>> found = resolve_packages(delta_coordinates(), Path("~/.cache/featurelake/jars"))
    >>> found.jars if found.ok else found.reason
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "DELTA_SPARK_CONF",
    "JAR_CACHE_ENV",
    "Resolution",
    "default_cache_dir",
    "delta_coordinates",
    "kafka_coordinates",
    "resolve_packages",
    "standalone_classpath",
    "spark_home",
]

log = logging.getLogger(__name__)

JAR_CACHE_ENV = "FEATURELAKE_JAR_CACHE"
MAVEN_REPOSITORY_ENV = "FEATURELAKE_MAVEN_REPOSITORY"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"
# Spark properties that turn delta-spark on, once its jars are on the classpath.
DELTA_SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# After a failed resolution, starts within this many seconds do not try again.
_RETRY_AFTER_FAILURE_S = 600
_COORDINATE = re.compile(r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:[A-Za-z0-9_.+-]+$")
_NOOP_SCRIPT = "import sys\nsys.exit(0)\n"


@dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve_packages`.

    Attributes:
        coordinates: what was asked for (``group:artifact:version``).
        jars: local jar paths to put on the classpath (empty when not ok).
        reason: why the packages are not available (None when ok).
        downloaded: the jars were fetched in this call (not found in the cache).
    """

    coordinates: tuple[str, ...]
    jars: tuple[str, ...] = ()
    reason: str | None = None
    downloaded: bool = False

    @property
    def ok(self) -> bool:
        """True when every coordinate resolved to jars."""
        return self.reason is None


def spark_home() -> Path:
    """The installed pyspark package directory (it holds ``bin/`` and ``jars/``)."""
    import pyspark

    return Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)


def default_cache_dir() -> Path:
    """``$FEATURELAKE_JAR_CACHE``, else ``~/.cache/featurelake/jars``."""
    configured = os.environ.get(JAR_CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/featurelake/jars").expanduser()


def delta_coordinates() -> list[str]:
    """The delta-spark jar matching the installed pyspark and delta-spark wheels.

    delta-spark publishes one jar per Spark minor version
    (``io.delta:delta-spark_<spark major.minor>_<scala>:<delta version>``).

    Raises:
        RuntimeError: the delta-spark or pyspark wheel is not installed.
    """
    try:
        delta_version = metadata.version("delta-spark")
        spark_version = metadata.version("pyspark")
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"{exc.name} is not installed; install featurelake's dependencies"
        ) from exc
    major_minor = ".".join(spark_version.split(".")[:2])
    return [f"io.delta:delta-spark_{major_minor}_2.13:{delta_version}"]


def kafka_coordinates() -> list[str]:
    """Spark's Kafka connector matching the installed pyspark wheel.

    Raises:
        RuntimeError: the pyspark wheel is not installed.
    """
    try:
        spark_version = metadata.version("pyspark")
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError("pyspark is not installed; install featurelake's dependencies") from exc
    return [f"org.apache.spark:spark-sql-kafka-0-10_2.13:{spark_version}"]


def standalone_classpath(found: Resolution) -> list[str]:
    """The classpath of a JVM of its own from a ``standalone`` resolution.

    Spark's resolver leaves ``scala-library`` out of every resolution (Spark brings its own);
    the installed pyspark's copy (Scala 2.13, binary compatible across 2.13 releases) is
    added for Scala programs such as the Kafka broker.
    """
    scala = sorted(str(p) for p in (spark_home() / "jars").glob("scala-library-2.13*.jar"))
    return [*found.jars, *scala]


def resolve_packages(
    coordinates: Sequence[str],
    cache_dir: Path | None = None,
    *,
    probe_timeout: float = 5.0,
    resolve_timeout: float = 300.0,
    repository: str | None = None,
    standalone: bool = False,
) -> Resolution:
    """Local jars for Maven ``coordinates`` and their dependencies; from the cache when there.

    Never raises for a registry problem and never waits longer than the timeouts: the caller
    decides what to do without the packages (featurelake falls back to delta-rs).

    Args:
        coordinates: ``group:artifact:version`` strings.
        cache_dir: where manifests and the Ivy folders live (default :func:`default_cache_dir`).
        probe_timeout: seconds for the registry to answer the probe of each coordinate.
        resolve_timeout: seconds for Spark's resolver to fetch everything.
        repository: the Maven repository (default ``$FEATURELAKE_MAVEN_REPOSITORY``, else
            Maven Central).
        standalone: the jars are for a JVM of their own (a Kafka broker), not for Spark's
            classpath: keep the ones Spark ships too. Spark's resolver never fetches
            ``scala-library`` (see :func:`standalone_classpath`).

    Returns:
        A :class:`Resolution`; ``reason`` says in one line why it failed.

    Raises:
        ValueError: a coordinate is not ``group:artifact:version``.
    """
    coordinates = tuple(coordinates)
    bad = [c for c in coordinates if not _COORDINATE.match(c)]
    if bad:
        raise ValueError(f"Maven coordinates must be group:artifact:version, got {bad}")
    repository = repository or os.environ.get(MAVEN_REPOSITORY_ENV) or MAVEN_CENTRAL
    cache = (cache_dir or default_cache_dir()).expanduser().absolute()  # Ivy wants absolute
    parts = [repository, *coordinates] + (["standalone"] if standalone else [])
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    manifest = cache / f"manifest-{key}.json"
    cached = _read_manifest(manifest)
    if cached is not None:
        return Resolution(coordinates, cached)
    failed = cache / f"failed-{key}.txt"
    if failed.is_file() and time.time() - failed.stat().st_mtime < _RETRY_AFTER_FAILURE_S:
        return Resolution(coordinates, reason=failed.read_text().strip() + " (not retried yet)")
    reason = _probe(coordinates, repository, probe_timeout)
    if reason is None:
        jars, reason = _resolve_with_spark(
            coordinates, repository, cache / f"ivy-{key}", resolve_timeout, standalone
        )
    if reason is not None:
        cache.mkdir(parents=True, exist_ok=True)
        failed.write_text(reason + "\n")
        return Resolution(coordinates, reason=reason)
    cache.mkdir(parents=True, exist_ok=True)
    temporary = manifest.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps({"coordinates": coordinates, "jars": jars}, indent=1))
    os.replace(temporary, manifest)  # concurrent starts: the last complete manifest wins
    failed.unlink(missing_ok=True)
    return Resolution(coordinates, tuple(jars), downloaded=True)


def _read_manifest(manifest: Path) -> tuple[str, ...] | None:
    try:
        jars = tuple(json.loads(manifest.read_text())["jars"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return jars if jars and all(os.path.isfile(j) for j in jars) else None


def _pom_url(coordinate: str, repository: str) -> str:
    group, artifact, version = coordinate.split(":")
    return (
        f"{repository.rstrip('/')}/{group.replace('.', '/')}/{artifact}/{version}/"
        f"{artifact}-{version}.pom"
    )


def _probe(coordinates: Sequence[str], repository: str, timeout: float) -> str | None:
    """None when the repository serves every coordinate's POM; else a one-line reason."""
    for coordinate in coordinates:
        url = _pom_url(coordinate, repository)
        request = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - https URL
                pass
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return f"{coordinate} is not published in {repository}"
            return f"{repository} answered HTTP {exc.code} for {coordinate}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"{repository} is unreachable ({reason})"
    return None


def _resolve_with_spark(
    coordinates: Sequence[str], repository: str, ivy: Path, timeout: float, standalone: bool
) -> tuple[list[str], str | None]:
    """Run Spark's resolver (``spark-submit --packages``) into ``ivy``; the jars it fetched."""
    ivy.mkdir(parents=True, exist_ok=True)
    script = ivy / "resolve_only.py"
    script.write_text(_NOOP_SCRIPT)
    home = spark_home()
    command = [
        str(home / "bin" / "spark-submit"),
        "--master",
        "local[1]",
        "--packages",
        ",".join(coordinates),
        "--conf",
        f"spark.jars.ivy={ivy}",
        "--conf",
        "spark.ui.enabled=false",
        str(script),
    ]
    if repository != MAVEN_CENTRAL:
        command[1:1] = ["--repositories", repository]
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
    }
    env.pop("PYSPARK_GATEWAY_PORT", None)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return [], f"resolving {', '.join(coordinates)} took more than {timeout:.0f} s"
    except OSError as exc:
        return [], f"cannot run {command[0]}: {exc}"
    if done.returncode != 0:
        unresolved = re.findall(r"::\s+(\S+#\S+;\S+): not found", done.stderr)
        detail = f"unresolved: {', '.join(unresolved)}" if unresolved else _last_line(done.stderr)
        return [], f"Spark could not resolve {', '.join(coordinates)} ({detail})"
    fetched = sorted(str(p) for p in (ivy / "jars").glob("*.jar"))
    shipped = frozenset() if standalone else _spark_artifacts(home)
    jars = [j for j in fetched if _artifact_name(Path(j).name, grouped=True) not in shipped]
    if not jars:
        return [], f"Spark's resolver fetched no jar for {', '.join(coordinates)}"
    log.info(
        "jvm_packages_resolved",
        extra={
            "fields": {
                "coordinates": list(coordinates),
                "jars": len(jars),
                "seconds": round(time.monotonic() - started, 1),
            }
        },
    )
    return jars, None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _artifact_name(file_name: str, *, grouped: bool) -> str:
    """The artifact of a jar file name, without group and version.

    Ivy names a fetched jar ``<group>_<artifact>-<version>.jar`` (``grouped``:
    ``commons-pool_commons-pool-1.6.jar``); Spark's own jars are ``<artifact>-<version>.jar``
    (``spark-sql_2.13-4.2.0.jar``). Both give the artifact: ``commons-pool``, ``spark-sql_2.13``.
    """
    stem = file_name.removesuffix(".jar")
    if grouped:
        stem = stem.split("_", 1)[1]
    return re.sub(r"-\d[\w.+-]*$", "", stem)


def _spark_artifacts(home: Path) -> frozenset[str]:
    return frozenset(_artifact_name(p.name, grouped=False) for p in (home / "jars").glob("*.jar"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m featurelake.core.jvm_packages [--delta] [--kafka] [coordinate...]``: the jars.

    Prints the resolved jars comma-separated on stdout (nothing when unavailable) and one
    line on stderr saying why they are unavailable. Exit code 0 either way: the caller
    falls back. Used by spark-submit.sh before it starts the JVM.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="featurelake.core.jvm_packages")
    parser.add_argument("--delta", action="store_true", help="the delta-spark jar")
    parser.add_argument("--kafka", action="store_true", help="Spark's Kafka connector")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="jars for a JVM of their own: printed as a classpath (':'), scala-library added",
    )
    parser.add_argument("coordinates", nargs="*")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    coordinates = list(args.coordinates) + (delta_coordinates() if args.delta else [])
    coordinates += kafka_coordinates() if args.kafka else []
    if not coordinates:
        return 0
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        sys.stderr.write("featurelake: no Java runtime: JVM packages not resolved\n")
        return 0
    found = resolve_packages(coordinates, args.cache_dir, standalone=args.standalone)
    if found.ok and args.standalone:
        sys.stdout.write(":".join(standalone_classpath(found)) + "\n")
    elif found.ok:
        sys.stdout.write(",".join(found.jars) + "\n")
    else:
        sys.stderr.write(f"featurelake: {', '.join(coordinates)} unavailable: {found.reason}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
