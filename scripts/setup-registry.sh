#!/usr/bin/env bash
# Makes Debian's docker-registry (the CNCF distribution registry 2.8) available for the registry
# tests and prints the path of its binary on the last line. Uses the one on PATH if there is
# one; else installs the package (as root), else unpacks the .deb into target/ without root.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v docker-registry >/dev/null 2>&1; then
    command -v docker-registry
    exit 0
fi
local_bin="$PWD/target/docker-registry/usr/bin/docker-registry"
if [ -x "$local_bin" ]; then
    echo "$local_bin"
    exit 0
fi
echo "setting up docker-registry (Debian package)" >&2
if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends docker-registry >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends docker-registry >&2; }
    command -v docker-registry
    exit 0
fi
mkdir -p target/docker-registry
(cd target/docker-registry && apt-get download docker-registry >&2 && dpkg-deb -x docker-registry_*.deb .)
echo "$local_bin"
