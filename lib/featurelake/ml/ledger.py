"""``ops/model_promotions``: every lifecycle transition and promotion decision, one row each.

Rows (docs/CONTRACTS.md): a promotion decision (``action`` ``promoted`` or ``rejected``, with
the metrics both models had on the evaluation rows and on the champion's held-out rows), and
each other transition it or a training or rollback made (``registered``, ``previous``,
``rolled_back``, ``retired``), with the version moved, the alias it holds afterwards and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from featurelake.ml.registry import PromotionDecision, Transition

__all__ = ["PROMOTIONS_TABLE", "PROMOTION_SCHEMA", "promotion_rows", "record_promotions"]

PROMOTIONS_TABLE = ("ops", "model_promotions")
# The first twelve columns are the table's original ones; later columns were added with the
# lifecycle (older rows read them as null).
PROMOTION_SCHEMA = (
    "model string, promoted boolean, reason string, metric string, challenger_version string, "
    "challenger_metric double, champion_version string, champion_metric double, "
    "min_metric double, min_improvement double, decided_at timestamp, job_run_id string, "
    "action string, version string, alias string, evaluation string, evaluation_rows long, "
    "challenger_holdout_metric double, champion_holdout_metric double, max_regression double"
)


def promotion_rows(
    job_run_id: str,
    decision: PromotionDecision | None = None,
    transitions: Sequence[Transition] = (),
) -> list[dict[str, Any]]:
    """The rows of a decision (when given) and of the transitions.

    The decision's own ``promoted`` transition is its decision row, not a second row.
    """
    rows: list[dict[str, Any]] = []
    if decision is not None:
        fields = decision.as_dict()
        rows.append(
            {
                **fields,
                "decided_at": datetime.fromisoformat(decision.decided_at),
                "job_run_id": job_run_id,
                "action": "promoted" if decision.promoted else "rejected",
                "version": decision.challenger_version,
                "alias": "champion" if decision.promoted else "challenger",
            }
        )
    moves = list(transitions)
    if decision is not None:
        moves = [*decision.transitions, *moves]
    for t in moves:
        if decision is not None and t.action == "promoted":
            continue
        rows.append(
            {
                "model": t.model,
                "promoted": None,
                "reason": t.reason,
                "decided_at": datetime.fromisoformat(t.at),
                "job_run_id": job_run_id,
                "action": t.action,
                "version": t.version,
                "alias": t.alias,
            }
        )
    return rows


def record_promotions(ctx: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Append rows to ``ops/model_promotions`` (a table from before the lifecycle gains the
    new columns)."""
    if rows:
        ctx.tables.append_rows(
            list(rows),
            PROMOTION_SCHEMA,
            ctx.path(*PROMOTIONS_TABLE),
            schema_evolution=True,
        )
