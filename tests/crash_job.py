"""Run one job in this process and kill the process just before its Nth table commit.

    python tests/crash_job.py N JOB [job arguments...]

The kill is ``os._exit(137)`` (what SIGKILL leaves: no ``finally``, no cleanup): the job's
staged files stay where they are and every commit before the Nth has landed. With N larger
than the job's commits the job runs to its end. Used by test_fault_injection.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from featurelake import table_io
from featurelake.pipeline import load_job_module
from featurelake.runner import run_job

KILLED = 137


def main() -> int:
    kill_at, job, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    real_commit = table_io.DeltaTables.commit
    seen = 0

    def commit_or_die(self: table_io.DeltaTables, staged: table_io.StagedWrite):
        nonlocal seen
        seen += 1
        if seen == kill_at:
            sys.stdout.flush()
            os._exit(KILLED)
        return real_commit(self, staged)

    table_io.DeltaTables.commit = commit_or_die  # type: ignore[method-assign]
    module = load_job_module(Path(__file__).resolve().parents[1] / "jobs", job)
    return run_job(job, module.main, argv=argv, add_arguments=module.add_arguments)


if __name__ == "__main__":
    sys.exit(main())
