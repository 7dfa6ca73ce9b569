"""The README's main command end to end: the full pipeline, its idempotent rerun, notebooks.

One small synthetic run through ``./spark-submit.sh full-pipeline`` (as a user runs it), then a
second run over the same landing files, then the notebooks executed against the result.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from deltalake import DeltaTable

# Two runs of the whole pipeline through spark-submit (about sixteen minutes here): opt-in with
# -m scenario, which CI runs after the default suite.
pytestmark = pytest.mark.scenario

ROOT = Path(__file__).resolve().parents[1]

SMALL = [
    "--conf",
    "synthetic.transactions=6000",
    "--conf",
    "synthetic.customers=300",
    "--conf",
    "synthetic.credit_clients=2000",
]
# Tables that grow by design on every run: the run log, the promotion and retraining decisions
# (one set per check), the feature metadata catalog (one row per feature per gold table
# *version*; a rerun commits new versions), the monitor's results and alerts (one set per run)
# and its profiles and drift (per version).
APPEND_ONLY_BY_DESIGN = {
    "ops/pipeline_runs",
    "ops/model_promotions",
    "ops/retraining_decisions",
    "gold/_feature_metadata",
    "ops/monitor_results",
    "ops/monitor_alerts",
    "ops/profile_metrics",
    "ops/drift_metrics",
}


def _pipeline(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEATURELAKE_ROOT": str(root)}
    env.pop("FEATURELAKE_PII_KEY", None)  # the local overlay's key file must suffice
    return subprocess.run(
        [str(ROOT / "spark-submit.sh"), "full-pipeline", *SMALL, *extra],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=1800,
    )


def _tables(root: Path) -> dict[str, DeltaTable]:
    found = {}
    for log_dir in sorted(root.rglob("_delta_log")):
        table = log_dir.parent
        found[str(table.relative_to(root))] = DeltaTable(str(table))
    return found


def _row_counts(root: Path) -> dict[str, int]:
    return {name: table.to_pyarrow_table().num_rows for name, table in _tables(root).items()}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    first = _pipeline(root)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    counts = _row_counts(root)
    second = _pipeline(root)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    return root, first, counts, second


def test_the_pipeline_builds_every_layer_and_ends_with_the_summary(lake):
    root, first, counts, _ = lake
    out = first.stdout
    for stage in (
        "generate-data",
        "bronze",
        "silver",
        "gold",
        "monitor-gold",
        "features-apply",
        "train-segmentation",
        "retrain-check",
        "promote",
        "score",
        "materialize",
        "monitor",
    ):
        assert f"{stage:<22}succeeded" in out, stage
    assert "run log" in out and "mlflow" in out and "predictions" in out
    for table in (
        "bronze/online_retail",
        "silver/transactions",
        "silver/transactions_quarantine",
        "gold/customer_features",
        "gold/credit_features",
        "gold/customer_segments",
        "features/_registry",
        "ops/quality_metrics",
        "ops/pipeline_runs",
    ):
        assert counts.get(table, 0) > 0, f"{table} missing or empty: {sorted(counts)}"
    # The embedded default's credit model clears its promotion bar and is scored, as on real data.
    assert counts.get("predictions/credit_default", 0) > 0, sorted(counts)
    assert counts.get("predictions/customer_segments", 0) > 0, sorted(counts)
    assert (root / "mlflow" / "mlflow.db").is_file()  # this lake's own store
    assert (root / "online" / "features.db").is_file()


def test_a_second_run_duplicates_nothing(lake):
    root, _, before, second = lake
    after = _row_counts(root)
    changed = {
        t: (before.get(t), n)
        for t, n in after.items()
        if t not in APPEND_ONLY_BY_DESIGN and before.get(t) != n
    }
    assert changed == {}, second.stdout[-3000:]
    runs = DeltaTable(str(root / "ops" / "pipeline_runs")).to_pandas()
    assert runs["run_id"].nunique() == 2
    metadata = DeltaTable(str(root / "gold" / "_feature_metadata")).to_pandas()
    assert not metadata.duplicated(["table", "delta_version", "feature"]).any()


def test_every_bronze_row_is_accounted_for(lake):
    root, *_ = lake
    bronze = DeltaTable(str(root / "bronze" / "online_retail")).to_pyarrow_table().num_rows
    silver = DeltaTable(str(root / "silver" / "transactions")).to_pyarrow_table().num_rows
    quarantined = (
        DeltaTable(str(root / "silver" / "transactions_quarantine")).to_pyarrow_table().num_rows
    )
    metrics = DeltaTable(str(root / "ops" / "quality_metrics")).to_pandas()
    total = metrics[(metrics["table"] == "transactions") & (metrics["rule"] == "_total")]
    deduplicated = int(total.sort_values("measured_at").iloc[-1]["rows_deduplicated"])
    assert bronze == silver + quarantined + deduplicated


@pytest.mark.parametrize(
    "notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem
)
def test_notebooks_execute_against_the_pipeline_output(lake, notebook, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    root, *_ = lake
    monkeypatch.setenv("FEATURELAKE_ROOT", str(root))
    monkeypatch.setenv("PYSPARK_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert errors == []


def test_notebooks_are_stored_without_outputs():
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), notebook
