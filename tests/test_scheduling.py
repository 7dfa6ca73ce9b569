"""The scheduling examples stay in step with the pipeline."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "deploy" / "airflow" / "featurelake_dag.py"


def test_the_dag_file_is_valid_python():
    ast.parse(DAG_FILE.read_text())


@pytest.mark.skipif(
    importlib.util.find_spec("airflow") is None,
    reason="Airflow is not installed (pip install apache-airflow to parse the DAG)",
)
def test_airflow_parses_the_dag_with_one_task_per_stage():
    from airflow.models import DagBag

    try:
        bag = DagBag(dag_folder=str(DAG_FILE.parent), include_examples=False)
    except TypeError:  # Airflow 3 dropped the argument (examples follow core.load_examples)
        bag = DagBag(dag_folder=str(DAG_FILE.parent))
    assert bag.import_errors == {}
    dag = bag.dags["featurelake"]  # Airflow 3's get_dag reads the metadata database
    stages = yaml.safe_load((ROOT / "conf" / "pipeline.yaml").read_text())["stages"]
    assert {t.task_id for t in dag.tasks} == {s.replace("-", "_") for s in stages}
    for name, stage in stages.items():
        upstream = dag.get_task(name.replace("-", "_")).upstream_task_ids
        assert upstream == {d.replace("-", "_") for d in stage.get("depends_on", [])}


def test_crontab_lines_call_jobs_that_exist():
    jobs = {p.stem.replace("_", "-") for p in (ROOT / "jobs").glob("*.py")}
    for line in (ROOT / "deploy" / "crontab.example").read_text().splitlines():
        if "spark-submit.sh" in line:
            job = line.split("spark-submit.sh", 1)[1].split()[0]
            assert job in jobs, line
