// goyaml reads YAML documents the way the OpenTelemetry Collector's config loader does
// (go.opentelemetry.io/collector/confmap: yaml.Unmarshal into an `any`) and prints what it read,
// with Go's types, so that tests can compare Fleetbridge's reading with the collector's.
//
// stdin: a JSON array of YAML texts. stdout: a JSON array, one entry per text:
//
//	{"value": <typed>, "supervised": <typed>}   or   {"error": "..."}
//
// where "supervised" is what the collector reads after the OpAMP Supervisor has re-marshalled the
// document (it loads the remote config with the same library and writes it out with yaml.Marshal),
// and <typed> is null | {"bool": b} | {"int": "decimal"} | {"float": "go 'g' format"} |
// {"str": s} | {"time": "RFC 3339, UTC"} | {"seq": [<typed>...]} | {"map": {key: <typed>}}
// (map keys formatted with %v, as koanf does).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

func typed(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case bool:
		return map[string]any{"bool": x}
	case int:
		return map[string]any{"int": strconv.FormatInt(int64(x), 10)}
	case int64:
		return map[string]any{"int": strconv.FormatInt(x, 10)}
	case uint64:
		return map[string]any{"int": strconv.FormatUint(x, 10)}
	case float64:
		switch {
		case math.IsNaN(x):
			return map[string]any{"float": "NaN"}
		case math.IsInf(x, 1):
			return map[string]any{"float": "Infinity"}
		case math.IsInf(x, -1):
			return map[string]any{"float": "-Infinity"}
		}
		return map[string]any{"float": strconv.FormatFloat(x, 'g', -1, 64)}
	case string:
		return map[string]any{"str": x}
	case time.Time:
		return map[string]any{"time": x.UTC().Format(time.RFC3339Nano)}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = typed(e)
		}
		return map[string]any{"seq": out}
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = typed(e)
		}
		return map[string]any{"map": out}
	case map[any]any:
		out := map[string]any{}
		for k, e := range x {
			out[fmt.Sprintf("%v", k)] = typed(e)
		}
		return map[string]any{"map": out}
	}
	return map[string]any{"unknown": fmt.Sprintf("%T %v", v, v)}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("goyaml: go.yaml.in/yaml/v3")
		return
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		panic(err)
	}
	if len(os.Args) > 1 && os.Args[1] == "--marshal" {
		marshal(in)
		return
	}
	var texts []string
	if err := json.Unmarshal(in, &texts); err != nil {
		panic(err)
	}
	out := make([]any, len(texts))
	for i, t := range texts {
		var v any
		if err := yaml.Unmarshal([]byte(t), &v); err != nil {
			out[i] = map[string]any{"error": err.Error()}
			continue
		}
		entry := map[string]any{"value": typed(v)}
		if b, err := yaml.Marshal(v); err != nil {
			entry["supervisedError"] = err.Error()
		} else {
			var again any
			if err := yaml.Unmarshal(b, &again); err != nil {
				entry["supervisedError"] = err.Error()
			} else {
				entry["supervised"] = typed(again)
			}
		}
		out[i] = entry
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}

// marshal (--marshal): stdin is a JSON array of strings; stdout a JSON array with, for each, the
// texts Go programs write it as: yaml.v3 documents (at several depths, indentations and in a
// sequence), encoding/json (compact and indented) and fmt's %q and %+q, as an agent might
// report it back in an effective config or an error message.
func marshal(in []byte) {
	var values []string
	if err := json.Unmarshal(in, &values); err != nil {
		panic(err)
	}
	out := make([][]string, len(values))
	for i, v := range values {
		var forms []string
		docs := []any{
			map[string]any{"k": v},
			map[string]any{"exporters": map[string]any{"otlp": map[string]any{"headers": map[string]any{"key": v}}}},
			[]any{v, map[string]any{"k": []any{v}}},
		}
		for _, d := range docs {
			for _, indent := range []int{2, 4, 8} {
				var b bytes.Buffer
				enc := yaml.NewEncoder(&b)
				enc.SetIndent(indent)
				if err := enc.Encode(d); err != nil {
					panic(err)
				}
				enc.Close()
				forms = append(forms, b.String())
			}
			if b, err := yaml.Marshal(d); err == nil {
				forms = append(forms, string(b))
			}
			if b, err := json.Marshal(d); err == nil {
				forms = append(forms, string(b))
			}
			if b, err := json.MarshalIndent(d, "", "  "); err == nil {
				forms = append(forms, string(b))
			}
		}
		forms = append(forms, fmt.Sprintf("error: %q", v), fmt.Sprintf("error: %+q", v), fmt.Sprintf("error: %#v", map[string]string{"k": v}))
		out[i] = forms
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
