"""Streaming: fresh features from events, with Spark Structured Streaming (docs/STREAMING.md).

Two kinds of query, one checkpoint folder each under ``streaming.checkpoint_dir``:

* an **ingest** query per streaming source (:mod:`.ingest`): new Kafka messages or landed
  files -> the bronze parser -> :func:`~featurelake.lakehouse.silver.build_silver` with the
  source's silver table declaration (the batch silver code) -> ``silver/<table>`` (clean,
  on-time events), ``<table>_quarantine`` (with the rules each row broke) and ``<table>_late``
  (events behind the source's watermark);
* a **view** query per windowed feature view (:mod:`.views`): the silver table as a Delta
  stream -> :func:`~featurelake.feature_store.windows.window_aggregates` with the view's
  watermark (Spark's stateful aggregation, update mode) -> guarded upserts into the online
  store, then a MERGE into ``gold/<view table>``.

Every write of a micro-batch carries a Delta application transaction keyed by the query id
and the batch id, so a batch replayed after a crash commits nothing twice; online upserts
never put an older value over a newer one.
"""
