"""Monitoring: profiles, drift, freshness and model quality of what featurelake builds.

The ``monitor`` job (:mod:`featurelake.jobs.monitor`) runs every check declared in
``conf/monitoring.yaml`` (:mod:`featurelake.monitoring.config`) and records the outcome in Delta
tables under ``ops/``:

* :mod:`~featurelake.monitoring.profile` - column profiles of a table in one Spark pass;
* :mod:`~featurelake.monitoring.drift` and :mod:`~featurelake.monitoring.stats` - PSI, KS,
  Jensen-Shannon, chi-square and null-rate change against a reference;
* :mod:`~featurelake.monitoring.freshness` - sources and feature views against their SLAs;
* :mod:`~featurelake.monitoring.models` - prediction drift and performance once labels arrive;
* :mod:`~featurelake.monitoring.alerts` - a status change raises one alert to the sinks;
* :mod:`~featurelake.monitoring.report` - the self-contained HTML dashboard.
"""
