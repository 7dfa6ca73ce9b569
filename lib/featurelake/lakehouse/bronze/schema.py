"""Bronze's contract: lineage column names, the bronze schema and the ingest ledger's.

The ledger (``bronze/_ingested_files``) has one row per file, HTTP page or JDBC increment a
bronze commit appended: ``path`` is the file's path, the page's URL (``<url>#page=<n>``) or
``jdbc:<table>``.
"""

from __future__ import annotations

from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

RESCUED_DATA = "_rescued_data"


SOURCE_FILE = "_source_file"


INGESTED_AT = "_ingested_at"


BATCH_ID = "_batch_id"


INGESTED_FILES_TABLE = "_ingested_files"


# The longest reason kept in the ledger's ``error`` column.
ERROR_PREVIEW = 300


# Set by with_decoded_lines on a line that was not valid UTF-8 nor in the fallback encoding.
INVALID_ENCODING = "_invalid_encoding"


INGESTED_FILES_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("path", StringType()),
        StructField("size", LongType()),
        StructField("modified_at", TimestampType()),
        StructField("sha256", StringType()),
        StructField("batch_id", StringType()),
        StructField("rows", LongType()),
        StructField("status", StringType()),
        StructField("ingested_at", TimestampType()),
        StructField("error", StringType()),
        # A JDBC increment's cursor range (cursor_from exclusive, cursor_to inclusive), as the
        # database renders the cursor column; null for files and HTTP pages.
        StructField("cursor_from", StringType()),
        StructField("cursor_to", StringType()),
    ]
)
