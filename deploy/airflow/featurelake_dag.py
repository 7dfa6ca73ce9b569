"""Airflow DAG for featurelake: one task per stage of conf/pipeline.yaml.

Copy (or symlink) this file into Airflow's dags folder and set the Airflow Variable
``featurelake_home`` to the project checkout. Each task runs
``./spark-submit.sh full-pipeline --only <stage>``, so retries, logging and the run-log table
behave as on the command line; the task graph is read from conf/pipeline.yaml, the one place
the stages and their dependencies are declared.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow import DAG
from airflow.providers.standard.operators.bash import BashOperator

HOME = Path(os.environ.get("FEATURELAKE_HOME", Path(__file__).resolve().parents[2]))
MASTER = os.environ.get("FEATURELAKE_MASTER", "")  # e.g. spark://spark-master:7077, yarn

with open(HOME / "conf" / "pipeline.yaml", encoding="utf-8") as handle:
    PIPELINE = yaml.safe_load(handle)

with DAG(
    dag_id="featurelake",
    description="raw files -> bronze -> silver -> gold -> features, models, scores, online store",
    schedule="15 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["featurelake"],
) as dag:
    master = f" --master {MASTER}" if MASTER else ""
    tasks = {
        name: BashOperator(
            task_id=name.replace("-", "_"),
            bash_command=f"cd {HOME} && ./spark-submit.sh full-pipeline --only {name}{master}",
        )
        for name in PIPELINE["stages"]
    }
    for name, stage in PIPELINE["stages"].items():
        for upstream in stage.get("depends_on", []):
            tasks[upstream] >> tasks[name]
