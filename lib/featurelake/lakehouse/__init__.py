"""The lakehouse layers: sources and bronze ingest, cleaning and quality rules, silver, gold and
the feature library gold is computed with (the same functions training and scoring call)."""
