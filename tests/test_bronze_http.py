"""HTTP JSON sources: paginated pages into bronze, faults retried, every record exactly once.

The API is a real HTTP server on 127.0.0.1 (tests/paged_api_server.py) that answers 429s,
500s, slow and malformed responses and lost connections where a test scripts them.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from featurelake.core.errors import DataError, UserError
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.jobs import load_job
from featurelake.lakehouse.bronze.http_json import parse_json_pages, plan_pages
from featurelake.lakehouse.bronze.http_pages import (
    FetchedPage,
    PageUnavailableError,
    fetch_pages,
    request_headers,
    with_query,
)
from featurelake.lakehouse.connectors import HttpJsonOptions
from featurelake.lakehouse.sources import ColumnSpec, SourceSpec
from paged_api_server import PagedApi, serving

ROOT = Path(__file__).resolve().parents[1]
BRONZE = load_job("bronze")
SILVER = load_job("silver")
COLUMNS = ("id", "name", "amount")
QUICK_RETRY = {"attempts": 4, "backoff_s": 0.01, "max_backoff_s": 0.05}


def _records(n: int) -> list[object]:
    """n records with ids 1..n; record 17 is a bare string, record 33 has an undeclared key."""
    records: list[object] = [
        {"id": i, "name": f"n{i}", "amount": f"{i}.50"} for i in range(1, n + 1)
    ]
    if n >= 33:
        records[16] = "not an object"
        records[32] = {"id": 33, "name": "n33", "amount": "33.50", "colour": "red"}
    return records


def _options(url: str, pagination: dict, **extra) -> HttpJsonOptions:
    return HttpJsonOptions.model_validate(
        {
            "url": url,
            "records": "data",
            "pagination": pagination,
            "timeout_s": 0.5,
            "retry": QUICK_RETRY,
            **extra,
        }
    )


PAGE_STYLE = {"style": "page", "param": "page", "size_param": "per_page", "size": 20}


# --------------------------------------------------------------------------------------------
# Fetching: pagination styles, retries, rate limit (no Spark)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pagination",
    [
        PAGE_STYLE,
        {"style": "offset", "param": "offset", "size_param": "limit", "size": 20},
        {"style": "cursor", "param": "cursor", "cursor_path": "meta.next_cursor"},
        {"style": "next_link", "next_path": "links.next"},
    ],
    ids=["page", "offset", "cursor", "next_link"],
)
def test_every_pagination_style_reaches_every_record_once(pagination):
    api = PagedApi(_records(70), page_size=20, style=pagination["style"])
    with serving(api) as url:
        pages, stats = fetch_pages("orders", _options(url, pagination), {})
    ids = [r["id"] for p in pages for r in json.loads(p.body)["data"] if isinstance(r, dict)]
    assert sorted(ids) == [i for i in range(1, 71) if i != 17]
    # 70 records in pages of 20: the fourth page has 10, fewer than asked, so it is the last
    assert [p.records for p in pages] == [20, 20, 20, 10]
    assert stats.requests == 4 and stats.retries == 0


def test_faults_are_retried_and_only_the_good_answer_is_kept():
    faults = {1: ["429", "500"], 2: ["slow"], 3: ["malformed", "reset"], 4: ["503"]}
    api = PagedApi(_records(70), page_size=20, faults=faults, slow_s=1.0)
    waits: list[float] = []
    with serving(api) as url:
        pages, stats = fetch_pages("orders", _options(url, PAGE_STYLE), {}, sleep=waits.append)
    assert [p.attempts for p in pages] == [3, 2, 3, 2]
    assert all(p.records is not None for p in pages)
    assert stats.requests == 10 and stats.retries == 6
    assert stats.failures == {
        "http_429": 1,
        "http_500": 1,
        "http_503": 1,
        "timeout": 1,
        "malformed": 1,
        "connection": 1,
    }
    # Retry-After: 0 on the 429; otherwise 0.01 s doubled per attempt, capped at 0.05 s
    assert waits == [0.0, 0.02, 0.01, 0.01, 0.02, 0.01]


def test_a_page_still_failing_after_the_retries_stops_the_fetch_naming_it():
    api = PagedApi(_records(70), page_size=20, faults={3: ["always-503"]})
    with serving(api) as url, pytest.raises(PageUnavailableError) as error:
        fetch_pages("orders", _options(url, PAGE_STYLE), {}, sleep=lambda s: None)
    message = str(error.value)
    assert "page 3" in message and "after 4 attempt(s)" in message and "HTTP 503" in message
    assert api.requests[3] == 4 and api.requests[4] == 0


def test_a_client_error_is_not_retried():
    api = PagedApi(_records(5), page_size=20, token="t0ken")
    with serving(api) as url, pytest.raises(UserError, match="HTTP 401"):
        fetch_pages("orders", _options(url, PAGE_STYLE), {}, sleep=lambda s: None)
    assert api.requests[1] == 0  # refused before the page was even looked at


def test_a_page_that_stays_malformed_is_kept_whole_where_pagination_can_go_on():
    api = PagedApi(_records(50), page_size=20, faults={2: ["malformed"] * 4})
    with serving(api) as url:
        pages, _ = fetch_pages("orders", _options(url, PAGE_STYLE), {}, sleep=lambda s: None)
    assert [p.records for p in pages] == [20, None, 10]
    assert pages[1].body == api.body(2)[:-7]


def test_a_malformed_page_with_cursor_pagination_fails_the_fetch():
    cursor = {"style": "cursor", "param": "cursor", "cursor_path": "meta.next_cursor"}
    api = PagedApi(_records(50), page_size=20, style="cursor", faults={2: ["malformed"] * 4})
    with serving(api) as url, pytest.raises(DataError, match="next cursor is unknown"):
        fetch_pages("orders", _options(url, cursor), {}, sleep=lambda s: None)


def test_the_rate_limit_spaces_requests():
    api = PagedApi(_records(50), page_size=20)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    with serving(api) as url:
        fetch_pages(
            "orders",
            _options(url, PAGE_STYLE, requests_per_second=4),
            {},
            sleep=sleep,
            clock=lambda: now[0],
        )
    assert waits == [0.25, 0.25]  # three requests at 0, 0.25 and 0.5 s of a frozen clock


def test_secret_headers_come_from_the_environment(monkeypatch):
    options = _options("http://x/o", PAGE_STYLE, headers_env={"Authorization": "API_AUTH"})
    with pytest.raises(UserError, match="API_AUTH"):
        request_headers("orders", options)
    monkeypatch.setenv("API_AUTH", "Bearer abc")
    headers, secrets = request_headers("orders", options)
    assert headers["Authorization"] == "Bearer abc" and secrets == ["Bearer abc"]


def test_query_parameters_replace_those_of_the_same_name():
    assert with_query("http://h/o?page=1&x=a b", {"page": "2"}) == "http://h/o?x=a+b&page=2"


def _page(number: int, body: bytes, url: str = "http://h/o") -> FetchedPage:
    return FetchedPage(number, url, body, datetime(2024, 1, 1, tzinfo=timezone.utc), 1, 0)


def test_pages_already_in_the_ledger_with_the_same_body_are_left_out():
    same, changed, new = _page(1, b"[1]"), _page(2, b"[2, 3]"), _page(3, b"[4]")
    ledger = [
        {
            "path": same.path,
            "sha256": same.sha256,
            "status": "ingested",
            "batch_id": "b1",
            "ingested_at": datetime(2024, 1, 1, tzinfo=timezone.utc),
        },
        {
            "path": changed.path,
            "sha256": "old",
            "status": "ingested",
            "batch_id": "b1",
            "ingested_at": datetime(2024, 1, 1, tzinfo=timezone.utc),
        },
    ]
    to_ingest, unchanged, statuses = plan_pages([same, changed, new], ledger)
    assert to_ingest == [changed, new] and unchanged == [same]
    assert statuses == {changed.path: "reingested", new.path: "ingested"}


def test_page_bodies_split_into_records_parsed_as_json_lines(spark):
    spec = SourceSpec(
        name="orders_api",
        format="http_json",
        http_json=_options("http://h/o", PAGE_STYLE),
        columns=tuple(ColumnSpec(name=c) for c in COLUMNS),
    )
    pages = spark.createDataFrame(
        [
            ("p1", '{"data": [{"id": 1, "name": "a", "amount": 2.5}, {"id": 2, "x": 1}, "s"]}'),
            ("p2", '{"data": []}'),
            ("p3", '{"data": [{"id": 3'),
            ("p4", '{"error": "busy"}'),
        ],
        "_source_file string, body string",
    )
    rows = pages.transform(parse_json_pages, spec=spec, records_path="data").collect()
    got = sorted(
        ((r["_source_file"], r["id"], r["amount"], r["_rescued_data"]) for r in rows),
        key=lambda row: tuple(v or "" for v in row),
    )
    assert got == [
        ("p1", None, None, "s"),
        ("p1", "1", "2.5", None),
        ("p1", "2", None, '{"id":2,"x":1}'),
        ("p3", None, None, '{"data": [{"id": 3'),
        ("p4", None, None, '{"error": "busy"}'),
    ]


# --------------------------------------------------------------------------------------------
# The bronze job
# --------------------------------------------------------------------------------------------


def _conf(tmp_path: Path, url: str, pagination: dict = PAGE_STYLE, **extra) -> Path:
    conf = tmp_path / "conf"
    if not conf.exists():
        shutil.copytree(ROOT / "conf", conf)
    declaration = {
        "description": "orders from a paginated API (test)",
        "format": "http_json",
        "http_json": {
            "url": url,
            "records": "data",
            "pagination": pagination,
            "timeout_s": 0.5,
            "retry": QUICK_RETRY,
            **extra,
        },
        "columns": [{"name": c} for c in COLUMNS],
    }
    (conf / "sources" / "orders_api.yaml").write_text(json.dumps(declaration))
    return conf


def _run(spark, tmp_path: Path, conf: Path) -> int:
    argv = [
        "--conf-dir", str(conf), "--conf", f"lakehouse.root={tmp_path / 'lake'}",
        "--source", "orders_api",
    ]  # fmt: skip
    return run_job("bronze", BRONZE.main, argv=argv, add_arguments=BRONZE.add_arguments,
                   spark=spark)  # fmt: skip


def _told(stderr: str) -> str:
    """The one line the job told the person at the terminal (the rest is JSON log lines)."""
    told = [line for line in stderr.splitlines() if line.startswith("featurelake bronze:")]
    assert len(told) == 1, stderr
    return told[0]


def _table(spark, tmp_path: Path, name: str):
    return DeltaTables(spark).read(str(tmp_path / "lake" / "bronze" / name), record=False)


def test_fifty_pages_with_faults_land_every_record_exactly_once(spark, tmp_path):
    faults = {
        2: ["429"], 5: ["500", "503"], 9: ["slow"], 13: ["malformed"], 17: ["reset"],
        21: ["429", "429", "500"], 30: ["malformed", "slow"], 44: ["503"], 50: ["500"],
        51: ["429"],
    }  # fmt: skip
    api = PagedApi(_records(1000), page_size=20, faults=faults, slow_s=1.0)
    with serving(api) as url:
        assert _run(spark, tmp_path, _conf(tmp_path, url)) == 0
    bronze = _table(spark, tmp_path, "orders_api").collect()
    ids = [r["id"] for r in bronze if r["id"] is not None]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 1001) if i != 17]  # each once
    assert len(bronze) == 1000  # and the bare string record, rescued
    rescued = {r["_rescued_data"] for r in bronze if r["_rescued_data"] is not None}
    assert rescued == {"not an object", '{"id":33,"name":"n33","amount":"33.50","colour":"red"}'}
    by_id = {r["id"]: r for r in bronze}
    assert by_id["45"]["_source_file"] == f"{url}?per_page=20&page=3#page=3"
    assert by_id["45"]["name"] == "n45" and by_id["45"]["amount"] == "45.50"
    assert api.requests[21] == 4 and api.requests[9] == 2
    ledger = _table(spark, tmp_path, "_ingested_files").collect()
    assert len(ledger) == 51  # 50 pages of records and the empty page that ends them
    assert sum(r["rows"] for r in ledger) == 1000
    page_3 = next(r for r in ledger if r["path"].endswith("#page=3"))
    assert (page_3["rows"], page_3["status"], page_3["size"]) == (20, "ingested", len(api.body(3)))
    # every page's body as the server sent it, once (only the answer that succeeded is kept)
    pages = {r["page"]: r for r in _table(spark, tmp_path, "orders_api_pages").collect()}
    assert sorted(pages) == list(range(1, 52))
    assert bytes(pages[3]["body"]) == api.body(3) and bytes(pages[51]["body"]) == api.body(51)
    assert pages[3]["url"] == f"{url}?per_page=20&page=3"


def test_a_page_unavailable_after_the_retries_fails_the_run_and_commits_nothing(
    spark, tmp_path, capsys
):
    api = PagedApi(_records(200), page_size=20, faults={7: ["always-503"]})
    with serving(api) as url:
        assert _run(spark, tmp_path, _conf(tmp_path, url)) == 75
    told = _told(capsys.readouterr().err)
    assert told.startswith("featurelake bronze: PageUnavailableError: source orders_api: page 7")
    assert "after 4 attempt(s) (last: HTTP 503" in told
    assert not (tmp_path / "lake" / "bronze" / "orders_api").exists()
    assert not (tmp_path / "lake" / "bronze" / "_ingested_files").exists()


def test_a_rerun_over_an_unchanged_api_writes_nothing_and_a_changed_page_is_reingested(
    spark, tmp_path
):
    api = PagedApi(_records(50), page_size=20)
    with serving(api) as url:
        conf = _conf(tmp_path, url)
        assert _run(spark, tmp_path, conf) == 0
        table = str(tmp_path / "lake" / "bronze" / "orders_api")
        assert DeltaTables(spark).version(table) == 0
        assert _run(spark, tmp_path, conf) == 0
        assert DeltaTables(spark).version(table) == 0  # nothing new
        api.records[45] = {"id": 46, "name": "renamed", "amount": "1.00"}  # on page 3
        assert _run(spark, tmp_path, conf) == 0
    rows = _table(spark, tmp_path, "orders_api").collect()
    assert len(rows) == 50 + 10  # page 3 again, with its ten records
    assert sorted(r["name"] for r in rows if r["id"] == "46") == ["n46", "renamed"]
    statuses = sorted(r["status"] for r in _table(spark, tmp_path, "_ingested_files").collect())
    assert statuses == ["ingested"] * 3 + ["reingested"]
    pages = _table(spark, tmp_path, "orders_api_pages").collect()
    assert sorted(r["page"] for r in pages) == [1, 2, 3, 3]  # page 3's old and new bodies


def test_a_token_from_the_environment_is_sent_and_never_logged(
    spark, tmp_path, capsys, monkeypatch
):
    token = "tok-8f2c4e91d7"
    api = PagedApi(_records(30), page_size=20, token=token)
    with serving(api) as url:
        conf = _conf(tmp_path, url, headers_env={"Authorization": "ORDERS_API_AUTH"})
        assert _run(spark, tmp_path, conf) == 2  # variable unset: one line naming it
        assert "ORDERS_API_AUTH" in _told(capsys.readouterr().err)
        monkeypatch.setenv("ORDERS_API_AUTH", "Bearer wrong")
        assert _run(spark, tmp_path, conf) == 2  # refused: 401, not retried
        monkeypatch.setenv("ORDERS_API_AUTH", f"Bearer {token}")
        assert _run(spark, tmp_path, conf) == 0
    assert _table(spark, tmp_path, "orders_api").count() == 30
    logged = capsys.readouterr().err + "".join(
        p.read_text() for p in (tmp_path / "lake" / "ops" / "logs").glob("*.log")
    )
    assert "HTTP 401" in logged and token not in logged and "wrong" not in logged


def test_silver_reads_an_http_source_through_its_table_declaration(spark, tmp_path):
    api = PagedApi(_records(50), page_size=20)
    with serving(api) as url:
        conf = _conf(tmp_path, url)
        assert _run(spark, tmp_path, conf) == 0
    (conf / "tables" / "orders.yaml").write_text(
        json.dumps(
            {
                "name": "orders",
                "source": "orders_api",
                "columns": [
                    {"name": "order_id", "source": "id", "type": "long"},
                    {"name": "name", "source": "name", "type": "string"},
                    {"name": "amount", "source": "amount", "type": "double"},
                ],
                "expectations": [{"type": "not_null", "column": "order_id"}],
            }
        )
    )
    argv = ["--conf-dir", str(conf), "--conf", f"lakehouse.root={tmp_path / 'lake'}",
            "--table", "orders", "--as-of", "2030-01-01T00:00:00"]  # fmt: skip
    assert run_job("silver", SILVER.main, argv=argv, add_arguments=SILVER.add_arguments,
                   spark=spark) == 0  # fmt: skip
    lake = DeltaTables(spark)
    silver = lake.read(str(tmp_path / "lake" / "silver" / "orders"), record=False).collect()
    quarantine = lake.read(str(tmp_path / "lake" / "silver" / "orders_quarantine"), record=False)
    # records 17 (not an object) and 33 (an undeclared key) were rescued: quarantined, the
    # other 48 typed
    assert sorted(r["order_id"] for r in silver) == [i for i in range(1, 51) if i not in (17, 33)]
    assert {r["order_id"]: r["amount"] for r in silver}[45] == 45.5
    assert quarantine.count() == 2
