"""Run one job in this process and kill the process just before its Nth table commit.

    python tests/crash_job.py N JOB [job arguments...]

The kill is ``os._exit(137)`` (what SIGKILL leaves: no ``finally``, no cleanup). A commit
point is where a backend publishes a version: delta-rs's commit of staged files (they are
already beside the table's data, as a real crash would leave them) or delta-spark's save.
Every commit before the Nth has landed. With N larger than the job's commits the job runs
to its end. Used by test_fault_injection.py.
"""

from __future__ import annotations

import os
import sys

from featurelake.core.pipeline import load_job_module
from featurelake.core.runner import run_job
from featurelake.delta import native, rs

KILLED = 137


def main() -> int:
    kill_at, job, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    seen = 0

    def die_at_the_nth(real):
        def commit_or_die(*args, **kwargs):
            nonlocal seen
            seen += 1
            if seen == kill_at:
                sys.stdout.flush()
                os._exit(KILLED)
            return real(*args, **kwargs)

        return commit_or_die

    rs.commit_adds = die_at_the_nth(rs.commit_adds)
    native.NativeBackend._save = die_at_the_nth(native.NativeBackend._save)
    module = load_job_module(job)
    return run_job(job, module.main, argv=argv, add_arguments=module.add_arguments)


if __name__ == "__main__":
    sys.exit(main())
