"""The monitoring dashboard as one self-contained HTML page (plain Python, no Spark).

Everything is inline - styles, and charts drawn as SVG - so the page opens from a file, from the
serving API's ``/dashboard`` or from a mail attachment, with no network access. Sections:
what needs attention, freshness, drift per table and feature (reference-vs-current histograms
beside the metrics), model performance per scoring batch over time, and the recent alerts.

Example:
    >>> html = render_dashboard(dashboard_data(ctx))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from featurelake.monitoring.report import DashboardData, Histogram

__all__ = ["histogram_svg", "line_chart_svg", "render_dashboard"]

_STATUS_COLOURS = {
    "ok": "#1a7f37",
    "warning": "#b35900",
    "critical": "#c62828",
    "error": "#6a1b9a",
    "skipped": "#6b7280",
}
_RANK = {"ok": 0, "skipped": 0, "warning": 1, "critical": 2, "error": 3}
_DRIFT_METRICS = ("psi", "ks", "js", "chi2_pvalue", "null_rate_change")

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;
color:#1f2328}
header{background:#1f2937;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1;font-size:13px}
main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:18px 0;padding:14px 18px}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:16px 0 6px;color:#374151}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3;vertical-align:middle}
th{color:#6b7280;font-weight:600}
td.num{font-variant-numeric:tabular-nums;text-align:right}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
font-weight:600}
.chips span{margin-right:10px;font-size:14px}
.empty{color:#6b7280;font-style:italic}
.legend{font-size:12px;color:#6b7280}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""


def _badge(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "#6b7280")
    return f'<span class="badge" style="background:{colour}">{escape(status)}</span>'


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def histogram_svg(histogram: Histogram, width: int = 260, height: int = 70) -> str:
    """Reference (grey) and current (blue) shares per bin, side by side, as inline SVG."""
    ref_total = sum(histogram.reference) or 1
    cur_total = sum(histogram.current) or 1
    ref = [c / ref_total for c in histogram.reference]
    cur = [c / cur_total for c in histogram.current]
    top = max([*ref, *cur, 1e-9])
    slot = width / max(len(ref), 1)
    bar = max(slot / 2 - 1, 1)
    parts = []
    names = histogram.labels or _edge_names(histogram.edges)
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        x = i * slot
        name = escape(names[i] if i < len(names) else str(i))
        for offset, share, colour, side in (
            (0, r, "#9ca3af", "reference"),
            (bar, c, "#2563eb", "current"),
        ):
            h = share / top * (height - 2)
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{name}: {side} {share:.1%}'
                f"</title></rect>"
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="histogram of {escape(histogram.column)}">{"".join(parts)}</svg>'
    )


def _edge_names(edges: Sequence[float]) -> list[str]:
    if not edges:
        return []
    names = [f"<= {edges[0]:.4g}"]
    names += [f"({a:.4g}, {b:.4g}]" for a, b in zip(edges, edges[1:], strict=False)]
    return [*names, f"> {edges[-1]:.4g}"]


def line_chart_svg(
    points: Sequence[tuple[str, float]],
    threshold: float | None,
    width: int = 560,
    height: int = 160,
) -> str:
    """A metric per batch as a line with dots, the degradation threshold dashed; inline SVG."""
    if not points:
        return ""
    values = [v for _, v in points] + ([threshold] if threshold is not None else [])
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or 0.05
    low, high = low - pad, high + pad
    left, right, top, bottom = 48, 12, 10, 28

    def x(i: int) -> float:
        span = max(len(points) - 1, 1)
        return left + (width - left - right) * (i / span if len(points) > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - low) / (high - low))

    path = " ".join(
        f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(points)
    )
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="#2563eb">'
        f"<title>{escape(label)}: {v:.4f}</title></circle>"
        for i, (label, v) in enumerate(points)
    )
    labels = "".join(
        f'<text x="{x(i):.1f}" y="{height - 8}" font-size="10" text-anchor="middle" '
        f'fill="#6b7280">{escape(label[-10:])}</text>'
        for i, (label, _) in enumerate(points)
    )
    axis = "".join(
        f'<text x="{left - 6}" y="{y(v) + 3:.1f}" font-size="10" text-anchor="end" '
        f'fill="#6b7280">{v:.3f}</text>'
        for v in (low + pad, high - pad)
    )
    line = ""
    if threshold is not None:
        line = (
            f'<line x1="{left}" x2="{width - right}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" stroke="#c62828" stroke-dasharray="5,4">'
            f"<title>degraded below {threshold:.4f}</title></line>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="metric per batch">{axis}{line}<path d="{path}" fill="none" '
        f'stroke="#2563eb" stroke-width="2"/>{dots}{labels}</svg>'
    )


def _attention(latest: Sequence[Mapping[str, Any]]) -> str:
    worst: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in latest:
        key = (row["check"], row["subject"])
        if key not in worst or _RANK.get(row["status"], 0) > _RANK.get(worst[key]["status"], 0):
            worst[key] = row
    bad = sorted(
        (r for r in worst.values() if _RANK.get(r["status"], 0) > 0),
        key=lambda r: (-_RANK[r["status"]], r["check"], r["subject"]),
    )
    if not bad:
        return '<p class="empty">Nothing needs attention: every check is ok.</p>'
    rows = [
        (_badge(r["status"]), escape(r["check"]), escape(r["subject"]), escape(r["detail"] or ""))
        for r in bad
    ]
    return _table(["status", "check", "subject", "detail"], rows, set())


def _freshness(latest: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            escape(r["subject"]),
            _badge(r["status"]),
            _number(r["value"] / 86_400 if r["value"] is not None else None, 3),
            _number(r["threshold"] / 86_400 if r["threshold"] is not None else None, 3),
            escape(r["detail"] or ""),
        )
        for r in latest
        if r["check"] == "freshness"
    ]
    if not rows:
        return '<p class="empty">No freshness SLA is declared.</p>'
    return _table(["subject", "status", "age (days)", "SLA (days)", "detail"], rows, {2, 3})


def _drift(data: DashboardData) -> str:
    status: dict[tuple[str, str], str] = {}
    for r in data.latest:
        if r["check"] in ("drift", "prediction_drift") and r["column"] and r["table"]:
            key = (r["table"], r["column"])
            if _RANK.get(r["status"], 0) >= _RANK.get(status.get(key, "ok"), 0):
                status[key] = r["status"]
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    windows: dict[str, str] = {}
    for m in data.drift_metrics:
        metrics.setdefault((m["table"], m["column"]), {})[m["metric"]] = m["value"]
        windows[m["table"]] = m["window"]
    charts = {(h.table, h.column): h for h in data.histograms}
    tables = sorted({t for t, _ in status} | {t for t, _ in metrics} | {t for t, _ in charts})
    if not tables:
        return '<p class="empty">No table is compared with a reference yet.</p>'
    out = []
    for table in tables:
        columns = sorted({c for t, c in [*status, *metrics, *charts] if t == table})
        rows = []
        for column in sorted(
            columns, key=lambda c: (-_RANK.get(status.get((table, c), "ok"), 0), c)
        ):
            values = metrics.get((table, column), {})
            chart = charts.get((table, column))
            rows.append(
                (
                    escape(column),
                    _badge(status.get((table, column), "ok")),
                    *[_number(values.get(m)) for m in _DRIFT_METRICS],
                    histogram_svg(chart) if chart else "",
                )
            )
        window = windows.get(table) or (
            charts[(table, columns[0])].window if (table, columns[0]) in charts else ""
        )
        out.append(f"<h3>{escape(table)} <small>window {escape(window or '')}</small></h3>")
        out.append(
            _table(
                [
                    "feature",
                    "status",
                    "PSI",
                    "KS",
                    "JS",
                    "chi² p",
                    "null Δ",
                    "reference vs current",
                ],
                rows,
                {2, 3, 4, 5, 6},
            )
        )
    legend = (
        '<p class="legend">Histograms: share of rows per bin of the reference'
        '<i style="background:#9ca3af"></i>reference<i style="background:#2563eb"></i>current'
        "</p>"
    )
    return legend + "".join(out)


def _performance(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">No scoring batch has labels yet.</p>'
    out = []
    for subject in sorted({r["subject"] for r in rows}):
        series = [r for r in rows if r["subject"] == subject]
        series.sort(key=lambda r: r["window"] or "")
        points = [(r["window"] or "", float(r["value"])) for r in series]
        performance = series[0]["check"] == "performance"
        threshold = next((r["threshold"] for r in reversed(series) if r["threshold"]), None)
        table = _table(
            ["batch", "value", "status", "detail"],
            [
                (
                    escape(r["window"] or ""),
                    _number(r["value"]),
                    _badge(r["status"]),
                    escape(r["detail"] or ""),
                )
                for r in series
            ],
            {1},
        )
        what = "performance" if performance else "calibration error"
        out.append(f"<h3>{escape(subject)} - {what} per scoring batch</h3>")
        out.append(line_chart_svg(points, threshold) + table)
    return "".join(out)


def _alerts(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">No alert has been raised.</p>'
    return _table(
        ["raised at", "status", "was", "check", "subject", "message"],
        [
            (
                escape(str(r["raised_at"])[:19]),
                _badge(r["status"]),
                escape(r["previous_status"] or ""),
                escape(r["check"]),
                escape(r["subject"]),
                escape(r["message"] or ""),
            )
            for r in rows
        ],
        set(),
    )


def render_dashboard(data: DashboardData) -> str:
    """The whole page: one HTML document with nothing loaded from elsewhere."""
    counts: dict[str, int] = {}
    seen: dict[tuple[str, str], str] = {}
    for r in data.latest:
        key = (r["check"], r["subject"])
        if _RANK.get(r["status"], 0) >= _RANK.get(seen.get(key, "ok"), 0):
            seen[key] = r["status"]
    for value in seen.values():
        counts[value] = counts.get(value, 0) + 1
    chips = "".join(
        f"<span>{_badge(s)} {counts[s]}</span>"
        for s in ("critical", "error", "warning", "ok", "skipped")
        if s in counts
    )
    sections = [
        ("Needs attention", f'<div class="chips">{chips}</div>' + _attention(data.latest)),
        ("Freshness", _freshness(data.latest)),
        ("Drift by table and feature", _drift(data)),
        ("Model performance over time", _performance(data.performance)),
        ("Recent alerts", _alerts(data.alerts)),
    ]
    body = "".join(f"<section><h2>{escape(t)}</h2>{html}</section>" for t, html in sections)
    generated = escape(data.generated_at.isoformat(timespec="seconds"))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>featurelake monitoring</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>featurelake monitoring</h1><p>Checks as of {generated}; "
        f"{len(seen)} conditions watched.</p></header><main>{body}</main></body></html>"
    )
