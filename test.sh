#!/usr/bin/env bash
# Run the test suite: sets up ./.venv with the dev extras on first use, then runs pytest.
# Extra arguments go to pytest, e.g. ./test.sh -k table_io -x
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
"$root/bin/bootstrap-venv.sh" dev
exec "$root/.venv/bin/python" -m pytest "$@"
