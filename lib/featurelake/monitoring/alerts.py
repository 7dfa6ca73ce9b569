"""Alerts: a condition whose status changes raises one alert, delivered to every sink.

A **condition** is a check and its subject (``drift`` of ``gold/credit_features:limit_bal``,
``freshness`` of ``source/online_retail``); its status in a run is the worst status of its
results in that run (windows and slices of one column are one condition). An alert is raised
when that status differs from the condition's status in the latest earlier run that checked it
(a condition never seen before counts as ``ok``), unless an alert with the same condition and
status was raised within ``alerts.cooldown`` (a condition flapping back and forth alerts once);
an unchanged warning or critical condition is raised again after ``alerts.repeat_after`` when
that is set. ``skipped`` results never raise alerts.

Delivery goes through an outbox: each new alert is first written as a file per sink under
``alerts.outbox``, then the sink is tried; a delivered alert's file is removed, an undelivered
one stays and is tried first on the next run. A webhook that does not answer within its
timeout, after its retries, stops that sink's deliveries for the run: a dead receiver costs one
bounded wait and never fails the run. Receivers get each alert's ``alert_id`` (retrying after a
lost answer may deliver twice; the id lets a receiver drop the copy).

Example:
    >>> alerts = decide_alerts(current, previous, recent, settings, now=now, run_id="r1")
    >>> [a.status for a in alerts]
    ['critical']
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from featurelake.monitoring.config import AlertSettings, JsonlSink, WebhookSink
from featurelake.monitoring.drift import STATUS_ORDER

__all__ = [
    "Alert",
    "Delivery",
    "condition_key",
    "conditions",
    "decide_alerts",
    "deliver_pending",
    "post_json",
    "queue_alerts",
]

log = logging.getLogger(__name__)

#: Statuses a condition can have; ``error`` (a check that failed to run) ranks above critical.
CONDITION_ORDER = (*STATUS_ORDER, "error")


def condition_key(check: str, subject: str) -> str:
    """The condition's name: ``<check>|<subject>``."""
    return f"{check}|{subject}"


@dataclass(frozen=True)
class Alert:
    """One raised alert: a row of ``ops/monitor_alerts`` and the body sinks receive."""

    alert_id: str
    dedupe_key: str
    check: str
    subject: str
    status: str
    previous_status: str
    metric: str | None
    value: float | None
    threshold: float | None
    detail: str
    message: str
    table: str | None
    table_version: int | None
    window: str | None
    model: str | None
    model_version: str | None
    raised_at: datetime
    run_id: str

    def payload(self) -> dict[str, Any]:
        """The JSON body: every field (times in ISO 8601) and ``text``, the one-line message."""
        body = asdict(self)
        body["raised_at"] = self.raised_at.isoformat()
        body["text"] = self.message
        return body


def _rank(status: str) -> int:
    return CONDITION_ORDER.index(status) if status in CONDITION_ORDER else -1


def conditions(results: Iterable[Any]) -> dict[str, Any]:
    """Per condition, the result with its worst status (``skipped`` results are ignored).

    Args:
        results: :class:`~featurelake.monitoring.results.CheckResult` objects of one run.
    """
    chosen: dict[str, Any] = {}
    for result in results:
        if result.status not in CONDITION_ORDER:
            continue
        key = condition_key(result.check, result.subject)
        if key not in chosen or _rank(result.status) > _rank(chosen[key].status):
            chosen[key] = result
    return chosen


def _message(result: Any, previous: str) -> str:
    if result.status == "ok":
        return f"[RESOLVED] {result.check} {result.subject}: {result.detail} (was {previous})"
    return f"[{result.status.upper()}] {result.check} {result.subject}: {result.detail}"


def decide_alerts(
    current: Mapping[str, Any],
    previous: Mapping[str, str],
    recent: Sequence[tuple[str, str, datetime]],
    settings: AlertSettings,
    *,
    now: datetime,
    run_id: str,
) -> list[Alert]:
    """The alerts this run raises (plain Python).

    Args:
        current: this run's conditions (:func:`conditions`).
        previous: each condition's status in the latest earlier run that checked it.
        recent: (condition, status, raised at) of alerts raised before this run.
        settings: cool-down and repeat interval.
        now: this run's time.
        run_id: this run.

    Returns:
        One alert per condition whose status changed (outside the cool-down), or whose
        unchanged warning or critical status is due to be repeated.
    """
    last_raised: dict[tuple[str, str], datetime] = {}
    for key, status, raised_at in recent:
        if raised_at > last_raised.get(
            (key, status), datetime.min.replace(tzinfo=raised_at.tzinfo)
        ):
            last_raised[(key, status)] = raised_at
    alerts = []
    for key, result in sorted(current.items()):
        before = previous.get(key, "ok")
        raised = last_raised.get((key, result.status))
        if result.status != before:
            if raised is not None and now - raised < settings.cooldown:
                continue
        elif not (
            result.status in ("warning", "critical", "error")
            and settings.repeat_after is not None
            and (raised is None or now - raised >= settings.repeat_after)
        ):
            continue
        alerts.append(
            Alert(
                alert_id=uuid.uuid4().hex,
                dedupe_key=key,
                check=result.check,
                subject=result.subject,
                status=result.status,
                previous_status=before,
                metric=result.metric,
                value=result.value,
                threshold=result.threshold,
                detail=result.detail,
                message=_message(result, before),
                table=result.table,
                table_version=result.table_version,
                window=result.window,
                model=result.model,
                model_version=result.model_version,
                raised_at=now,
                run_id=run_id,
            )
        )
    return alerts


# --------------------------------------------------------------------------------------------
# Outbox and sinks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What one sink delivered this run, and what waits for the next."""

    sink: str
    delivered: int
    pending: int
    error: str | None = None


def _sink_folder(outbox: str, sink: str) -> Path:
    return Path(outbox, sink)


def queue_alerts(alerts: Sequence[Alert], settings: AlertSettings, outbox: str) -> None:
    """Write each alert into the outbox of every enabled sink (one JSON file per alert).

    Files are named by raise time and id, so delivery follows the order alerts were raised.
    """
    for sink in settings.sinks:
        if isinstance(sink, WebhookSink) and not sink.url:
            continue
        folder = _sink_folder(outbox, sink.name)
        folder.mkdir(parents=True, exist_ok=True)
        for alert in alerts:
            stamp = alert.raised_at.strftime("%Y%m%dT%H%M%S%f")
            target = folder / f"{stamp}-{alert.alert_id}.json"
            temporary = target.with_suffix(".tmp")
            temporary.write_text(json.dumps(alert.payload(), sort_keys=True))
            os.replace(temporary, target)  # a reader never sees half a file


def post_json(sink: WebhookSink, body: Mapping[str, Any]) -> str | None:
    """POST ``body`` to the webhook, retrying; None when delivered, else the last error.

    Each attempt is bounded by ``timeout_seconds``; a 2xx answer is a delivery; a 4xx answer
    other than 408 and 429 is not retried (the receiver refuses this body).
    """
    data = json.dumps(body, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", **sink.headers}
    wait = sink.backoff_seconds
    error = "not attempted"
    for attempt in range(sink.retries + 1):
        if attempt:
            time.sleep(wait)
            wait *= 2
        request = urllib.request.Request(sink.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=sink.timeout_seconds) as answer:
                if 200 <= answer.status < 300:
                    return None
                error = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                return error
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, bad answer
            error = f"{type(exc).__name__}: {exc}"
    return error


def _append_line(path: str, body: Mapping[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(body, sort_keys=True) + "\n")


def deliver_pending(settings: AlertSettings, outbox: str, root: str) -> list[Delivery]:
    """Deliver every sink's outbox in order; what cannot be delivered stays for the next run.

    Args:
        settings: the sinks.
        outbox: the outbox folder.
        root: the lakehouse root (a relative JSON-lines path is under it).

    Returns:
        One :class:`Delivery` per enabled sink.
    """
    outcomes = []
    for sink in settings.sinks:
        if isinstance(sink, WebhookSink) and not sink.url:
            continue
        folder = _sink_folder(outbox, sink.name)
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        delivered, error = 0, None
        for file in files:
            body = json.loads(file.read_text())
            if isinstance(sink, JsonlSink):
                target = sink.path if os.path.isabs(sink.path) else os.path.join(root, sink.path)
                try:
                    _append_line(target, body)
                except OSError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            else:
                error = post_json(sink, body)
            if error is not None:
                log.warning(
                    "alert_undelivered",
                    extra={"fields": {"sink": sink.name, "error": error, "kept": str(folder)}},
                )
                break  # the receiver is down: keep the rest for the next run
            file.unlink()
            delivered += 1
        outcomes.append(Delivery(sink.name, delivered, len(files) - delivered, error))
    return outcomes


def cooldown_horizon(settings: AlertSettings, now: datetime) -> datetime:
    """The earliest raise time that still matters for the cool-down and the repeat interval."""
    span = max(settings.cooldown, settings.repeat_after or timedelta(0))
    return now - span
