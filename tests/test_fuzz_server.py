"""Properties of ``POST /features`` on hostile bodies: never a 500, always a JSON answer.

The app runs in process (FastAPI's TestClient, server errors returned as responses rather than
raised) over a SQLite online store. Bodies are drawn from five families: requests valid but for
their values, arbitrary JSON (deep, with unicode and lone-surrogate keys and strings, huge and
non-finite numbers), near-valid requests with wrong types and unknown or malformed references,
raw bytes around JSON (deep nesting to 100 000 levels, numbers of thousands of digits, invalid
UTF-8, truncation) and random bytes; each sent as ``application/json``, with another content
type or with none.

Property: the status is 200 or 4xx, and the body is a JSON object.

Examples per property (``FEATURELAKE_FUZZ_EXAMPLES`` overrides; see ``tests/fuzzing.py``):

* request bodies: 600
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from featurelake.feature_store.auth import AccessConfig, ApiKeyConfig, RoleConfig
from featurelake.feature_store.definitions import Feature, FeatureView, SourceTable
from featurelake.feature_store.online import (
    ServerConfig,
    ServingConfig,
    SqliteOnlineStore,
    encode_entity_key,
    to_micros,
)
from featurelake.feature_store.server import create_app
from fuzzing import fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

API_KEY = "fuzz-analyst-secret-0001"
VIEWS = {
    "customer_rfm": FeatureView(
        name="customer_rfm",
        entity="customer",
        join_keys=["customer_id"],
        source=SourceTable(layer="gold", table="customer_features_daily"),
        event_timestamp_column="as_of_ts",
        ttl="3d",
        features=[
            Feature(name="recency_days", dtype="int"),
            Feature(name="monetary", dtype="double"),
        ],
    ),
    "credit_profile": FeatureView(
        name="credit_profile",
        entity="credit_client",
        join_keys=["id"],
        source=SourceTable(layer="gold", table="credit_features"),
        event_timestamp_column="snapshot_ts",
        features=[
            Feature(name="limit_bal", dtype="double"),
            Feature(name="age", dtype="int", pii=True),
        ],
    ),
}
ACCESS = AccessConfig(
    roles={"analyst": RoleConfig(views=("customer_rfm", "credit_profile"))},
    api_keys=(ApiKeyConfig(id="fuzz", role="analyst", key=API_KEY),),
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("fuzz-serving")
    store = SqliteOnlineStore(tmp / "online.db")
    at = to_micros(datetime.now(timezone.utc) - timedelta(hours=1))
    store.write_rows(
        "customer_rfm",
        [
            (encode_entity_key(["c1"]), at, json.dumps({"recency_days": 3, "monetary": 12.5})),
            (encode_entity_key([7]), at, json.dumps({"recency_days": None, "monetary": 1.0})),
        ],
    )
    store.write_rows(
        "credit_profile", [(encode_entity_key([7]), at, json.dumps({"limit_bal": 5e4, "age": 41}))]
    )
    config = ServingConfig(
        server=ServerConfig(audit_log=str(tmp / "audit.jsonl"), max_entities=50), access=ACCESS
    )
    with TestClient(create_app(config, VIEWS, store), raise_server_exceptions=False) as running:
        yield running


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

# Any code point, lone surrogates included (JSON spells them "\ud800").
any_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=12)
key_text = st.one_of(
    st.sampled_from(
        [
            "customer_id",
            "id",
            "Customer_ID",
            "customer_id ",
            "",
            "\ud800",
            "\u00e9",
            "\U0001f600",
            "entities",
            "__proto__",
        ]
    ),
    any_text,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.integers(-(10**400), 10**400),
    any_text,
    st.sampled_from(["c1", "7", "", "\x00", "\ud83d\ude00"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(key_text, children, max_size=4)
    ),
    max_leaves=25,
)
references = st.one_of(
    st.sampled_from(
        [
            "customer_rfm:recency_days",
            "customer_rfm:*",
            "customer_rfm:monetary",
            "credit_profile:age",
            "credit_profile:*",
            "customer_rfm:",
            ":",
            "*",
            "",
            "customer_rfm:nope",
            "nope:x",
            "customer_rfm:recency_days:x",
            "customer_rfm:\ud800",
            "CUSTOMER_RFM:*",
        ]
    ),
    any_text,
    json_values,
)
entity = st.one_of(
    st.dictionaries(key_text, scalars, max_size=3),
    st.fixed_dictionaries({"customer_id": scalars}),
    st.fixed_dictionaries({"id": scalars, "customer_id": scalars}),
    json_values,
)
near_valid = st.fixed_dictionaries(
    {
        "entities": st.one_of(st.lists(entity, max_size=60), json_values),
        "features": st.one_of(st.lists(references, max_size=5), json_values),
    },
    optional={"extra": json_values, "\ud800": json_values},
)


# Requests that are valid but for their values: served (200) unless a value is refused.
valid_shape = st.fixed_dictionaries(
    {
        "entities": st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": st.one_of(
                        st.sampled_from(["c1", "c2", "7"]), any_text, st.integers(-(10**30), 10**30)
                    )
                }
            ),
            min_size=1,
            max_size=50,
        ),
        "features": st.lists(
            st.sampled_from(
                ["customer_rfm:recency_days", "customer_rfm:*", "customer_rfm:monetary"]
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


@st.composite
def serialised(draw: st.DrawFn, body: st.SearchStrategy[object]) -> bytes:
    value = draw(body)
    # ensure_ascii=False writes a lone surrogate raw: those bytes are not UTF-8.
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([900, 1000, 1001, 5000, 100_000]))
    digits = draw(st.sampled_from([4300, 4301, 10_000, 100_000]))
    return draw(
        st.sampled_from(
            [
                b"[" * depth + b"]" * depth,
                b'{"entities": '
                + b"[" * depth
                + b"]" * depth
                + b', "features": ["customer_rfm:*"]}',
                b'{"entities": [{"customer_id": '
                + b"9" * digits
                + b'}], "features": ["customer_rfm:*"]}',
                b'{"entities": [{"customer_id": 1e999}], "features": ["customer_rfm:*"]}',
                b'{"entities": [{"customer_id": -0}], "features": ["customer_rfm:*"]}',
                b'{"entities": [{"customer_id": NaN}], "features": ["customer_rfm:*"]}',
                b'{"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:*"]',
                b'{"entities": [{"customer_id": "c\xff"}], "features": ["customer_rfm:*"]}',
                b'{"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:*"]} trailing',
                b"\xef\xbb\xbf"  # a byte-order mark before the JSON
                b'{"entities": [{"customer_id": "c1"}], "features": ["customer_rfm:*"]}',
                b"",
                b"null",
                b"[]",
                b"{}",
                b'"entities"',
                b"\x00",
            ]
        )
    )


bodies = st.one_of(
    serialised(valid_shape),
    serialised(near_valid),
    serialised(json_values),
    raw_bodies(),
    st.binary(max_size=64),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        None,
    ]
)


# --------------------------------------------------------------------------------------------
# Property
# --------------------------------------------------------------------------------------------


@fuzz_settings(600)
@given(body=bodies, content_type=content_types)
def test_any_body_gets_200_or_4xx_with_a_json_answer(client, body, content_type):
    headers = {"X-API-Key": API_KEY}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post("/features", content=body, headers=headers)
    event(f"status {response.status_code}")  # shown with --hypothesis-show-statistics
    assert response.status_code == 200 or 400 <= response.status_code < 500, (
        response.status_code,
        response.text[:500],
    )
    assert isinstance(response.json(), dict), response.text[:500]
