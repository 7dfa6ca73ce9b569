#!/usr/bin/env bash
# Make sure redis-server is installed (the online store's Redis backend and its tests need it).
# Installs the Debian package when absent; a no-op when redis-server is already on PATH.
#   bin/ensure-redis.sh
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" redis-server Redis 6
# The package starts a system service on Debian when an init system runs; the tests start their
# own server on a free port and do not use it.
command -v redis-server >/dev/null 2>&1
