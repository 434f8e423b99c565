// The I/O of gen_go_template_vars_golden.py's throwaway program: reads JSON lines
// {"template": "..."} on stdin and writes {"template", "vars", "thinking"} for each, from
// Ollama's own Parse, Vars and thinking.InferTags (cut out of its sources by the generator
// into files beside this one). vars is null when Parse rejects the template.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"text/template"
)

// The names Ollama's template.Parse defines; their bodies never run here.
var funcs = template.FuncMap{
	"json":             func(v any) string { return "" },
	"currentDate":      func(args ...string) string { return "" },
	"yesterdayDate":    func(args ...string) string { return "" },
	"toTypeScriptType": func(v any) string { return "" },
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func sortedKeys(set map[string]struct{}) []string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func read(text string) (vars []string, tags []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	t, err := Parse(text)
	if err != nil {
		return nil, nil, err
	}
	vars, err = t.Vars()
	if err != nil {
		return nil, nil, err
	}
	open, close := InferTags(t.Template)
	return vars, []string{open, close}, nil
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
		vars, tags, err := read(c.Template)
		row := map[string]any{"template": c.Template, "vars": vars, "thinking": tags}
		if err != nil {
			row["vars"] = nil
			row["thinking"] = nil
			row["error"] = err.Error()
		} else if vars == nil {
			row["vars"] = []string{}
		}
		out.Encode(row)
	}
}
