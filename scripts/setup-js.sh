#!/usr/bin/env bash
# Makes the official Ollama JavaScript client (npm `ollama`, pinned) available for the server
# tests and prints its install directory on the last line. Needs Node.js 18+ with npm: uses the
# one on PATH, else installs Debian's nodejs and npm packages (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.6.3
dir="$PWD/target/js-client"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "Node.js and npm are needed for the JS client tests: apt-get install nodejs npm" >&2
        exit 1
    fi
    echo "setting up Node.js (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends nodejs npm >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends nodejs npm >&2; }
fi
installed=$(node -e "try { console.log(require('$dir/node_modules/ollama/package.json').version) } catch { }")
if [ "$installed" != "$version" ]; then
    echo "installing the ollama JS client $version into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --no-save "ollama@$version" >&2
fi
echo "$dir"
