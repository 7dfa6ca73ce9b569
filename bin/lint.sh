#!/usr/bin/env bash
# The static checks CI runs before the tests: ruff check, ruff format --check, mypy on lib/.
#   bin/lint.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/bin/bootstrap-venv.sh" dev
echo "featurelake: ruff check" >&2
.venv/bin/ruff check lib jobs tests bench
echo "featurelake: ruff format --check" >&2
.venv/bin/ruff format --check lib jobs tests bench
echo "featurelake: mypy lib" >&2
.venv/bin/mypy lib
