"""HTTP load generator for the serving benches: keep-alive asyncio clients, requests per worker.

    python bench/_http_load.py run --url http://127.0.0.1:8000/features \\
        --body '{"entities": [{"entity_id": %d}], "features": ["v:f1"]}' --check featurelake \\
        --entities 10000 --concurrency 8 --seconds 10 --server-pid 1234 [--header 'K: V']
    python bench/_http_load.py canned --port 8001    # a server answering every request at once

``run`` opens ``--concurrency`` keep-alive connections (with ``--balance``, re-opening some until
every worker of the server holds an equal share), each sending one request at a time
(``--body`` with ``%d`` replaced by a random key below ``--entities``) for ``--warmup-seconds``
and then ``--seconds`` more, of which only the requests started in the second period count.
It prints one JSON object: every latency (seconds), requests, errors (a transport error, a
status other than 200 or an answer ``--check`` rejects), the generator's own CPU time, and per
worker process of the server the requests it answered and the CPU time it used.

Requests per worker: each worker is a descendant of ``--server-pid`` holding the server's
listening socket; at the end, with every connection still open, the worker holding each
connection's server end is found from ``/proc/net/tcp`` and ``/proc/<pid>/fd`` (Linux), so
each request is attributed to the process that answered it, without asking the server. CPU
time per worker is ``utime + stime`` from ``/proc/<pid>/stat`` around the measured period.

The generator is one event loop (uvloop when installed) writing pre-formatted requests on raw
sockets and parsing only the status line, the framing headers and the JSON body, which is much
less work per request than the servers do (``canned`` measures its ceiling). It is its own
process so that its CPU time is its own. Only the standard library (and uvloop and orjson when
installed) is imported: the bench runs it with featurelake's interpreter, but it needs none of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import select
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
except ModuleNotFoundError:  # pragma: no cover - orjson is in featurelake's serving extra
    loads = json.loads

CHECKS: dict[str, Callable[[Any], bool]] = {
    # featurelake's POST /features: every value of every entity found and unexpired.
    "featurelake": lambda doc: all(
        v["status"] == "ok" for r in doc["results"] for v in r["values"].values()
    ),
    # Feast's POST /get-online-features: every column (the join key included) PRESENT.
    "feast": lambda doc: all(s == "PRESENT" for r in doc["results"] for s in r["statuses"]),
    "any": lambda doc: True,
}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- /proc: the server's workers, their CPU time, the connections each holds ---------------


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _tcp_sockets() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every IPv4 and IPv6 TCP socket."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote = parts[1], parts[2]
            rows.append(
                (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), parts[3])
                + (int(parts[9]),)
            )
    return rows


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def server_workers(server_pid: int, port: int) -> list[int]:
    """The server's worker processes: descendants holding its listening socket (or itself)."""
    listening = {
        inode for lport, _, state, inode in _tcp_sockets() if lport == port and state == "0A"
    }
    workers = [pid for pid in _children(server_pid) if _socket_inodes(pid) & listening]
    return sorted(workers) or [server_pid]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def connection_owners(port: int, workers: list[int]) -> dict[int, int]:
    """Client port -> the worker holding the server end of that connection to ``port``."""
    by_inode = {inode: pid for pid in workers for inode in _socket_inodes(pid)}
    return {
        rport: by_inode[inode]
        for lport, rport, state, inode in _tcp_sockets()
        if lport == port and state == "01" and inode in by_inode
    }


# --- the client --------------------------------------------------------------------------


@dataclass
class _Run:
    host: str
    port: int
    path: str
    body: str
    headers: bytes
    check: Callable[[Any], bool]
    entities: int
    measure_from: float = float("inf")
    end: float = float("inf")
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    by_client_port: Counter = field(default_factory=Counter)
    connections_opened: int = 0

    def request(self, key: int) -> bytes:
        body = (self.body % key).encode()
        return (
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (self.path.encode(), self.host.encode(), self.port, self.headers, len(body), body)
        )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = 0, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if not chunked:
        return status, await reader.readexactly(length), close
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(parts), close
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.client_port: int = writer.get_extra_info("sockname")[1]

    def close(self) -> None:
        self.writer.close()


async def _connect(run: _Run) -> _Connection:
    reader, writer = await asyncio.open_connection(run.host, run.port)
    run.connections_opened += 1
    return _Connection(reader, writer)


async def _reconnect(run: _Run) -> _Connection:
    """A new connection, retried until the run ends (each refusal is counted)."""
    while True:
        try:
            return await _connect(run)
        except OSError as exc:
            run.error_kinds[f"connect: {type(exc).__name__}"] += 1
            if time.perf_counter() >= run.end:
                raise
            await asyncio.sleep(0.05)


async def _client(run: _Run, seed: int, connection: _Connection) -> _Connection:
    rng = random.Random(seed)
    while True:
        started = time.perf_counter()
        if started >= run.end:
            return connection
        request = run.request(rng.randrange(run.entities))
        close = False
        try:
            connection.writer.write(request)
            status, body, close = await _read_response(connection.reader)
            error = None if status == 200 else f"status {status}"
            if error is None and not run.check(loads(body)):
                error = "answer rejected by the check"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            error, close = type(exc).__name__, True
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            error = f"malformed answer: {type(exc).__name__}"
        if started >= run.measure_from:
            run.latencies.append(time.perf_counter() - started)
            run.by_client_port[connection.client_port] += 1
            if error is not None:
                run.errors += 1
                run.error_kinds[error] += 1
        if close:
            connection.close()
            connection = await _reconnect(run)


async def _accepted(run: _Run) -> _Connection:
    """A new connection on which one request has been answered (so a worker has accepted it)."""
    connection = await _connect(run)
    connection.writer.write(run.request(0))
    await _read_response(connection.reader)
    return connection


async def _open_connections(
    run: _Run, count: int, workers: list[int], balance: bool
) -> tuple[list[_Connection], int]:
    """``count`` connections; with ``balance``, re-opened until the workers hold equal shares.

    Workers blocked on a shared listening socket all wake for a new connection and the first
    to run accepts every connection waiting, so connections opened together tend to land on
    one worker. A connection on the worker holding the most is closed and a new one opened
    until no worker holds two more than another (at most ``20 * count`` times).
    """
    connections = list(await asyncio.gather(*(_accepted(run) for _ in range(count))))
    reopened = 0
    while balance and len(workers) > 1 and reopened < 20 * count:
        owners = connection_owners(run.port, workers)
        held: dict[int, list[_Connection]] = {pid: [] for pid in workers}
        for connection in connections:
            held.setdefault(owners.get(connection.client_port, 0), []).append(connection)
        most = max(workers, key=lambda pid: len(held[pid]))
        if len(held[most]) - min(len(held[pid]) for pid in workers) <= 1:
            break
        victim = held[most][0]
        victim.close()
        connections.remove(victim)
        connections.append(await _accepted(run))
        reopened += 1
    return connections, reopened


async def _drive(run: _Run, args: argparse.Namespace) -> dict[str, Any]:
    workers = server_workers(args.server_pid, run.port) if args.server_pid else []
    opened, reopened = await _open_connections(run, args.concurrency, workers, args.balance)
    clients = [
        asyncio.ensure_future(_client(run, args.seed * 10_000 + i, connection))
        for i, connection in enumerate(opened)
    ]
    await asyncio.sleep(args.warmup_seconds)
    cpu_before = {pid: cpu_seconds(pid) for pid in workers}
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    run.measure_from = time.perf_counter()
    run.end = run.measure_from + args.seconds
    connections = await asyncio.gather(*clients)
    wall = time.perf_counter() - run.measure_from
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_after = {pid: cpu_seconds(pid) for pid in workers}
    # Every connection is still open here, so its server end can still be found.
    owners = connection_owners(run.port, workers) if workers else {}
    for connection in connections:
        connection.close()
    per_worker: dict[int, dict[str, float]] = {
        pid: {"requests": 0, "cpu_s": cpu_after[pid] - cpu_before[pid]} for pid in workers
    }
    unattributed = 0
    for client_port, count in run.by_client_port.items():
        if client_port in owners:
            per_worker[owners[client_port]]["requests"] += count
        else:
            unattributed += count
    generator_cpu = (usage.ru_utime - usage_before.ru_utime) + (
        usage.ru_stime - usage_before.ru_stime
    )
    return {
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "wall_s": wall,
        "requests": len(run.latencies),
        "errors": run.errors,
        "error_kinds": dict(run.error_kinds),
        "req_per_s": len(run.latencies) / args.seconds,
        "latencies_s": run.latencies,
        "connections_opened": run.connections_opened,
        "connections_reopened_to_balance": reopened,
        "connections_per_worker": {
            str(pid): sum(owners.get(c.client_port) == pid for c in connections) for pid in workers
        },
        "per_worker": {str(pid): v for pid, v in per_worker.items()},
        "unattributed_requests": unattributed,
        "generator_cpu_s": generator_cpu,
        "generator_cpu_share": generator_cpu / wall,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def _run_loop(main: Any) -> Any:
    try:
        import uvloop
    except ModuleNotFoundError:  # pragma: no cover - uvloop is in featurelake's serving extra
        return asyncio.run(main)
    return uvloop.run(main)


def command_run(args: argparse.Namespace) -> int:
    url = urlsplit(args.url)
    headers = b"".join(h.encode() + b"\r\n" for h in args.header)
    run = _Run(
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        path=url.path or "/",
        body=args.body,
        headers=headers,
        check=CHECKS[args.check],
        entities=args.entities,
    )
    result = _run_loop(_drive(run, args))
    data = (json.dumps(result) + "\n").encode()
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        _write_all(sys.stdout.fileno(), data)
    return 0


def _write_all(fd: int, data: bytes) -> None:
    # sys.stdout.write of the answer into a pipe whose reader was slower sometimes delivered
    # only the first 64 KB, with no error; writing the bytes in a loop never has.
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


async def _canned(port: int, body: bytes) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(response)
        except (asyncio.IncompleteReadError, OSError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def command_canned(args: argparse.Namespace) -> int:
    _run_loop(_canned(args.port, args.answer.encode()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="send load, print one JSON object")
    run.add_argument("--url", required=True, help="the endpoint to POST to")
    run.add_argument("--body", required=True, help="request body; %%d is the random key")
    run.add_argument("--check", choices=sorted(CHECKS), default="any")
    run.add_argument("--header", action="append", default=[], help="'Name: value'")
    run.add_argument("--entities", type=int, required=True, help="keys are 0..entities-1")
    run.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    run.add_argument("--seconds", type=float, default=10.0, help="measured period")
    run.add_argument("--warmup-seconds", type=float, default=1.0)
    run.add_argument("--server-pid", type=int, default=0, help="the server's main process")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--out", help="write the JSON object here instead of stdout")
    run.add_argument(
        "--balance",
        action="store_true",
        help="re-open connections until every worker holds an equal share",
    )
    run.set_defaults(handler=command_run)
    canned = commands.add_parser("canned", help="answer every POST with --answer at once")
    canned.add_argument("--port", type=int, required=True)
    canned.add_argument("--answer", default='{"results": []}')
    canned.set_defaults(handler=command_canned)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
