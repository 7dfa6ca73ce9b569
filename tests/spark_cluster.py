"""A real Spark standalone cluster (one master, N workers) on 127.0.0.1, for cluster tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyspark


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as resp:
            import json

            return int(json.load(resp).get("aliveworkers", 0))
    except OSError:
        return 0


@contextmanager
def standalone_cluster(
    work_dir: Path, workers: int = 2, cores: int = 1, memory: str = "1g"
) -> Iterator[str]:
    """Start a master and ``workers`` workers; yield the master URL; stop them all after."""
    spark_home = os.path.dirname(pyspark.__file__)
    spark_class = os.path.join(spark_home, "bin", "spark-class")
    port, ui_port = free_port(), free_port()
    env = {
        **os.environ,
        "SPARK_HOME": spark_home,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_WORKER_DIR": str(work_dir / "work"),
        "SPARK_LOG_DIR": str(work_dir / "logs"),
    }
    procs: list[subprocess.Popen] = []
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        procs.append(
            subprocess.Popen(
                [
                    spark_class,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--webui-port",
                    str(ui_port),
                ],
                env=env,
                stdout=open(logs / "master.log", "w"),
                stderr=subprocess.STDOUT,
            )
        )
        master = f"spark://127.0.0.1:{port}"
        _wait_for(lambda: _alive_workers(ui_port) == 0 and _port_open(port), 60, "the master")
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        "--host",
                        "127.0.0.1",
                        "--cores",
                        str(cores),
                        "--memory",
                        memory,
                        "--webui-port",
                        str(free_port()),
                        "--work-dir",
                        str(work_dir / f"worker-{i}"),
                        master,
                    ],
                    env=env,
                    stdout=open(logs / f"worker-{i}.log", "w"),
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_for(lambda: _alive_workers(ui_port) == workers, 90, f"{workers} workers")
        yield master
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
