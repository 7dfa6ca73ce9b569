"""The stream job: sources, silver rules, windowed views, exactly-once sinks, late events.

Each test runs the real ``stream`` job on a lakehouse in ``tmp_path`` with a copy of conf/
whose streaming source reads one landed file (or a few Kafka messages) per micro-batch, so a
handful of events spans several micro-batches. Kafka tests produce to the broker of
bin/ensure-kafka.sh (skipped, saying why, without one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from chispa import assert_df_equality
from featurelake.core.jvm_packages import kafka_coordinates
from featurelake.delta import DeltaTables
from featurelake.feature_store.online import SqliteOnlineStore
from featurelake.jobs import load_job
from pyspark.sql import DataFrame, SparkSession

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CUSTOMERS = ["1001", "1002", "1003"]
DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)


def at(hour: int, minute: int = 0, second: int = 0) -> str:
    """An event time on the test day, as the producers write it (ISO 8601, UTC)."""
    moment = DAY + timedelta(hours=hour, minutes=minute, seconds=second)
    return moment.isoformat().replace("+00:00", "Z")


def order(order_id: str, customer: str, amount: float, ts: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "amount": amount,
        "order_ts": ts,
        "country": "United Kingdom",
    }


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The test broker's address: $FEATURELAKE_KAFKA_BOOTSTRAP, else bin/ensure-kafka.sh."""
    address = os.environ.get("FEATURELAKE_KAFKA_BOOTSTRAP")
    if address:
        return address
    done = subprocess.run(
        [str(PROJECT_ROOT / "bin" / "ensure-kafka.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        pytest.skip(f"no Kafka broker: {done.stderr.strip()[-300:] or 'ensure-kafka.sh failed'}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def kafka_connector(spark: SparkSession) -> None:
    """Skip when Spark's Kafka connector is not on the test session's classpath."""
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if "spark-sql-kafka" not in jars:
        pytest.skip(f"{kafka_coordinates()[0]} could not be fetched into the jar cache")


def produce(bootstrap: str, topic: str, messages: list[str | dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for message in messages:
        text = message if isinstance(message, str) else json.dumps(message)
        producer.produce(topic, value=text.encode("utf-8"))
    assert producer.flush(30) == 0


class Lake:
    """A lakehouse in a temporary folder with its own copy of conf/, and the stream job."""

    def __init__(
        self, spark: SparkSession, root: Path, topic: str, bootstrap: str, per_batch: int
    ) -> None:
        self.spark = spark
        self.root = root
        self.conf_dir = root / "conf"
        shutil.copytree(PROJECT_ROOT / "conf", self.conf_dir)
        source = self.conf_dir / "sources" / "order_events.yaml"
        declaration = yaml.safe_load(source.read_text())
        stream = declaration["stream"]
        stream["files"]["max_files_per_trigger"] = 1
        stream["kafka"].update(
            {"bootstrap_servers": bootstrap, "topic": topic, "max_offsets_per_trigger": per_batch}
        )
        source.write_text(yaml.safe_dump(declaration, sort_keys=False))
        self.landing = root / "lake" / "landing" / "order_events"
        self.tables = DeltaTables(spark)
        customers = spark.createDataFrame(
            [(c, "GB") for c in CUSTOMERS], "customer_id string, country string"
        )
        self.tables.write(customers, self.path("silver", "customers"))
        self._files = 0

    def path(self, layer: str, table: str) -> str:
        return str(self.root / "lake" / layer / table)

    def args(self, *extra: str) -> list[str]:
        return [
            "--conf-dir",
            str(self.conf_dir),
            "--conf",
            f"lakehouse.root={self.root / 'lake'}",
            "--log-format",
            "json",
            *extra,
        ]

    def land(self, lines: list[str | dict[str, Any]]) -> None:
        """One new file of JSON lines in the landing folder (renamed into place whole)."""
        self.landing.mkdir(parents=True, exist_ok=True)
        self._files += 1
        text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
        partial = self.landing / f".part-{self._files:03d}.json"
        partial.write_text(text)
        partial.rename(self.landing / f"orders-{self._files:03d}.json")

    def stream(self, *extra: str) -> None:
        code = load_job("stream").run(self.args("--available-now", *extra), spark=self.spark)
        assert code == 0

    def read(self, layer: str, table: str) -> DataFrame:
        return self.spark.read.format("delta").load(self.path(layer, table))

    def online_rows(self) -> list[tuple[str, str, int, str]]:
        store = SqliteOnlineStore(self.root / "lake" / "online" / "features.db")
        try:
            conn = store._conn()  # noqa: SLF001 - the rows as stored, for comparison
            return conn.execute(
                "SELECT view, entity_key, event_ts, payload FROM online_features ORDER BY 1, 2"
            ).fetchall()
        finally:
            store.close()


@pytest.fixture
def make_lake(spark: SparkSession, tmp_path: Path) -> Iterator[Callable[..., Lake]]:
    made = []

    def make(
        name: str = "lake",
        topic: str = "unused",
        bootstrap: str = "127.0.0.1:9",
        per_batch: int = 4,
    ) -> Lake:
        lake = Lake(spark, tmp_path / name, topic, bootstrap, per_batch)
        made.append(lake)
        return lake

    yield make
    for query in spark.streams.active:  # a failed test must not leave a query running
        query.stop()


def rows_of(df: DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.select(*columns).collect())


# --------------------------------------------------------------------------------------------
# (b) the stream and the batch gold job compute the same windows
# --------------------------------------------------------------------------------------------


def test_streamed_windows_equal_the_batch_gold_windows_row_for_row(make_lake) -> None:
    lake = make_lake()
    lake.land([order("o1", "1001", 10.0, at(9, 1)), order("o2", "1002", 5.5, at(9, 7))])
    lake.land([order("o3", "1001", 2.5, at(9, 58)), order("o4", "1001", 1.0, at(10, 3))])
    lake.land([order("o5", "1003", 7.0, at(11, 30)), order("o6", "1002", 4.0, at(11, 31))])
    lake.stream("--transport", "files")
    streamed = {
        v: lake.read("gold", v).cache() for v in ("customer_orders_1h", "customer_orders_24h")
    }
    for df in streamed.values():
        df.count()

    assert load_job("gold").run(lake.args("--only", "windowed"), spark=lake.spark) == 0
    for view, df in streamed.items():
        assert df.count() > 0
        assert_df_equality(df, lake.read("gold", view), ignore_row_order=True, ignore_nullable=True)
    # By hand: customer 1001's orders of 09:01, 09:58 and 10:03 fall in one 24 h window.
    assert rows_of(
        lake.read("gold", "customer_orders_24h").where("customer_id = '1001'"),
        "spend_24h",
        "orders_24h",
    ) == [(13.5, 3)]


def test_a_sliding_window_holds_the_orders_of_its_hour(make_lake) -> None:
    lake = make_lake()
    lake.land([order("o1", "1001", 10.0, at(9, 1)), order("o2", "1001", 2.5, at(9, 58))])
    lake.land([order("o3", "1001", 1.0, at(10, 3))])
    lake.stream("--transport", "files")
    windows = lake.read("gold", "customer_orders_1h").where("customer_id = '1001'")
    # [09:00, 10:00) holds 09:01 and 09:58; [09:05, 10:05) holds 09:58 and 10:03.
    by_start = {r["window_start"].strftime("%H:%M"): r for r in windows.collect()}
    assert (by_start["09:00"]["spend_1h"], by_start["09:00"]["orders_1h"]) == (12.5, 2)
    assert (by_start["09:05"]["spend_1h"], by_start["09:05"]["orders_1h"]) == (3.5, 2)
    assert len(by_start) == 24  # 12 windows hold 09:01 or 09:58, 11 more 10:03 only... and overlap
    # Online: the customer's trailing window at the latest order (10:03), [09:05, 10:05).
    online = {(r[0], r[1]): json.loads(r[3]) for r in lake.online_rows()}
    assert online[("customer_orders_1h", '["1001"]')] == {
        "spend_1h": 3.5,
        "orders_1h": 2,
        "max_order_1h": 2.5,
    }


# --------------------------------------------------------------------------------------------
# (c) late events
# --------------------------------------------------------------------------------------------


def test_events_behind_the_watermark_go_to_the_late_table_and_the_others_update_windows(
    make_lake,
) -> None:
    lake = make_lake()
    lake.land([order("a1", "1001", 1.0, at(10, 0)), order("a2", "1001", 1.0, at(10, 30))])
    lake.land([order("a3", "1001", 1.0, at(11, 0))])  # watermark now 11:00 - 10 min = 10:50
    lake.stream("--transport", "files")
    before = rows_of(lake.read("gold", "customer_orders_24h"), "customer_id", "orders_24h")
    assert before == [("1001", 3)]

    late = [order(f"late{i}", "1001", 100.0, at(10, 40 + i)) for i in range(3)]  # <= 10:50
    inside = [order(f"in{i}", "1001", 1.0, at(10, 55)) for i in range(2)]
    lake.land([*late, *inside])
    lake.stream("--transport", "files")  # a new run: the watermark is read back from silver

    late_rows = lake.read("silver", "order_events_late")
    assert rows_of(late_rows, "order_id") == [("late0",), ("late1",), ("late2",)]
    assert rows_of(late_rows, "_watermark") == [(datetime(2026, 3, 2, 10, 50),)] * 3
    assert rows_of(lake.read("gold", "customer_orders_24h"), "customer_id", "orders_24h") == [
        ("1001", 5)
    ]
    window = lake.read("gold", "customer_orders_1h").where("window_start = '2026-03-02 10:00:00'")
    assert rows_of(window, "orders_1h", "spend_1h") == [(4, 4.0)]  # 10:00, 10:30, 2 x 10:55


# --------------------------------------------------------------------------------------------
# (e) bad events
# --------------------------------------------------------------------------------------------


BAD_EVENTS: list[str | dict[str, Any]] = [
    '{"order_id": "b1", "customer_id": "1001", "amount": 1.0, ',  # malformed JSON
    order("b2", "1001", "a lot", at(10, 1)),  # wrong type
    order("b3", "9999", 3.0, at(10, 2)),  # unknown customer
    order("b4", "1002", 4.0, "2999-01-01T00:00:00Z"),  # in the future
]


def _assert_quarantined_with_reasons(lake: Lake) -> None:
    rows = lake.read("silver", "order_events_quarantine").collect()
    reasons = {r["order_id"]: list(r["_failed_rules"]) for r in rows}
    assert len(rows) == len(reasons) == 4
    # A value that does not parse is also missing for the rules on it.
    assert reasons["b2"] == ["parse:amount", "not_null:amount", "positive_amount"]
    assert reasons["b3"] == ["known_customer"]
    assert reasons["b4"] == ["not_future:order_ts"]
    assert reasons[None][0] == "malformed_line"  # and the rules on the keys it lacks
    malformed = next(r for r in rows if r["order_id"] is None)
    assert malformed["_rescued_data"] == BAD_EVENTS[0]


def test_bad_events_are_quarantined_with_their_rules_and_the_stream_goes_on(make_lake) -> None:
    lake = make_lake()
    lake.land([order("g1", "1001", 5.0, at(10, 0)), *BAD_EVENTS])
    lake.land([order("g2", "1002", 6.0, at(10, 5))])
    lake.stream("--transport", "files")
    _assert_quarantined_with_reasons(lake)
    assert rows_of(lake.read("silver", "order_events"), "order_id") == [("g1",), ("g2",)]


def test_bad_kafka_messages_are_quarantined_and_later_ones_processed(
    make_lake, kafka_bootstrap, kafka_connector
) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    lake = make_lake(topic=topic, bootstrap=kafka_bootstrap)
    produce(kafka_bootstrap, topic, [*BAD_EVENTS, order("g1", "1001", 5.0, at(10, 0))])
    produce(kafka_bootstrap, topic, [order(f"g{i}", "1002", 1.0, at(10, i)) for i in range(2, 8)])
    lake.stream("--transport", "kafka")
    _assert_quarantined_with_reasons(lake)
    assert lake.read("silver", "order_events").count() == 7
    sources = rows_of(lake.read("silver", "order_events_quarantine"), "_source_file")
    assert all(s.startswith(f"kafka:{topic}/") for (s,) in sources)


# --------------------------------------------------------------------------------------------
# The ingest sink's reference tables: cached between micro-batches, re-read when they change
# --------------------------------------------------------------------------------------------


def test_a_customer_added_to_the_reference_table_mid_stream_is_accepted_from_the_next_batch(
    make_lake, tmp_path
) -> None:
    from featurelake.core.config import load_settings
    from featurelake.core.runner import JobContext
    from featurelake.lakehouse.silver import load_table_specs
    from featurelake.lakehouse.sources import load_sources
    from featurelake.streaming.ingest import EventIngest
    from featurelake.streaming.progress import ProgressBoard

    lake = make_lake()
    settings = load_settings(lake.conf_dir, "local", [f"lakehouse.root={lake.root / 'lake'}"])
    ctx = JobContext(
        job="stream", run_id="r", settings=settings, spark=lake.spark, tables=lake.tables
    )
    checkpoint = tmp_path / "checkpoint"  # what the sink reads of it: the query id
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}) + "\n")
    board = ProgressBoard(None)
    sink = EventIngest(
        ctx,
        load_sources(settings)["order_events"],
        load_table_specs(lake.conf_dir / "tables")["order_events"],
        str(checkpoint),
        None,
        board,
        "ingest",
    )

    def batch(*events: dict[str, Any]) -> DataFrame:
        """One micro-batch as the query hands it to the sink."""
        return lake.spark.createDataFrame(
            [(json.dumps(e), f"test:{e['order_id']}", datetime.now()) for e in events],
            "value string, _source_file string, _produced_at timestamp",
        )

    try:
        sink(batch(order("m1", "2001", 1.0, at(10, 0)), order("m2", "1001", 2.0, at(10, 1))), 0)
        sink(batch(order("m3", "1002", 3.0, at(10, 2))), 1)
        assert sink.references.reads == 1  # the table did not change: its cached rows served
        newcomer = [("2001", "GB")]
        lake.tables.write(
            lake.spark.createDataFrame(newcomer, "customer_id string, country string"),
            lake.path("silver", "customers"),
            "append",
        )
        sink(batch(order("m4", "2001", 4.0, at(10, 3))), 2)
        assert sink.references.reads == 2
        figures = board.snapshot()["ingest"]
        assert (figures["silver_rows"], figures["quarantined_rows"]) == (1, 0)
        sink(batch(order("m4", "2001", 4.0, at(10, 3))), 2)  # a replay commits nothing again
    finally:
        sink.close()
    assert rows_of(lake.read("silver", "order_events"), "order_id") == [("m2",), ("m3",), ("m4",)]
    quarantine = lake.read("silver", "order_events_quarantine")
    assert rows_of(quarantine, "order_id", "_failed_rules") == [("m1", ["known_customer"])]
    assert set(board.snapshot()["ingest"]["sink_phase_seconds"]) >= {"classify", "silver_commit"}


# --------------------------------------------------------------------------------------------
# (a) kill -9 and restart == an uninterrupted run
# --------------------------------------------------------------------------------------------


def _snapshot(lake: Lake) -> dict[str, Any]:
    tables = {
        "silver": ("silver", "order_events", ["order_id", "customer_id", "amount", "order_ts"]),
        "1h": ("gold", "customer_orders_1h", None),
        "24h": ("gold", "customer_orders_24h", None),
    }
    snap: dict[str, Any] = {}
    for name, (layer, table, columns) in tables.items():
        df = lake.read(layer, table)
        snap[name] = rows_of(df, *(columns or df.columns))
    snap["online"] = lake.online_rows()
    return snap


@pytest.mark.scenario  # a query killed with SIGKILL mid-run and restarted (minutes): opt-in
def test_a_killed_and_restarted_stream_equals_an_uninterrupted_one(
    make_lake, kafka_bootstrap, kafka_connector
) -> None:
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    events = [
        order(
            f"k{i:03d}",
            CUSTOMERS[i % 3],
            float(i % 7 + 1),
            at(9, 0, 0) if i == 0 else at(9, i // 2, i % 60),
        )
        for i in range(120)
    ]
    produce(kafka_bootstrap, topic, events)

    crashed = make_lake("crashed", topic=topic, bootstrap=kafka_bootstrap, per_batch=10)
    env = {**os.environ, "FEATURELAKE_LOG_FORMAT": "json", "PYSPARK_PYTHON": sys.executable}
    log_path = crashed.root / "stream.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurelake.cli",
                "stream",
                *crashed.args("--transport", "kafka", "--trigger-seconds", "0"),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its JVM too: the kill takes the whole process group
        )
    silver_log = Path(crashed.path("silver", "order_events"), "_delta_log")
    gold_log = Path(crashed.path("gold", "customer_orders_1h"), "_delta_log")
    deadline = time.monotonic() + 600
    try:
        # Kill it mid-stream: once both kinds of query have committed, with more to come.
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the stream job ended by itself: {log_path.read_text()[-2000:]}")
            if gold_log.is_dir() and len(list(silver_log.glob("*.json"))) >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail(
                f"the stream job committed too little in 600 s: {log_path.read_text()[-2000:]}"
            )
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    partial = crashed.read("silver", "order_events").count()
    assert 0 < partial < len(events)

    crashed.stream("--transport", "kafka")  # restart from the checkpoint, to the end
    uninterrupted = make_lake("uninterrupted", topic=topic, bootstrap=kafka_bootstrap, per_batch=10)
    uninterrupted.stream("--transport", "kafka")

    after_restart, reference = _snapshot(crashed), _snapshot(uninterrupted)
    assert len(reference["silver"]) == len(events)
    assert after_restart == reference


# --------------------------------------------------------------------------------------------
# Operation: progress and stopping
# --------------------------------------------------------------------------------------------


def test_progress_of_every_query_is_written_for_the_metrics(make_lake) -> None:
    lake = make_lake()
    lake.land([order("p1", "1001", 1.0, at(10, 0))])
    lake.stream("--transport", "files")
    progress = json.loads((lake.root / "lake" / "ops" / "stream_progress.json").read_text())
    assert set(progress) == {"order_events-files", "customer_orders_1h", "customer_orders_24h"}
    assert progress["order_events-files"]["silver_rows"] == 1
    view = progress["customer_orders_24h"]
    # Figures of the last micro-batch (a stateful query may end with one without new data).
    assert view["state_rows"] == 1
    for figure in ("batch_duration_seconds", "watermark_timestamp_seconds", "windows_updated"):
        assert figure in view
    assert "end_to_end_lag_seconds" in progress["order_events-files"]


@pytest.mark.scenario  # a continuous query signalled mid-batch (minutes): opt-in
def test_sigterm_lets_the_running_micro_batch_finish_and_ends_the_job(make_lake) -> None:
    lake = make_lake()
    for i in range(6):
        lake.land([order(f"t{i}", "1001", 1.0, at(10, i))])
    log_path = lake.root / "stream.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "featurelake.cli",
                "stream",
                *lake.args("--transport", "files", "--trigger-seconds", "0", "--no-online"),
            ],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    checkpoint = lake.root / "lake" / "_checkpoints" / "stream" / "order_events-files"
    deadline = time.monotonic() + 600
    try:
        while not (checkpoint / "commits" / "0").exists():
            assert process.poll() is None, log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "no micro-batch committed within 600 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(300) == 0, log_path.read_text()[-2000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    # Every micro-batch the query planned (an offset log entry) was committed: none cut short.
    planned = sorted(p.name for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
    done = sorted(p.name for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    assert planned == done
    assert '"stream_stop_requested"' in log_path.read_text()


def test_the_stream_job_needs_a_streaming_source_name_it_knows(make_lake) -> None:
    lake = make_lake()
    code = load_job("stream").run(lake.args("--source", "online_retail"), spark=lake.spark)
    assert code == 2
