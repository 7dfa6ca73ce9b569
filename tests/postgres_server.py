"""A real PostgreSQL server for tests and benchmarks: a private cluster on 127.0.0.1.

    with running_postgres_server(tmp_path) as pg:
        pg.sql("create table t (id int)")
        pg.jdbc_url  # jdbc:postgresql://127.0.0.1:<port>/featurelake

``initdb`` makes a cluster in a temporary folder and ``postgres`` serves it on a free port,
TCP on 127.0.0.1 only, password authentication (SCRAM) for TCP connections; the server is
stopped and the folder removed on exit. Durability is off (``fsync``, synchronous commit): the
cluster lives as long as the test. As root, the server runs as the ``postgres`` user (it refuses
to run as root), which Debian's package creates.

The pytest fixture ``postgres`` (module scope) starts one server per test module and skips with
the reason when PostgreSQL is not installed (``bin/ensure-postgres.sh`` installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_postgres_bin", "postgres", "running_postgres_server"]

USER = "featurelake"
DATABASE = "featurelake"


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and how to reach it."""

    host: str
    port: int
    user: str
    password: str
    database: str
    psql_binary: str

    @property
    def jdbc_url(self) -> str:
        """The JDBC URL of the database (no credentials in it)."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def sql(self, statements: str, *, timeout_s: float = 600.0) -> str:
        """Run SQL with psql over TCP (stops at the first error); its unaligned output."""
        done = subprocess.run(
            [
                self.psql_binary,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                self.database,
            ],
            input=statements,
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout


def _as_postgres_user() -> dict[str, object]:
    """Popen arguments that drop root to the ``postgres`` user; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root and there is no 'postgres' user to run the server"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextmanager
def running_postgres_server(
    workdir: str | Path, *, password: str = "s3cret-Pw", start_timeout_s: float = 60.0
) -> Iterator[PostgresServer]:
    """Create a cluster under ``workdir``, serve it on a free port, stop it on exit.

    Args:
        workdir: an empty or new folder for the cluster, its socket and its log.
        password: the password of the superuser ``featurelake`` (TCP connections need it).
        start_timeout_s: how long to wait for the server to accept connections.

    Raises:
        FileNotFoundError: PostgreSQL is not installed.
        RuntimeError: initdb failed, or the server did not start in time.
    """
    binaries = find_postgres_bin()
    psql = shutil.which("psql") or (str(binaries / "psql") if binaries else None)
    if binaries is None or psql is None:
        raise FileNotFoundError("PostgreSQL is not installed (run bin/ensure-postgres.sh)")
    drop = _as_postgres_user()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data, log_file, password_file = workdir / "data", workdir / "postgres.log", workdir / "pw"
    password_file.write_text(password + "\n")
    if drop:
        for path in (workdir, password_file):
            os.chown(path, int(drop["user"]), int(drop["group"]))  # type: ignore[call-overload]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    init = subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        **drop,  # type: ignore[arg-type]
    )
    password_file.unlink()
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")
    port = _free_port()
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(workdir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=40",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            **drop,  # type: ignore[arg-type]
        )
    server = PostgresServer("127.0.0.1", port, USER, password, "postgres", psql)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {process.returncode}: {log_file.read_text()[-500:]}"
                )
            try:
                server.sql("select 1", timeout_s=10)
                break
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres did not start on port {port}; see {log_file}"
                    ) from None
                time.sleep(0.1)
        server.sql(f"create database {DATABASE}")
        yield PostgresServer("127.0.0.1", port, USER, password, DATABASE, psql)
    finally:
        process.send_signal(signal.SIGINT)  # fast shutdown: no need to wait for clients
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test module; skips when PostgreSQL is not installed."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed; bin/ensure-postgres.sh installs it (apt-get)")
    with (
        tempfile.TemporaryDirectory(prefix="featurelake-postgres-") as workdir,
        running_postgres_server(workdir) as server,
    ):
        yield server
