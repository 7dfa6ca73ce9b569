"""Freshness benchmark: from producing an order event to seeing it in the online store.

    .venv/bin/python bench/bench_streaming.py                         # Kafka and files
    .venv/bin/python bench/bench_streaming.py --transports kafka --rates 1000 4000 --seconds 30

For each transport (Kafka: the broker of bin/ensure-kafka.sh; files: JSON-lines files renamed
into the landing folder every 100 ms), the real ``stream`` job runs in its own process
(``--master local[2]``, continuous, ``--trigger-seconds 0``) on a temporary lakehouse with
``--customers`` known customers. For each rate of ``--rates`` in turn, order events for random
customers, stamped with the current time, are produced at that steady rate for ``--seconds``;
a poller reads the SQLite online store every 50 ms. The n-th order of a customer is visible
once the customer's ``orders_24h`` (the tumbling 24-hour view) reaches n; its latency is that
moment minus the moment it was produced (the producer's clock, the same machine).

Printed per transport and rate: events produced, p50 / p99 / max produce-to-online latency,
and the rate at which events became visible. A rate is sustained when every event became
visible within ``--drain`` seconds after producing stopped and the p50 of the last third of
the events is at most twice the p50 of the first third (no growing backlog); the ladder stops
at the first rate that is not. Figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
VIEW = "customer_orders_24h"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Lake:
    """A temporary lakehouse with a conf/ copy pointing the source at this run's topic."""

    def __init__(self, base: Path, bootstrap: str, topic: str, customers: int) -> None:
        self.base = base
        self.root = base / "lake"
        self.conf = base / "conf"
        shutil.copytree(PROJECT / "conf", self.conf)
        source = self.conf / "sources" / "order_events.yaml"
        declaration = yaml.safe_load(source.read_text())
        # From the topic's start: the warm-up's first events may be produced before the
        # query has looked up the topic's offsets (its first message, not an event, goes to
        # quarantine).
        kafka = {"topic": topic, "starting_offsets": "earliest"}
        if bootstrap:  # without a broker (files only) the declared address stays
            kafka["bootstrap_servers"] = bootstrap
        declaration["stream"]["kafka"].update(kafka)
        source.write_text(yaml.safe_dump(declaration, sort_keys=False))
        self.customers = [str(10_000 + i) for i in range(customers)]
        self.landing = self.root / "landing" / "order_events"
        self.landing.mkdir(parents=True)

    def args(self) -> list[str]:
        return ["--conf-dir", str(self.conf), "--conf", f"lakehouse.root={self.root}"]

    def create_customers(self) -> None:
        code = (
            "import sys\n"
            "from featurelake.core.config import DeltaSettings, SparkSettings\n"
            "from featurelake.core.session import build_spark_session\n"
            "from featurelake.delta import DeltaTables\n"
            "spark = build_spark_session(\n"
            "    'bench-customers', SparkSettings(master='local[1]'), DeltaSettings()\n"
            ")\n"
            "ids = sys.argv[2].split(',')\n"
            "df = spark.createDataFrame([(i,) for i in ids], 'customer_id string')\n"
            "DeltaTables(spark).write(df, sys.argv[1])\n"
        )
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(self.root / "silver" / "customers"),
                ",".join(self.customers),
            ],
            check=True,
            capture_output=True,
        )

    def online_counts(self, conn: sqlite3.Connection) -> dict[str, int]:
        rows = conn.execute(
            "SELECT entity_key, payload FROM online_features WHERE view = ?", (VIEW,)
        ).fetchall()
        return {json.loads(k)[0]: int(json.loads(p)["orders_24h"] or 0) for k, p in rows}


class Visibility:
    """Produce times per (customer, n-th order) and the poll time each became visible."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.produced: dict[str, list[float]] = defaultdict(list)
        self.seen: dict[str, int] = defaultdict(int)
        self.visible: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def record(self, customer: str, at: float) -> None:
        with self.lock:
            self.produced[customer].append(at)

    def poll(self) -> None:
        db = self.lake.root / "online" / "features.db"
        while not db.exists() and not self.stop.is_set():
            time.sleep(0.05)
        conn = sqlite3.connect(str(db), timeout=10)
        while not self.stop.is_set():
            try:
                counts = self.lake.online_counts(conn)
            except sqlite3.Error:
                counts = {}
            moment = time.time()
            with self.lock:
                for customer, count in counts.items():
                    for n in range(self.seen[customer] + 1, count + 1):
                        self.visible[(customer, n)] = moment
                    self.seen[customer] = max(self.seen[customer], count)
            time.sleep(0.05)
        conn.close()

    def all_visible(self) -> bool:
        with self.lock:
            return all(self.seen[c] >= len(t) for c, t in self.produced.items())

    def latencies(self, since: dict[str, int]) -> list[tuple[float, float]]:
        """(produced at, latency) of the orders produced after ``since`` (per-customer counts)."""
        out = []
        with self.lock:
            for customer, times in self.produced.items():
                for n in range(since.get(customer, 0) + 1, len(times) + 1):
                    shown = self.visible.get((customer, n))
                    if shown is not None:
                        out.append((times[n - 1], shown - times[n - 1]))
        return sorted(out)

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {c: len(t) for c, t in self.produced.items()}


def kafka_producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "1"})


def produce_steadily(
    transport: str,
    lake: Lake,
    seen: Visibility,
    rate: int,
    seconds: float,
    bootstrap: str,
    topic: str,
) -> int:
    """Produce ``rate`` orders a second for ``seconds``; the number produced."""
    producer = kafka_producer(bootstrap) if transport == "kafka" else None
    tick = 0.01 if transport == "kafka" else 0.1
    started = time.time()
    sent = 0
    files = 0
    while True:
        elapsed = time.time() - started
        if elapsed >= seconds:
            break
        due = int(rate * min(elapsed + tick, seconds)) - sent
        batch = []
        for _ in range(max(due, 0)):
            customer = random.choice(lake.customers)
            event = {
                "order_id": uuid.uuid4().hex[:16],
                "customer_id": customer,
                "amount": round(random.uniform(1, 200), 2),
                "order_ts": now_iso(),
                "country": "United Kingdom",
            }
            batch.append((customer, json.dumps(event)))
        if producer is not None:
            for customer, text in batch:
                producer.produce(topic, value=text.encode())
                seen.record(customer, time.time())
            producer.poll(0)
        elif batch:
            files += 1
            partial = lake.landing / f".part-{files}.json"
            partial.write_text("".join(t + "\n" for _, t in batch))
            final = lake.landing / f"orders-{uuid.uuid4().hex}.json"
            partial.rename(final)
            moment = time.time()
            for customer, _ in batch:
                seen.record(customer, moment)
        sent += len(batch)
        time.sleep(tick)
    if producer is not None:
        producer.flush(30)
    return sent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_transport(transport: str, args: argparse.Namespace, bootstrap: str) -> list[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix=f"bench-stream-{transport}-"))
    topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
    lake = Lake(base, bootstrap, topic, args.customers)
    lake.create_customers()
    if transport == "kafka":  # the topic exists before the query asks for its offsets
        producer = kafka_producer(bootstrap)
        producer.produce(topic, value=b"not an event: created the topic")
        producer.flush(30)
    log = open(base / "stream.log", "w")
    job = subprocess.Popen(
        [
            str(PROJECT / "spark-submit.sh"),
            "stream",
            "--master",
            "local[2]",
            *lake.args(),
            "--transport",
            transport,
            "--view",
            VIEW,
            "--trigger-seconds",
            "0",
        ],
        cwd=PROJECT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    seen = Visibility(lake)
    poller = threading.Thread(target=seen.poll, daemon=True)
    poller.start()
    results = []
    try:
        # Warm-up: until a first order shows in the store (the JVM and both queries started).
        deadline = time.time() + args.start_timeout
        while time.time() < deadline and not seen.visible:
            produce_steadily(transport, lake, seen, 20, 1.0, bootstrap, topic)
            time.sleep(1)
        if not seen.visible:
            raise RuntimeError(
                f"nothing became visible within {args.start_timeout:.0f} s; "
                f"see {base / 'stream.log'} (kept with --keep)"
            )
        produce_steadily(transport, lake, seen, 200, 10.0, bootstrap, topic)  # JIT warm-up
        end = time.time() + args.drain
        while time.time() < end and not seen.all_visible():
            time.sleep(0.2)
        for rate in args.rates:
            before = seen.counts()
            started = time.time()
            sent = produce_steadily(transport, lake, seen, rate, args.seconds, bootstrap, topic)
            stopped = time.time()
            end = stopped + args.drain
            while time.time() < end and not seen.all_visible():
                time.sleep(0.2)
            drained = seen.all_visible()
            pairs = seen.latencies(before)
            lat = [latency for _, latency in pairs]
            last_visible = max((p + lat_ for p, lat_ in pairs), default=stopped)
            third = max(len(lat) // 3, 1)
            early, late = lat[:third], lat[-third:]
            steady = drained and statistics.median(late) <= 2 * max(statistics.median(early), 0.5)
            row = {
                "transport": transport,
                "rate": rate,
                "produced": sent,
                "produced_per_s": round(sent / (stopped - started), 1),
                "visible": len(lat),
                "p50_s": round(percentile(lat, 0.5), 2),
                "p99_s": round(percentile(lat, 0.99), 2),
                "max_s": round(max(lat), 2) if lat else None,
                "visible_per_s": round(len(lat) / max(last_visible - started, 1e-9), 1),
                "sustained": steady,
            }
            print(json.dumps(row), flush=True)
            results.append(row)
            if not steady:
                break
    finally:
        seen.stop.set()
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
        log.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--transports", nargs="+", default=["kafka", "files"], choices=["kafka", "files"]
    )
    parser.add_argument("--rates", nargs="+", type=int, default=[1000, 2000, 4000, 8000, 16000])
    parser.add_argument("--seconds", type=float, default=30.0, help="producing time per rate")
    parser.add_argument("--drain", type=float, default=60.0, help="wait for the last events")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary lakehouse")
    parser.add_argument(
        "--start-timeout", type=float, default=600.0, help="for the first order to show"
    )
    args = parser.parse_args()
    bootstrap = ""
    if "kafka" in args.transports:
        done = subprocess.run(
            [str(PROJECT / "bin" / "ensure-kafka.sh")], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"no Kafka broker: {done.stderr.strip()}", file=sys.stderr)
            return 1
        bootstrap = done.stdout.strip()
    summary = []
    for transport in args.transports:
        rows = run_transport(transport, args, bootstrap)
        sustained = [r for r in rows if r["sustained"]]
        summary.append(
            {
                "transport": transport,
                "highest_sustained_rate": max((r["rate"] for r in sustained), default=None),
                "at_1000": next((r for r in rows if r["rate"] == 1000), None),
            }
        )
    print(json.dumps({"summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
