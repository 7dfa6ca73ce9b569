"""Independent Spark work submitted from threads, so one table's jobs fill another's gaps.

A job that builds several independent tables (bronze's sources, silver's tables, gold's
parts) spends part of each table's time on the driver alone - planning, code generation,
Delta commits - and small tables run stages of a single task. Submitting the tables' Spark
jobs from threads lets the scheduler run one table's tasks while another is being planned
or committed. Spark's scheduler is thread-safe and PySpark pins each Python thread to a JVM
thread, so each thread's jobs keep their own local properties.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["run_concurrently"]

T = TypeVar("T")


def run_concurrently(tasks: Sequence[Callable[[], T]], max_workers: int) -> list[T]:
    """Run ``tasks`` on up to ``max_workers`` threads; return their results in order.

    Every task runs to its end, even when another fails (a Spark job cannot be abandoned
    half-way without leaving its files to clean up), then the failure of the first failing
    task in ``tasks`` order is raised - the same error a loop over the tasks would raise.
    With one worker the tasks run in order in this thread and stop at the first failure.
    Each task runs in a copy of the caller's context (logging fields held in context
    variables carry over).

    Args:
        tasks: callables without arguments.
        max_workers: threads at most; 1 runs the tasks one after another in this thread.

    Raises:
        ValueError: ``max_workers`` is below 1.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    if max_workers == 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(tasks))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, task) for task in tasks]
        errors = [future.exception() for future in futures]  # waits for every task
    for error in errors:
        if error is not None:
            raise error
    return [future.result() for future in futures]
