"""The shared ground of every job: configuration, errors, logging, the Spark session, the runner."""
