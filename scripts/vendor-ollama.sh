#!/usr/bin/env bash
# Copies data from github.com/ollama/ollama (MIT licensed) at a pinned commit, from a git checkout
# or bare mirror:
# - its built-in chat templates into src/template/ollama/. kiln needs the exact bytes: an
#   autodetected template is stored as a blob, and its digest must equal the one Ollama writes;
# - its converter's expected outputs (every metadata value and tensor digest) for all-MiniLM-L6-v2,
#   gemma-2b-it, gemma-2-2b-it, gemma-2-9b-it, Phi-3-mini-128k-instruct and c4ai-command-r-v01
#   into testdata/ollama-convert/, which tests/kiln/convert.rs checks kiln's converter against.
#
#   scripts/vendor-ollama.sh /path/to/ollama/.git [commit]
set -euo pipefail
git_dir=${1:?usage: $0 OLLAMA_GIT_DIR [COMMIT]}
commit=${2:-fb30760996871fa9460115c753afd2c60d4ab0f7}
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/src/template/ollama
rm -rf "$out"
mkdir -p "$out/testdata"
show() { git --git-dir="$git_dir" show "$commit:$1"; }
show LICENSE > "$out/LICENSE"
show template/index.json > "$out/index.json"
show template/testdata/templates.jsonl > "$out/testdata/templates.jsonl"
for name in $(show template/index.json | python3 -c 'import json,sys; print("\n".join(sorted({t["name"] for t in json.load(sys.stdin)})))'); do
    show "template/$name.gotmpl" > "$out/$name.gotmpl"
    show "template/$name.json" > "$out/$name.json" 2>/dev/null || rm -f "$out/$name.json"
done
echo "$commit" > "$out/COMMIT"
echo "vendored $(ls "$out"/*.gotmpl | wc -l) templates from ollama@$commit into $out"

fixtures=$here/testdata/ollama-convert
rm -rf "$fixtures"
mkdir -p "$fixtures"
show LICENSE > "$fixtures/LICENSE"
for fixture in all-MiniLM-L6-v2 gemma-2b-it gemma-2-2b-it gemma-2-9b-it Phi-3-mini-128k-instruct \
    c4ai-command-r-v01; do
    show "convert/testdata/$fixture.json" > "$fixtures/$fixture.json"
done
echo "$commit" > "$fixtures/COMMIT"
echo "vendored the converter fixtures into $fixtures"
