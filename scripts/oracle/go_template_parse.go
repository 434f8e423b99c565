// Reads JSON lines {"template": "..."} on stdin and writes, for each, the template and the error
// that Ollama's template.Parse gives for it: Go's text/template parser with Ollama's function
// names, then Ollama's rejection of {{template "name"}} without a pipeline. Run by
// gen_go_template_golden.py; the Go version used is recorded in the golden file.
package main

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"text/template"
	"text/template/parse"
)

var funcs = template.FuncMap{
	"json":             func(v any) string { return "" },
	"currentDate":      func(args ...string) string { return "" },
	"yesterdayDate":    func(args ...string) string { return "" },
	"toTypeScriptType": func(v any) string { return "" },
}

func nilPipeTemplate(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return false
		}
		for _, c := range n.Nodes {
			if nilPipeTemplate(c) {
				return true
			}
		}
	case *parse.TemplateNode:
		return n.Pipe == nil
	case *parse.IfNode:
		return nilPipeTemplate(n.List) || nilPipeTemplate(n.ElseList)
	case *parse.RangeNode:
		return nilPipeTemplate(n.List) || nilPipeTemplate(n.ElseList)
	case *parse.WithNode:
		return nilPipeTemplate(n.List) || nilPipeTemplate(n.ElseList)
	}
	return false
}

func check(text string) *string {
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(text)
	if err != nil {
		s := err.Error()
		return &s
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && nilPipeTemplate(tt.Tree.Root) {
			s := "undefined template specified"
			return &s
		}
	}
	return nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := json.NewEncoder(os.Stdout)
	out.Encode(map[string]string{"go": runtime.Version()})
	for in.Scan() {
		var c struct {
			Template string `json:"template"`
		}
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			panic(err)
		}
		out.Encode(map[string]any{"template": c.Template, "error": check(c.Template)})
	}
}
