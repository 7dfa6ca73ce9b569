"""run_concurrently: results in order, every task finishes, the first failure in order wins."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
from featurelake.core.concurrency import run_concurrently

_FIELD = contextvars.ContextVar("field", default="unset")


def test_results_in_task_order_and_tasks_overlap():
    started = threading.Barrier(3, timeout=10)  # all three must be running at once

    def task(n: int, pause: float):
        def run() -> int:
            started.wait()
            time.sleep(pause)
            return n

        return run

    # the first task finishes last: the results still follow the task order
    assert run_concurrently([task(1, 0.3), task(2, 0.0), task(3, 0.1)], 3) == [1, 2, 3]


def test_one_worker_runs_in_turn_in_the_calling_thread_and_stops_at_the_first_failure():
    seen = []

    def record(n: int):
        def run() -> int:
            seen.append((n, threading.current_thread() is threading.main_thread()))
            if n == 2:
                raise ValueError("two")
            return n

        return run

    with pytest.raises(ValueError, match="two"):
        run_concurrently([record(1), record(2), record(3)], 1)
    assert seen == [(1, True), (2, True)]


def test_every_task_finishes_before_the_first_failure_in_order_is_raised():
    finished = []

    def fail_late() -> None:
        time.sleep(0.2)
        finished.append("late")
        raise KeyError("first in order")

    def fail_early() -> None:
        finished.append("early")
        raise RuntimeError("second in order")

    def slow_ok() -> str:
        time.sleep(0.4)
        finished.append("ok")
        return "ok"

    with pytest.raises(KeyError, match="first in order"):
        run_concurrently([fail_late, fail_early, slow_ok], 3)
    assert sorted(finished) == ["early", "late", "ok"]


def test_tasks_see_the_callers_context_variables():
    _FIELD.set("run-42")
    assert run_concurrently([_FIELD.get, _FIELD.get], 2) == ["run-42", "run-42"]


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        run_concurrently([lambda: 1], 0)
