#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries are installed (the JDBC source tests and
# bench/bench_jdbc.py start a private server with them: tests/postgres_server.py).
# Installs Debian's postgresql package when absent; a no-op when initdb is already there.
#   bin/ensure-postgres.sh
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" postgresql PostgreSQL 13
# The package creates and starts a cluster of its own when an init system runs; the tests start
# their own server on a free port and do not use it.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
