#!/usr/bin/env bash
# Create or update ./.venv for featurelake; quick when already up to date.
# Usage: bin/bootstrap-venv.sh [extras]   e.g. bin/bootstrap-venv.sh dev
# spark-submit.sh installs what every documented job needs (serving and redis included);
# test.sh the dev extra (all of that plus the test and lint tools).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
extras=${1:-}
venv="$root/.venv"
python=${PYTHON:-python3}
stamp="$venv/.featurelake-installed"
want=$( (cat "$root/pyproject.toml" "$root/constraints.txt"; echo "extras=$extras") | sha256sum | cut -d' ' -f1)
# An install for [dev] (which holds every other extra) satisfies any install of the same
# pyproject and constraints.
if [ -f "$stamp" ] && grep -qx "$want" "$stamp"; then
  exit 0
fi
if [ "$extras" != "dev" ] && [ -f "$stamp" ]; then
  devwant=$( (cat "$root/pyproject.toml" "$root/constraints.txt"; echo "extras=dev") | sha256sum | cut -d' ' -f1)
  grep -qx "$devwant" "$stamp" && exit 0
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "featurelake: $python not found; install Python 3.10+ (or set PYTHON=/path/to/python3)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "featurelake: creating $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
echo "featurelake: installing ${spec#$root/} into .venv (first run takes a few minutes)" >&2
# constraints.txt pins every dependency to the versions the tests ran with (reproducible installs).
"$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$spec"
echo "$want" >> "$stamp"
