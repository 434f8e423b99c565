#!/usr/bin/env bash
# Copies Ollama's built-in chat templates (data, MIT licensed) into src/template/ollama/ from a git
# checkout or bare mirror of github.com/ollama/ollama at a pinned commit. kiln needs the exact bytes:
# an autodetected template is stored as a blob, and its digest must equal the one Ollama writes.
#
#   scripts/vendor-ollama-templates.sh /path/to/ollama/.git [commit]
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
