"""The serving app's own work per ``POST /features`` request, without HTTP: time and profile.

    .venv/bin/python bench/profile_serving.py [--requests 3000] [--profile]

Builds the real app (``create_app``: middleware, authentication, audit log, metrics) over a
SQLite store of 1,000 entities of bench_online's 3-feature view, and calls it as an ASGI
application in-process, one request after another (no socket, no HTTP parsing: what is left is
FastAPI, featurelake's middleware and endpoint, the lookup and the answer's encoding). Prints
wall and CPU milliseconds per request (CPU time is the less load-sensitive of the two on a
shared machine); ``--profile`` adds a cProfile of the same requests, by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_online import VIEW_YAML  # noqa: E402
from featurelake.feature_store.definitions import load_feature_views_from  # noqa: E402
from featurelake.feature_store.online import (  # noqa: E402
    ServingConfig,
    SqliteOnlineStore,
    encode_entity_key,
)
from featurelake.feature_store.server import create_app  # noqa: E402

KEY = "profile-key-0123456789"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile-serving-"))
    (work / "views.yaml").write_text(VIEW_YAML, encoding="utf-8")
    views = load_feature_views_from([work / "views.yaml"])
    store = SqliteOnlineStore(work / "features.db")
    now = int(time.time() * 1e6)
    payload = json.dumps({"spend_30d": 1.5, "orders_30d": 3, "country": "UK"})
    store.write_rows(
        "bench_customer", [(encode_entity_key([f"c{i}"]), now, payload) for i in range(1000)]
    )
    config = ServingConfig.model_validate(
        {
            "server": {"audit_log": str(work / "audit.jsonl")},
            "access": {
                "roles": {"bench": {"views": ["*"]}},
                "api_keys": [{"id": "bench", "role": "bench", "key": KEY}],
            },
        }
    )
    app = create_app(config, views, store)
    body = json.dumps(
        {"entities": [{"customer_id": "c7"}], "features": ["bench_customer:*"]}
    ).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/features",
        "raw_path": b"/features",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"x-api-key", KEY.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def one() -> None:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(dict(scope), receive, send)
        assert sent[0]["status"] == 200, sent

    async def run(n: int) -> None:
        for _ in range(n):
            await one()

    async def measure() -> None:
        await run(200)  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        await run(args.requests)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"{args.requests:,} requests: {wall / args.requests * 1e3:.3f} ms wall, "
            f"{cpu / args.requests * 1e3:.3f} ms CPU per request"
        )
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await run(args.requests)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)

    asyncio.run(measure())
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
