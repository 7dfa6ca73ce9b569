"""Several server processes on one port, each accepting on its own listening socket.

When worker processes share one listening socket, every idle worker wakes for a new
connection and the first to run accepts all that are waiting; connections opened together (a
client's or a proxy's keep-alive pool) then often all land on one worker while the others
idle. :func:`serve_workers` gives each worker its own socket bound to the same address with
``SO_REUSEPORT``: the kernel places each new connection on one of the sockets by a hash of its
addresses and ports, so connections spread evenly over the workers whatever their timing.

The supervising process binds the address first without listening: a port held by another
program fails at once with a clear error, and port 0 picks the port the workers then share.
It restarts a worker that exits while serving; a worker that cannot start (it exits within
its first seconds, twice in a row) stops the server. SIGTERM or SIGINT stops every worker
gracefully (each finishes the requests in flight).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

__all__ = ["REUSE_PORT", "bind_reuse_port", "serve_workers"]

log = logging.getLogger(__name__)

#: Whether this platform can give each worker its own socket on one port.
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")

#: A worker that exits sooner than this after its start did not start.
_START_SECONDS = 10.0


def bind_reuse_port(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (listening unless told not).

    ``IPPROTO_TCP`` is explicit: asyncio sets ``TCP_NODELAY`` on accepted sockets only when
    the listening socket says TCP (without it a response can wait for a delayed ACK).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _run_worker(app: str, host: str, port: int, log_level: str) -> None:
    """One worker: its own socket, then uvicorn on it until signalled."""
    import uvicorn

    sock = bind_reuse_port(host, port)
    config = uvicorn.Config(app, factory=True, access_log=False, log_level=log_level, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(
    app: str,
    host: str,
    port: int,
    workers: int,
    log_level: str = "warning",
    on_bound: Callable[[int], None] | None = None,
) -> int:
    """Run ``workers`` processes serving the app factory ``app`` (``module:function``) on one port.

    Returns 0 after a stop by signal, 1 when a worker could not start. ``on_bound`` is called
    with the port once it is held (the port 0 resolves to a free one).

    Raises:
        OSError: the address cannot be bound (in use by another program, not an address here).
    """
    holder = bind_reuse_port(host, port, listen=False)
    port = int(holder.getsockname()[1])
    if on_bound is not None:
        on_bound(port)
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start(slot: int) -> tuple[BaseProcess, float]:
        process = context.Process(
            target=_run_worker,
            args=(app, host, port, log_level),
            name=f"featurelake-serve-{slot}",
        )
        process.start()
        log.info("serve_worker_started", extra={"fields": {"slot": slot, "pid": process.pid}})
        return process, time.monotonic()

    def request_stop(signum: int, _: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    running = [start(slot) for slot in range(workers)]
    early_exits = [0] * workers
    failed = False
    try:
        while not stop.wait(0.2):
            for slot, (process, started) in enumerate(running):
                if process.is_alive():
                    continue
                early = time.monotonic() - started < _START_SECONDS
                early_exits[slot] = early_exits[slot] + 1 if early else 0
                log.warning(
                    "serve_worker_exited",
                    extra={"fields": {"slot": slot, "pid": process.pid, "code": process.exitcode}},
                )
                if early_exits[slot] >= 2:
                    failed = True
                    stop.set()
                    break
                running[slot] = start(slot)
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process, _ in running:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        holder.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 1 if failed else 0
