#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are installed (the JDBC source tests and
# bench/bench_jdbc.py start a private server with them: tests/postgres_server.py).
# Installs Debian's postgresql package when absent; a no-op when initdb is already there.
#   bin/ensure-postgres.sh
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "featurelake: PostgreSQL not found and apt-get is unavailable; install PostgreSQL >= 13 yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "featurelake: PostgreSQL not found; run as root: apt-get install -y postgresql" >&2
    exit 1
  fi
fi
echo "featurelake: installing postgresql (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends postgresql
# The package creates and starts a cluster of its own when an init system runs; the tests start
# their own server on a free port and do not use it.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
