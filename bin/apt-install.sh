#!/usr/bin/env bash
# Install a Debian package for a program featurelake's tests need, saying what happens.
#   bin/apt-install.sh PACKAGE "WHAT" "MINIMUM"   e.g. bin/apt-install.sh redis-server Redis 6
# Exits 1 with one line when apt-get is missing or root rights cannot be had.
set -euo pipefail
package=$1 what=$2 minimum=$3
if ! command -v apt-get >/dev/null 2>&1; then
  echo "featurelake: $what not found and apt-get is unavailable; install $what >= $minimum yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "featurelake: $what not found; run as root: apt-get install -y $package" >&2
    exit 1
  fi
fi
echo "featurelake: installing $package (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "$package"
