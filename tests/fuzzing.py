"""Hypothesis settings shared by the property tests (``tests/test_fuzz_*.py``).

Each property runs a fixed number of examples drawn from a fixed seed (``derandomize``), so a
CI run always tries the same inputs and a failure reproduces. To look further:

    FEATURELAKE_FUZZ_EXAMPLES=400 ./test.sh tests/test_fuzz_cleaning.py   # more examples each
    FEATURELAKE_FUZZ_RANDOM=1 ./test.sh tests/test_fuzz_bronze.py         # fresh random inputs

With ``FEATURELAKE_FUZZ_RANDOM=1`` Hypothesis prints a ``@reproduce_failure`` line for a failing
input; nothing is stored on disk either way (no example database).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["fuzz_settings"]


def fuzz_settings(examples: int) -> settings:
    """Settings for one property: ``examples`` inputs unless ``FEATURELAKE_FUZZ_EXAMPLES`` is set.

    Args:
        examples: how many inputs the property tries in a normal run (each one is usually a
            batch of rows handled by one Spark action).

    Returns:
        Hypothesis settings: no deadline (a Spark action takes as long as the shared machine
        lets it), derandomised unless ``FEATURELAKE_FUZZ_RANDOM=1``, no example database.
    """
    randomised = os.environ.get("FEATURELAKE_FUZZ_RANDOM") == "1"
    return settings(
        max_examples=int(os.environ.get("FEATURELAKE_FUZZ_EXAMPLES", examples)),
        deadline=None,
        derandomize=not randomised,
        database=None,
        print_blob=randomised,
        # Batches of rows are large examples on purpose; Spark makes every example slow; the
        # session-scoped spark fixture is shared, and tmp_path is only a parent folder.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )
