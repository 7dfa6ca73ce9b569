#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh install of featurelake[dev] (the newest versions that fit
# pyproject.toml), so that every later bootstrap installs exactly these.
#   bin/lock-dependencies.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q -e "$root[dev]"
{
  echo "# Versions the bootstrap installs (pip install -c constraints.txt): the set the tests ran with."
  echo "# Regenerate after changing dependencies: bin/lock-dependencies.sh"
  "$work/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^pip=='
} > "$root/constraints.txt"
echo "featurelake: wrote $root/constraints.txt" >&2
