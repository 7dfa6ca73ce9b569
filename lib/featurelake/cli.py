"""``featurelake <job> [options]``: run a job where Spark is provided (a pip install).

The same jobs as ``./spark-submit.sh <job>``: in a plain Python process the job builds its own
local Spark session (``spark.master`` from the configuration); under ``spark-submit`` it joins
the driver's. ``featurelake --help`` lists the jobs; ``featurelake <job> --help`` a job's
options.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from featurelake.core.errors import UserError
from featurelake.jobs import job_names, load_job

__all__ = ["main"]


def _usage() -> str:
    lines = [
        "usage: featurelake <job> [--env NAME] [--conf key=value ...] [job options]",
        "",
        "jobs:",
    ]
    for name in job_names():
        lines.append(f"  {name:22s} {load_job(name).summary}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by the first argument with the rest; the job's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    try:
        job = load_job(args[0])
    except UserError as exc:
        sys.stderr.write(f"featurelake: {exc}\n")
        return exc.exit_code
    return job.run(args[1:])


if __name__ == "__main__":
    sys.exit(main())
