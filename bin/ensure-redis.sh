#!/usr/bin/env bash
# Make sure redis-server is installed (the online store's Redis backend and its tests need it).
# Installs the Debian package when absent; a no-op when redis-server is already on PATH.
#   bin/ensure-redis.sh
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "featurelake: redis-server not found and apt-get is unavailable; install Redis >= 6 yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "featurelake: redis-server not found; run as root: apt-get install -y redis-server" >&2
    exit 1
  fi
fi
echo "featurelake: installing redis-server (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends redis-server
# The package starts a system service on Debian when an init system runs; the tests start their
# own server on a free port and do not use it.
command -v redis-server >/dev/null 2>&1
