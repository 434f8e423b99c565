#!/usr/bin/env python3
"""Golden vectors for what Ollama reads out of a Go template: `Template.Vars` (after its
`template.Parse`, which appends `{{ .Response }}` to templates that name neither messages nor
a response) and `thinking.InferTags` — the inputs of the tools, insert and thinking
capabilities (server/images.go goTemplateCapabilities).

    python3 scripts/oracle/gen_go_template_vars_golden.py OLLAMA_REPO   # needs `go` (golang-go)

OLLAMA_REPO: a checkout or bare clone of github.com/ollama/ollama (the commit is recorded).
Ollama's own functions are run, not rewritten: `Parse`, `Vars`, `Identifiers`, the `Template`
type and the `response` node are cut out of its template/template.go, and thinking/template.go is
used whole, into a throwaway Go program (go_template_vars.go supplies the stub function map and
the I/O). Two mechanical edits let Debian's Go 1.19 build them: `slices.Contains` and
`slices.Sorted(maps.Keys(..))` become local helpers of the same meaning.

The corpus: Ollama's built-in templates (src/template/ollama), the cases of Ollama's
template_test.go TestParse and thinking/template_test.go, every template the parse golden file
(go-parse-golden.jsonl) says Go accepts, and seeded random compositions of the pieces the two
functions look at (ranges over .Messages, .Thinking fields, tags, trim markers, else-if chains,
with, define/block/template, $-variables, parenthesised pipes and chains). Writes
src/template/testdata/go-vars-golden.jsonl: a header line, then {"template", "vars", "thinking"}
per case (vars null when Ollama's Parse rejects the template).
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "src", "template", "testdata", "go-vars-golden.jsonl")
PARSE_GOLDEN = os.path.join(ROOT, "src", "template", "testdata", "go-parse-golden.jsonl")
TEMPLATES = os.path.join(ROOT, "src", "template", "ollama")

# template/template_test.go TestParse and thinking/template_test.go TestInferThinkingTags.
OLLAMA_CASES = [
    "{{ .Prompt }}",
    "{{ .System }} {{ .Prompt }}",
    "{{ .System }} {{ .Prompt }} {{ .Response }}",
    "{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}",
    "{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}",
    "{{ range .Messages }}{{ if eq .Role \"tool\" }}Tool Result: {{ .ToolName }} {{ .Content }}{{ end }}{{ end }}",
    """{{- range .Messages }}
{{- if eq .Role "system" }}SYSTEM:
{{- else if eq .Role "user" }}USER:
{{- else if eq .Role "assistant" }}ASSISTANT:
{{- else if eq .Role "tool" }}TOOL:
{{- end }} {{ .Content }}
{{- end }}""",
    """{{- if .Messages }}
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ else -}}
{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ .Response }}<|im_end|>
{{- end -}}""",
    """
			{{ if .Thinking}}
				/think
			{{ end }}
			{{- range $i, $_ := .Messages }}
				{{- $last := eq (len (slice $.Messages $i)) 1 -}}
				{{ if and $last .Thinking }}
					<think>{{ .Thinking }}</think>
				{{ end }}
			{{ end }}
		""",
    """
			{{ if .Thinking}}
				/think
			{{ end }}
			{{- range $i, $_ := .Messages }}
				{{- range $j, $_ := .NotMessages }}
					{{- $last := eq (len (slice $.Messages $i)) 1 -}}
					{{ if and $last .Thinking }}
						<think>{{ .Thinking }}</think>
					{{ end }}
				{{ end }}
			{{ end }}
		""",
    """
			{{ if .Thinking}}
				/think
			{{ end }}
			{{- range $i, $_ := .Messages }}
				{{- $last := eq (len (slice $.Messages $i)) 1 -}}
				{{ if and $last .Thinking }}
					Some text before   {{ .Thinking }}    Some text after
				{{ end }}
			{{ end }}
		""",
]

PIECES = [
    "{{ range .Messages }}", "{{- range $i, $_ := .Messages }}", "{{ range $.Messages }}",
    "{{ range (.Messages) }}", "{{ range .Messages | len }}", "{{ range .Other }}",
    "{{ if .Thinking }}", "{{ if and $last .Thinking }}", "{{ .Thinking }}", "{{- .Thinking -}}",
    "{{ $.Thinking }}", "{{ (.Thinking) }}", "{{ .Thinking.Text }}", "{{ (.X).Thinking }}",
    "{{ with .Thinking }}", "{{ else }}", "{{ else if .Thinking }}", "{{ end }}", "{{- end }}",
    "{{ end -}}", "<think>", "</think>", "  <tag>\n", "\n</tag>  ", "text", " ", "\n",
    "{{ .Tools }}", "{{ range .Tools }}", "{{ .Suffix }}", "{{ .Prompt }}", "{{ .Response }}",
    "{{ .ToolCalls }}", "{{ $x := .Content }}", "{{ $x }}", "{{ $x.Field }}", "{{ .A.B.C }}",
    "{{ json .Tools }}", "{{ (json .Tools).X }}", "{{ template \"t\" .Tools }}",
    "{{ define \"t\" }}{{ .Defined }}{{ end }}", "{{ block \"b\" .Messages }}{{ .InBlock }}{{ end }}",
    "{{ if .System }}", "{{ .System }}", "{{ break }}", "{{ continue }}", "{{/* c */}}",
    "{{ index .Messages 0 }}", "{{ eq .Role \"tool\" }}", "{{ slice $.Messages 1 }}",
]


def compositions(rng, n):
    out = []
    for _ in range(n):
        parts = [rng.choice(PIECES) for _ in range(rng.randint(2, 14))]
        out.append("".join(parts))
        # A balanced shape: ranges and ifs closed in order, so many of these parse.
        opens = rng.randint(1, 3)
        body = []
        for _ in range(opens):
            body.append(rng.choice(PIECES[:6] + PIECES[6:8] + [PIECES[14]]))
            body.append(rng.choice(["", "<think>", " a ", "\n<t>"]))
            body.append(rng.choice(PIECES[8:14] + PIECES[27:30]))
            body.append(rng.choice(["", "</think>", " b ", "</t>\n"]))
        body += ["{{ end }}"] * opens
        out.append("".join(body))
    return out


def ollama_file(repo, path):
    if os.path.isdir(os.path.join(repo, ".git")) or os.path.exists(os.path.join(repo, path)):
        with open(os.path.join(repo, path), encoding="utf-8") as f:
            return f.read()
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True,
                          text=True, check=True).stdout


def declaration(source, start):
    """The top-level Go declaration beginning with the line `start` (through its closing `}`)."""
    i = source.index("\n" + start) + 1
    j = source.index("\n}\n", i) + 3
    return source[i:j]


def harness(repo):
    template_go = ollama_file(repo, "template/template.go")
    thinking_go = ollama_file(repo, "thinking/template.go")
    cut = [declaration(template_go, s) for s in (
        "type Template struct", "var response = ", "func Parse(", "func (t *Template) Vars(",
        "func Identifiers(")]
    ollama = "\n".join(cut)
    ollama = ollama.replace("slices.Sorted(maps.Keys(set))", "sortedKeys(set)")
    ollama = ollama.replace("slices.Contains(", "containsString(")
    assert "slices." not in ollama and "maps." not in ollama, ollama
    thinking = re.sub(r"^package thinking", "", thinking_go, flags=re.M)
    thinking = re.sub(r"^import \([^)]*\)", "", thinking, count=1, flags=re.M)
    return ollama, thinking


def main():
    repo = sys.argv[1]
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    ollama, thinking = harness(repo)
    with open(os.path.join(HERE, "go_template_vars.go"), encoding="utf-8") as f:
        main_go = f.read()
    cases = list(OLLAMA_CASES)
    for name in sorted(os.listdir(TEMPLATES)):
        if name.endswith(".gotmpl"):
            with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
                cases.append(f.read())
    with open(PARSE_GOLDEN, encoding="utf-8") as f:
        next(f)
        cases += [row["template"] for row in map(json.loads, f) if row["error"] is None]
    cases += compositions(random.Random(20261207), 1500)
    seen, unique = set(), []
    for c in cases:
        if c not in seen and not re.search(r"else\s+with", c):
            seen.add(c)
            unique.append(c)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "main.go"), "w", encoding="utf-8") as f:
            f.write(main_go)
        with open(os.path.join(tmp, "ollama.go"), "w", encoding="utf-8") as f:
            f.write("package main\n\nimport (\n\t\"errors\"\n\t\"strings\"\n\t\"text/template\"\n"
                    "\t\"text/template/parse\"\n)\n\nvar _ = errors.New\nvar _ = strings.ToLower\n\n"
                    + ollama)
        with open(os.path.join(tmp, "thinking.go"), "w", encoding="utf-8") as f:
            f.write("package main\n\nimport (\n\t\"strings\"\n\t\"text/template\"\n"
                    "\t\"text/template/parse\"\n)\n" + thinking)
        with open(os.path.join(tmp, "go.mod"), "w", encoding="utf-8") as f:
            f.write("module vars\n\ngo 1.19\n")
        stdin = "".join(json.dumps({"template": c}) + "\n" for c in unique)
        result = subprocess.run(["go", "run", "."], cwd=tmp, input=stdin, capture_output=True,
                                text=True)
        if result.returncode != 0:
            sys.exit(result.stderr)
    lines = result.stdout.splitlines()
    header = json.loads(lines[0])
    rows = [json.loads(l) for l in lines[1:]]
    assert len(rows) == len(unique), (len(rows), len(unique))
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(json.dumps({"go": header["go"], "ollama": commit,
                            "generator": "scripts/oracle/gen_go_template_vars_golden.py"}) + "\n")
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    accepted = [r for r in rows if r["vars"] is not None]
    thinking = sum(1 for r in accepted if r["thinking"][0] and r["thinking"][1])
    print(f"{len(rows)} cases ({len(rows) - len(accepted)} rejected, {thinking} with thinking tags)"
          f" from {header['go']}, ollama {commit[:7]} -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
