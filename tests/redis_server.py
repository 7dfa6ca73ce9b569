"""A real redis-server for tests and benchmarks: 127.0.0.1, a free port, a temporary folder.

    with running_redis_server(tmp_path) as url:
        store = RedisOnlineStore(url)

The pytest fixture ``redis_url`` (module scope) starts one server per test module and skips with
the reason when redis-server is not installed (``bin/ensure-redis.sh`` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

__all__ = ["free_port", "redis_url", "running_redis_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_redis_server(
    workdir: str | Path,
    start_timeout_s: float = 10.0,
    *,
    port: int | None = None,
    password: str | None = None,
) -> Iterator[str]:
    """Start redis-server (no persistence) and stop it on exit; yields its ``redis://`` URL.

    Args:
        workdir: the server's folder (log file).
        start_timeout_s: how long to wait for the server to answer.
        port: listen on this port (default: a free one), e.g. to restart a server in place.
        password: require it (``requirepass``); the URL then carries it.

    Raises:
        FileNotFoundError: redis-server is not installed.
        RuntimeError: the server did not answer within ``start_timeout_s``.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (run bin/ensure-redis.sh)")
    port = free_port() if port is None else port
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / "redis.log"
    auth = ["--requirepass", password] if password else []
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(log_file),
            *auth,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}; see {log_file}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    # A server that wants a password answers, but with -NOAUTH.
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {port}; see {log_file}")
            time.sleep(0.05)
        userinfo = f":{quote(password, safe='')}@" if password else ""
        yield f"redis://{userinfo}127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server for this test module; skips when redis-server is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed; bin/ensure-redis.sh installs it (apt-get)")
    with (
        tempfile.TemporaryDirectory(prefix="featurelake-redis-") as workdir,
        running_redis_server(workdir) as url,
    ):
        yield url
