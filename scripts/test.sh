#!/usr/bin/env bash
# The whole test suite, as CI runs it: sets up the reference implementations (llama.cpp via
# llama-cpp-python, gguf-py, the ollama client) in target/oracle-venv, a real OCI registry
# (Debian's docker-registry, which the registry tests start on loopback) and the official Ollama
# JavaScript client (npm ollama, in target/js-client, with Node.js) and, where the machine allows
# it, a loop-mounted XFS for the reflink test, then runs every test with them required, so a
# conformance test can never pass by skipping its oracle.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/setup-oracle.sh | tail -n 1)
export KILN_PYTHON="$py"
KILN_DOCKER_REGISTRY=$(bash scripts/setup-registry.sh | tail -n 1)
export KILN_DOCKER_REGISTRY
KILN_JS_CLIENT=$(bash scripts/setup-js.sh | tail -n 1)
export KILN_JS_CLIENT
KILN_REFLINK_DIR=$(bash scripts/setup-reflink.sh | tail -n 1)
if [ -n "$KILN_REFLINK_DIR" ]; then
    export KILN_REFLINK_DIR
else
    unset KILN_REFLINK_DIR
fi
export KILN_REQUIRE_ORACLE=1
cargo test --workspace --release "$@"
