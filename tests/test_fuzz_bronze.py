"""Properties of bronze's line reader on hostile files, against Python's csv and json modules.

Each example writes one real file (plain or gzip) of 20-50 lines built from hostile pieces -
quotes in every position, doubled and unterminated quotes, commas, CR/LF/CRLF line ends (also
inside a quoted field), NUL, byte-order marks, U+FFFD, U+2028, invalid UTF-8 (truncated and
overlong sequences, encoded surrogates, Latin-1 and Windows-1252 bytes), whole lines of random
bytes, blank lines and a repeated header - and reads it with :func:`read_source_rows` for the
``online_retail`` CSV source (with no fallback encoding, ``windows-1252`` or ``iso-8859-1``)
and the ``customer_profiles`` JSON-lines source, in one Spark action.

Properties, for every example:

* every non-blank data line becomes exactly one row (lines split at CR, LF and CRLF, as the
  reader splits them; a byte-order mark opening the file is not part of its first line);
* a row is rescued (``_rescued_data`` holds its line) exactly when the line is not valid text
  in the source's encoding, or when Python does not read it as a record of the declared
  columns: ``csv.reader(strict=True)`` fails or finds another number of fields;
  ``json.loads`` fails, finds no object, an undeclared key, NaN or half a surrogate pair;
  and a CSV line holding NUL;
* an unrescued row holds the fields Python read (for JSON: when every value is a string or
  null), so no row holds U+FFFD unless it is rescued or its line held U+FFFD as valid UTF-8.

Examples per property (``FEATURELAKE_FUZZ_EXAMPLES`` overrides; see ``tests/fuzzing.py``):

* CSV files: 80
* JSON-lines files: 60
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurelake.lakehouse.bronze import RESCUED_DATA, SOURCE_FILE, read_source_rows
from featurelake.lakehouse.sources import load_source_file
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
RETAIL = load_source_file(ROOT / "conf" / "sources" / "online_retail.yaml")
PROFILES = load_source_file(ROOT / "conf" / "sources" / "customer_profiles.yaml")
HEADER = ",".join(RETAIL.column_names)
BOM = b"\xef\xbb\xbf"
ANY = "any fields"  # a JSON line whose non-string values Spark renders as it likes


@dataclass(frozen=True)
class DataLine:
    """One data line as the reader sees it, and what its row must be.

    Attributes:
        text: the line decoded (invalid bytes as U+FFFD), as ``_rescued_data`` would hold it.
        genuine_text: False when the bytes were not valid in the source's encoding.
        genuine_fffd: the line is genuine text spelling U+FFFD (raw, or as a JSON escape).
        fields: the fields an unrescued row must hold ("" for null); None: the row must be
            rescued; ANY: not rescued, fields not compared.
    """

    text: str
    genuine_text: bool
    genuine_fffd: bool
    fields: tuple[str, ...] | str | None


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


def split_lines(data: bytes) -> list[bytes]:
    """Lines as Hadoop's line reader splits them: at CRLF, CR or LF."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines and lines[-1] == b"":
        lines.pop()  # the text after the last line end
    return lines


def decode(line: bytes, fallback: str | None) -> tuple[str, bool]:
    """(text, genuine): UTF-8, else the fallback encoding, else UTF-8 with U+FFFD."""
    try:
        return line.decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    if fallback is not None:
        try:
            return line.decode({"windows-1252": "cp1252", "iso-8859-1": "latin-1"}[fallback]), True
        except UnicodeDecodeError:
            pass
    return line.decode("utf-8", "replace"), False


def csv_fields(text: str) -> tuple[str, ...] | None:
    if "\x00" in text:
        return None  # NUL is no text character (Spark's CSV parser takes it for an escape)
    try:
        fields = next(
            csv.reader([text], delimiter=",", quotechar='"', doublequote=True, strict=True), []
        )
    except csv.Error:
        return None
    return tuple(fields) if len(fields) == len(RETAIL.column_names) else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _holds_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(k) or _holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_lone_surrogate(v) for v in value)
    return False


def json_fields(text: str) -> tuple[str, ...] | str | None:
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    columns = PROFILES.column_names
    if not isinstance(record, dict) or set(record) - set(columns):
        return None
    if _holds_lone_surrogate(record):  # "\ud800": half a pair, no UTF-8 text can hold it
        return None
    if all(v is None or isinstance(v, str) for v in record.values()):
        return tuple(record.get(c) or "" for c in columns)
    return ANY


def data_lines(
    data: bytes, *, header: str | None, fallback: str | None, fields: Any
) -> list[DataLine]:
    lines = split_lines(data)
    if header is not None:
        lines = lines[1:]
    out = []
    for raw in lines:
        text, genuine = decode(raw, fallback)
        bare = text[1:] if text.startswith("\ufeff") else text
        if bare == "" or bare == header:
            continue  # blank, or taken for the header
        spells_fffd = "\ufffd" in text or "\\ufffd" in text.lower()
        out.append(
            DataLine(text, genuine, genuine and spells_fffd, fields(text) if genuine else None)
        )
    return out


def assert_rows_match_lines(
    rows: list[Any], lines: list[DataLine], columns: tuple[str, ...], path: str
) -> None:
    """Every data line is one row, rescued exactly when it must be, holding Python's fields."""
    assert len(rows) == len(lines), (len(rows), len(lines))
    assert {r[SOURCE_FILE] for r in rows} <= {path}
    rescued = Counter(r[RESCUED_DATA] for r in rows if r[RESCUED_DATA] is not None)
    must_rescue = Counter(line.text for line in lines if line.fields is None)
    assert rescued == must_rescue, (rescued - must_rescue, must_rescue - rescued)
    unrescued = Counter(tuple(r[c] or "" for c in columns) for r in rows if r[RESCUED_DATA] is None)
    expected = Counter(line.fields for line in lines if isinstance(line.fields, tuple))
    wildcards = sum(1 for line in lines if line.fields == ANY)
    assert not expected - unrescued, (expected - unrescued, unrescued - expected)
    assert sum((unrescued - expected).values()) == wildcards, unrescued - expected
    genuine_fffd = any(line.genuine_fffd for line in lines)
    for row in rows:
        if row[RESCUED_DATA] is None and any("\ufffd" in (row[c] or "") for c in columns):
            assert genuine_fffd, row


def write_file(folder: str, name: str, data: bytes, compressed: bool) -> str:
    path = Path(folder) / (name + (".gz" if compressed else ""))
    path.write_bytes(gzip.compress(data) if compressed else data)
    return str(path)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

HOSTILE_CHARS = [
    ",",
    '"',
    '"',
    " ",
    "\t",
    "\x00",
    "\ufeff",
    "\ufffd",
    "\u00e9",
    "\u2028",
    "\u0085",
    "\r",
    "\n",
    "a",
    "Z",
    "1",
    ".",
    "-",
    "'",
    "\\",
    "{",
    "}",
    ":",
]
# Bytes that are not UTF-8: a lone continuation, a truncated sequence, an overlong '/', an
# encoded surrogate, a code point past U+10FFFF, Latin-1 'ñ', and Windows-1252's undefined 0x81.
BAD_BYTES = [
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf1",
    b"\xff",
    b"\x81",
    b"\x9d",
    b"\xe9t\xe9",
]
LINE_ENDS = [b"\n", b"\n", b"\n", b"\r\n", b"\r"]

field_text = st.one_of(
    st.text(alphabet=st.sampled_from(HOSTILE_CHARS), max_size=6),
    st.text(max_size=6),
    st.sampled_from(
        [
            "536365",
            "85123A",
            "WHITE HANGING HEART",
            "6",
            "2010-12-01 08:26:00",
            "2.55",
            "17850",
            "United Kingdom",
            "",
        ]
    ),
)


@st.composite
def csv_field(draw: st.DrawFn) -> str:
    text = draw(field_text)
    how = draw(st.sampled_from(["plain", "plain", "quoted", "quoted", "open", "stray", "after"]))
    if how == "quoted":
        return '"' + text.replace('"', '""') + '"'
    if how == "open":  # an opening quote never closed
        return '"' + text
    if how == "stray":  # a quote somewhere in the field
        at = draw(st.integers(0, len(text)))
        return text[:at] + '"' + text[at:]
    if how == "after":  # text after the closing quote
        return '"' + text.replace('"', '""') + '"' + draw(st.sampled_from(["x", " ", '"']))
    return text


@st.composite
def csv_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["fields"] * 6 + ["bytes", "blank", "header", "clean"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "blank":
        return draw(st.sampled_from([b"", BOM, b" ", b"\t"]))
    if kind == "header":
        return draw(st.sampled_from([HEADER.encode(), BOM + HEADER.encode()]))
    if kind == "clean":
        return b'536365,85123A,"HEART, WHITE",6,2010-12-01 08:26:00,2.55,17850,United Kingdom'
    count = draw(st.sampled_from([8, 8, 8, 8, 7, 9, 1]))
    line = ",".join(draw(st.lists(csv_field(), min_size=count, max_size=count))).encode(
        "utf-8", "surrogatepass"
    )
    if draw(st.integers(0, 4)) == 0:  # bytes that are not UTF-8, somewhere in the line
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from(BAD_BYTES)) + line[at:]
    return line


@st.composite
def file_bytes(draw: st.DrawFn, lines: st.SearchStrategy[bytes], first: bytes | None) -> bytes:
    body = draw(st.lists(lines, min_size=20, max_size=50))
    if first is not None:
        body = [first, *body]
    data = b"".join(line + draw(st.sampled_from(LINE_ENDS)) for line in body)
    if draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # no line end after the last line
    if draw(st.integers(0, 3)) == 0:
        data = BOM + data
    return data


json_value = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.text(
        alphabet=st.sampled_from(HOSTILE_CHARS + ["\ud800", "\udc00", "\U0001f600"]), max_size=6
    ),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y"]), st.text(max_size=3), max_size=2),
)


@st.composite
def json_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["object"] * 6 + ["bytes", "blank"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "blank":
        return draw(st.sampled_from([b"", BOM, b" "]))
    keys = st.sampled_from(PROFILES.column_names)
    record = draw(
        st.dictionaries(
            keys, st.one_of(st.text(max_size=10), json_value), max_size=len(PROFILES.column_names)
        )
    )
    if draw(st.integers(0, 5)) == 0:
        record[draw(st.sampled_from(["extra", "Name", "", "\u00e9", "customer_id "]))] = "x"
    text = json.dumps(
        record,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    mutation = draw(
        st.sampled_from(
            ["none"] * 6 + ["truncate", "junk", "twice", "single", "array", "bom", "bad_bytes"]
        )
    )
    if mutation == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif mutation == "junk":
        text += draw(st.sampled_from([" junk", "]", "}", ",", " // note", "\t", "  "]))
    elif mutation == "twice":
        text += text
    elif mutation == "single":
        text = text.replace('"', "'")
    elif mutation == "array":
        text = f"[{text}]"
    elif mutation == "bom":
        text = "\ufeff" + text
    line = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: invalid UTF-8
    if mutation == "bad_bytes":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from(BAD_BYTES)) + line[at:]
    return line


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@fuzz_settings(80)
@given(
    data=file_bytes(csv_line(), first=HEADER.encode()),
    compressed=st.booleans(),
    fallback=st.sampled_from([None, None, "windows-1252", "iso-8859-1"]),
)
def test_csv_lines_become_one_row_each_rescued_unless_python_reads_the_same_fields(
    spark, tmp_path, data, compressed, fallback
):
    spec = RETAIL.model_copy(
        update={"options": RETAIL.options.model_copy(update={"fallback_encoding": fallback})}
    )
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        path = write_file(folder, "lines.csv", data, compressed)
        rows = read_source_rows(spark, spec, [path]).collect()
    lines = data_lines(data, header=HEADER, fallback=fallback, fields=csv_fields)
    assert_rows_match_lines(rows, lines, RETAIL.column_names, path)


@fuzz_settings(60)
@given(data=file_bytes(json_line(), first=None), compressed=st.booleans())
def test_json_lines_become_one_row_each_rescued_unless_python_reads_the_same_record(
    spark, tmp_path, data, compressed
):
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        path = write_file(folder, "lines.json", data, compressed)
        rows = read_source_rows(spark, PROFILES, [path]).collect()
    lines = data_lines(data, header=None, fallback=None, fields=json_fields)
    assert_rows_match_lines(rows, lines, PROFILES.column_names, path)
