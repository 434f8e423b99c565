#!/usr/bin/env python3
"""Golden vectors for kiln's Go template syntax check (src/template/go_syntax.rs).

Builds a corpus (Ollama's own templates, hand-written cases for every error path of Go's
text/template parser, and seeded random mutations of template fragments), runs each through
Go's real parser with Ollama's function names (go_template_parse.go, `go run`), and writes
src/template/testdata/go-parse-golden.jsonl: a header line with the Go version, then one
{"template", "error"} object per case (error null when Go accepts it).

    python3 scripts/oracle/gen_go_template_golden.py      # needs `go` (Debian: golang-go)

Cases with `{{else with` are left out: Go before 1.23 rejects them, Ollama's Go accepts them
(go_syntax.rs tests that form by hand).
"""
import glob
import json
import os
import random
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "src", "template", "testdata", "go-parse-golden.jsonl")

HAND = [
    "", "plain text", "{{ .Prompt }}", "{{ .System }} {{ .Prompt }}", "{{ .Prompt", "{{ if .Prompt }}",
    "{{ Prompt }}", "{{ .Prompt }", "{{ .Prompt }}}}", "{{}}", "{{ }}", "{{ - }}", "{{- .x -}}",
    "a  {{- .x -}}  b", "{{-.x}}", "{{.x-}}", "{{ .x -}}\n\n b", "{{/* c */}}", "{{- /* c */ -}}",
    "{{/* c */ }}", "{{/* unclosed", "{{/* c */ x}}", "{{ end }}", "{{ else }}", "{{ if . }}{{ end }}",
    "{{ if . }}a{{ else }}b{{ end }}", "{{ if . }}a{{ else if .b }}b{{ end }}",
    "{{ if . }}a{{ else if .b }}b{{ else }}c{{ end }}", "{{ if . }}{{ else }}{{ else }}{{ end }}",
    "{{ range . }}{{ end }}", "{{ range $i, $m := .Messages }}{{ $i }}{{ $m.Content }}{{ end }}",
    "{{ range $i, $m, $x := . }}{{ end }}", "{{ range $i := . }}{{ end }}", "{{ range $i, 3 := . }}{{ end }}",
    "{{ $x, $y := . }}", "{{ $x := . }}{{ $x }}", "{{ $x }}", "{{ $x = 1 }}", "{{ $ }}", "{{ $.Prompt }}",
    "{{ if $x := . }}{{ $x }}{{ end }}{{ $x }}", "{{ with $x := . }}{{ $x }}{{ end }}",
    "{{ with . }}a{{ else }}b{{ end }}", "{{ break }}", "{{ continue }}",
    "{{ range . }}{{ break }}{{ end }}", "{{ range . }}{{ continue }}{{ end }}",
    "{{ range . }}{{ break 1 }}{{ end }}", "{{ range . }}{{ if . }}{{ break }}{{ end }}{{ end }}",
    "{{ define \"a\" }}x{{ end }}", "{{ define \"a\" }}x{{ end }}{{ define \"a\" }}y{{ end }}",
    "{{ define \"a\" }}x{{ end }}{{ define \"a\" }} {{ end }}", "{{ define \"a\" }} {{ end }}{{ define \"a\" }}y{{ end }}",
    "{{ define a }}x{{ end }}", "{{ define \"a\" x }}{{ end }}", "{{ define \"a\" }}x", "{{ define \"a\" }}x{{ else }}{{ end }}",
    "{{ define `a` }}x{{ end }}{{ template `a` . }}", "{{ template \"a\" }}", "{{ template \"a\" . }}",
    "{{ template a }}", "{{ template \"\\q\" . }}", "{{ if . }}{{ template \"a\" }}{{ end }}",
    "{{ define \"b\" }}{{ template \"a\" }}{{ end }}", "{{ block \"a\" . }}x{{ end }}",
    "{{ block \"a\" }}x{{ end }}", "{{ block \"a\" . }}x", "{{ block \"a\" . }}x{{ else }}y{{ end }}",
    "{{ block \"a\" . }}x{{ end }}{{ define \"a\" }}y{{ end }}", "x{{ define \"\" }}y{{ end }}",
    "{{ json .Messages }}", "{{ currentDate }}", "{{ yesterdayDate }}", "{{ toTypeScriptType . }}",
    "{{ printf \"%s\" .x }}", "{{ len .Messages | eq 1 }}", "{{ .x | printf \"%s\" }}", "{{ .x | 1 }}",
    "{{ .x | \"a\" }}", "{{ .x | . }}", "{{ .x | nil }}", "{{ .x | true }}", "{{ .x | .y }}", "{{ .x | $ }}",
    "{{ .x | }}", "{{ | .x }}", "{{ .x || .y }}", "{{ nil }}", "{{ true }}", "{{ \"a\".b }}", "{{ 1.b }}",
    "{{ nil.b }}", "{{ true.b }}", "{{ ..b }}", "{{ .a.b.c }}", "{{ $.a.b }}", "{{ (.a).b }}", "{{ (.a) }}",
    "{{ ( .a ) .b }}", "{{ (.a }}", "{{ .a) }}", "{{ () }}", "{{ (((.a))) }}", "{{ index .a 1 }}",
    "{{ slice .a 1 2 }}", "{{ 1 }}", "{{ -1 }}", "{{ +1 }}", "{{ 1.5 }}", "{{ .5 }}", "{{ 1e3 }}", "{{ 1e400 }}",
    "{{ 0x1F }}", "{{ 0X1f }}", "{{ 0o17 }}", "{{ 0b101 }}", "{{ 017 }}", "{{ 089 }}", "{{ 0x }}", "{{ 0x1p-2 }}",
    "{{ 0x1.8p1 }}", "{{ 1_000 }}", "{{ 1__0 }}", "{{ _1 }}", "{{ 1_ }}", "{{ 0x_1 }}", "{{ 99999999999999999999 }}",
    "{{ -9223372036854775808 }}", "{{ -9223372036854775809 }}", "{{ 18446744073709551615 }}",
    "{{ 18446744073709551616 }}", "{{ 1i }}", "{{ 1.5i }}", "{{ 1+2i }}", "{{ 1-2i }}", "{{ 1+2 }}", "{{ 1a }}",
    "{{ 1.2.3 }}", "{{ + }}", "{{ - }}", "{{ . }}", "{{ 'a' }}", "{{ 'ab' }}", "{{ '' }}", "{{ '\\n' }}",
    "{{ '\\x41' }}", "{{ '\\u00e9' }}", "{{ '\\400' }}", "{{ 'a }}", "{{ \"a }}", "{{ \"a\nb\" }}",
    "{{ `a\nb` }}", "{{ `a }}", "{{ \"\\q\" }}", "{{ \"\\'\" }}", "{{ \"\\x4\" }}", "{{ \"\\u12\" }}",
    "{{ \"\\U0010ffff\" }}", "{{ \"\\U00110000\" }}", "{{ \"\\ud800\" }}", "{{ \"\\377\" }}", "{{ \"\\378\" }}",
    "{{ .x % }}", "{{ .x@ }}", "{{ .x! }}", "{{ x }}", "{{ .x y }}", "{{ .x := 1 }}", "{{ := }}", "{{ : }}",
    "{{ = }}", "{{ , }}", "{{ .x, .y }}", "{{ é }}", "{{ .é }}", "{{ .x\u00e9 }}", "{{ \u00a0 }}", "{{ \u2603 }}",
    "{{ .x\t}}", "{{\n.x\n}}", "a\n{{ .x\n", "a\n{{ .x\n}}\n{{ if }}", "line1\nline2\n{{ end }}",
    "{{ if .a }}\n{{ else }}\n{{ end }}\n{{ end }}", "{{ if .a }}\n\n{{ range . }}", "{{ .a\n.b }}",
    "{{ \"abcdefghijklmnop\" \"x\" | 3 }}", "{{ .abcdefghijklmnop | 3 }}", "{{ range . }}{{ else }}{{ end }}",
    "{{ with }}{{ end }}", "{{ if }}{{ end }}", "{{ range }}{{ end }}", "{{ if .a b }}{{ end }}",
    "{{ if .a | not }}x{{ end }}", "{{ and .a .b }}", "{{ or }}", "{{ not (eq .a 1) }}", "{{ call .f 1 }}",
    "{{ html . }}{{ js . }}{{ urlquery . }}{{ print . }}{{ println . }}", "{{ ne 1 2 }}{{ lt 1 2 }}{{ le 1 2 }}{{ gt 1 2 }}{{ ge 1 2 }}",
    "{{{{ .x }}", "{{ .x }}}", "}}", "{{", "{{-", "{{- ", "{{ -", "-}}", "{{ .x -}", "{{ .x - }}",
    "{{ \"a\" }}{{ `b` }}", "{{ $x := 1 }}{{ if . }}{{ $x = 2 }}{{ end }}{{ $x }}",
    "{{ range $k, $v := . }}{{ end }}{{ $k }}", "{{ define \"a\" }}{{ $x := 1 }}{{ end }}{{ $x }}",
    "{{ template \"a\" $x }}", "{{ template \"a\" (.x) }}", "{{ template \"a\" . . }}",
    "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}",
    "{{ if .Messages }}{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}{{ end }}{{ end }}",
]

FRAGMENT_SOURCES = sorted(glob.glob(os.path.join(ROOT, "src", "template", "ollama", "*.gotmpl")))
NOISE = list("{}-.$()|\"'`: ,=/*\n") + ["{{", "}}", "{{ end }}", "{{ else }}", "{{ if . }}", "{{- ", " -}}"]


def mutate(rng, s):
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randint(0, len(s))
        if op < 0.4 and s:
            j = min(len(s), i + rng.randint(1, 3))
            s = s[:i] + s[j:]
        elif op < 0.8:
            s = s[:i] + rng.choice(NOISE) + s[i:]
        else:
            j = min(len(s), i + rng.randint(1, 6))
            s = s[:j] + s[i:j] + s[j:]
    return s


def corpus():
    cases = list(HAND)
    fragments = []
    for path in FRAGMENT_SOURCES:
        text = open(path, encoding="utf-8").read()
        cases.append(text)
        fragments += [line for line in text.split("\n") if "{{" in line]
    rng = random.Random(20261125)
    for _ in range(2500):
        base = rng.choice(fragments)
        if rng.random() < 0.3:
            base += "\n" + rng.choice(fragments)
        cases.append(mutate(rng, base))
    seen, out = set(), []
    for c in cases:
        if c in seen or re.search(r"else\s+with", c):
            continue
        seen.add(c)
        out.append(c)
    return out


def main():
    cases = corpus()
    stdin = "".join(json.dumps({"template": c}) + "\n" for c in cases)
    result = subprocess.run(["go", "run", os.path.join(HERE, "go_template_parse.go")],
                            input=stdin, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    header = json.loads(lines[0])
    rows = [json.loads(l) for l in lines[1:]]
    assert len(rows) == len(cases), (len(rows), len(cases))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(json.dumps({"go": header["go"], "generator": "scripts/oracle/gen_go_template_golden.py"}) + "\n")
        for row in rows:
            f.write(json.dumps({"template": row["template"], "error": row["error"]}, ensure_ascii=False) + "\n")
    errors = sum(1 for r in rows if r["error"])
    print(f"{len(rows)} cases ({errors} rejected) from {header['go']} -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
