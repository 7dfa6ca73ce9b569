"""Feature selection on the real UCI credit data: what it keeps, and the held-out ROC AUC cost.

    .venv/bin/python bench/bench_feature_selection.py
    .venv/bin/python bench/bench_feature_selection.py --selection '{"univariate": {"min_score":
        0.01}, "correlation": {"max_abs": 0.9}, "importance": {"min_importance": 0.005}}'

Reads ``../shared/data/uci_credit_card.csv.gz`` in place (never copied) through the bronze
parser, the silver rules and the gold functions of the shipped ``conf/``, then trains the
shipped ``conf/models/credit_default.yaml`` twice on the same rows and split, in a throw-away
MLflow store: as declared, and with a ``selection`` section (default below). Prints the
selected features, the dropped ones with the reason, and each run's held-out ROC AUC (the best
candidate, which training registers, and every candidate); exits 1 when selection costs the
model more than ``--max-drop`` (0.005).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "uci_credit_card.csv.gz"
DEFAULT_SELECTION = {"univariate": {"min_score": 0.01}, "correlation": {"max_abs": 0.9}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--config", type=Path, default=ROOT / "conf" / "models" / "credit_default.yaml"
    )
    parser.add_argument("--selection", type=json.loads, default=DEFAULT_SELECTION)
    parser.add_argument("--max-drop", type=float, default=0.005)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"no data at {args.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2

    from featurelake.core.config import MlflowSettings
    from featurelake.core.session import build_spark_session
    from featurelake.core.validation import validate_configuration
    from featurelake.lakehouse import gold
    from featurelake.ml.batch import raw_to_silver
    from featurelake.ml.classification import prepare_training_frame, train_classifier
    from featurelake.ml.config import ClassificationConfig, load_model_config
    from featurelake.ml.tracking import configure_tracking

    work = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    settings = validate_configuration(ROOT / "conf", None, [f"lakehouse.root={work / 'lake'}"])
    spark = build_spark_session("bench-selection", settings.spark)
    spark.sparkContext.setLogLevel("ERROR")
    configure_tracking(
        MlflowSettings(
            tracking_uri=f"sqlite:///{work}/mlflow.db",
            artifact_location=str(work / "artifacts"),
            experiment="bench-selection",
        )
    )
    try:
        clients = raw_to_silver(
            spark,
            settings,
            "credit_clients",
            str(args.data),
            as_of=datetime.now(timezone.utc),
            run_id="bench",
        )
        features, labels = gold.build_credit_gold(
            clients, gold.load_gold_config(settings.conf_path(gold.GOLD_CONFIG_FILE)).credit
        )
        features, labels = features.cache(), labels.cache()
        declared = load_model_config(args.config)
        assert isinstance(declared, ClassificationConfig)
        declared = declared.model_copy(update={"selection": None})
        selecting = ClassificationConfig.model_validate(
            {**declared.model_dump(), "selection": args.selection}
        )
        print(f"{features.count()} clients; {len(declared.feature_columns)} declared features")
        results = {}
        for name, config in (("without selection", declared), ("with selection", selecting)):
            started = time.monotonic()
            result = train_classifier(config, prepare_training_frame(features, labels, config))
            results[name] = result
            print(
                f"{name}: best {result.best.algorithm}, held-out ROC AUC "
                f"{result.best.test_metrics.roc_auc:.4f} "
                f"({len(result.features)} features, {time.monotonic() - started:.0f} s); "
                + ", ".join(
                    f"{c.algorithm} {c.test_metrics.roc_auc:.4f}" for c in result.candidates
                )
            )
        chosen = results["with selection"]
        print(f"selection: {json.dumps(args.selection)}")
        print(f"selected ({len(chosen.features)}): {', '.join(chosen.features)}")
        print(f"dropped ({len(chosen.dropped)}):")
        for feature, reason in chosen.dropped.items():
            print(f"  {feature}: {reason}")
        drop = (
            results["without selection"].best.test_metrics.roc_auc
            - chosen.best.test_metrics.roc_auc
        )
        before = {
            c.algorithm: c.test_metrics.roc_auc for c in results["without selection"].candidates
        }
        print(
            "per candidate: "
            + ", ".join(
                f"{c.algorithm} {c.test_metrics.roc_auc - before[c.algorithm]:+.4f}"
                for c in chosen.candidates
            )
        )
        print(
            f"ROC AUC change of the model (best candidate) with selection: {-drop:+.4f} "
            f"(allowed drop {args.max_drop})"
        )
        return 0 if drop <= args.max_drop else 1
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
