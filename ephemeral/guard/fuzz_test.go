package guard_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// FuzzClassify: Classify never panics; a string classified read contains no
// data-modifying node and no call of a dangerous function, as found by an
// independent walk of pg_query's JSON tree; a Check verdict never allows a
// class the access level does not.
func FuzzClassify(f *testing.F) {
	for _, c := range loadCases(f) {
		f.Add(c.SQL)
		for _, s := range c.Setup {
			f.Add(s)
		}
	}
	g, err := guard.New(guard.Config{Access: spec.Read, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		c, err := guard.Classify(sql)
		v := g.Check(sql)
		if err != nil {
			if v.Allowed && !(errors.Is(err, guard.ErrEmpty) && len(v.Classification.Statements) == 0) {
				t.Fatalf("unclassifiable %q allowed", sql)
			}
			return
		}
		if v.Allowed && !c.Class.Allowed(spec.Read) {
			t.Fatalf("%q allowed at read with class %s", sql, c.Class)
		}
		if v.Allowed != (c.Class == guard.ClassRead && !anyUnsafe(c)) {
			t.Fatalf("%q: allowed=%v but class %s (%s)", sql, v.Allowed, c.Class, v.Reason)
		}
		if c.Class != guard.ClassRead {
			return
		}
		js, err := pg_query.ParseToJSON(sql)
		if err != nil {
			t.Fatalf("Classify parsed %q but ParseToJSON did not: %v", sql, err)
		}
		var tree struct {
			Stmts []struct {
				Stmt map[string]any `json:"stmt"`
			} `json:"stmts"`
		}
		if err := json.Unmarshal([]byte(js), &tree); err != nil {
			t.Fatal(err)
		}
		for _, st := range tree.Stmts {
			if explain, ok := st.Stmt["ExplainStmt"]; ok && !explainRuns(explain) {
				continue // EXPLAIN without ANALYZE only plans its statement
			}
			if bad := findBad(st.Stmt); bad != "" {
				t.Fatalf("%q classified read but contains %s", sql, bad)
			}
		}
	})
}

func anyUnsafe(c guard.Classification) bool {
	for _, s := range c.Statements {
		if s.UnsafeWrite {
			return true
		}
	}
	return false
}

// explainRuns reports whether an ExplainStmt's options ask for ANALYZE with
// anything but an explicit false.
func explainRuns(explain any) bool {
	e, _ := explain.(map[string]any)
	opts, _ := e["options"].([]any)
	for _, o := range opts {
		om, _ := o.(map[string]any)
		d, _ := om["DefElem"].(map[string]any)
		if name, _ := d["defname"].(string); !strings.EqualFold(name, "analyze") {
			continue
		}
		arg, ok := d["arg"]
		if !ok {
			return true
		}
		b, _ := json.Marshal(arg)
		switch strings.ToLower(string(b)) {
		case `{"string":{"sval":"false"}}`, `{"string":{"sval":"off"}}`, `{"integer":{}}`, `{"boolean":{}}`:
			continue
		}
		return true
	}
	return false
}

var independentDangerous = []string{"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import", "lo_export",
	"set_config", "dblink", "dblink_exec", "pg_terminate_backend", "query_to_xml", "nextval", "setval", "pg_notify"}

// findBad walks a JSON parse tree for DML nodes, INTO clauses, row locks and
// dangerous calls.
func findBad(n any) string {
	switch v := n.(type) {
	case map[string]any:
		for k, child := range v {
			switch k {
			case "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CreateTableAsStmt":
				return k
			case "intoClause", "lockingClause":
				return k
			case "FuncCall":
				if fc, ok := child.(map[string]any); ok {
					if name := lastName(fc["funcname"]); name != "" {
						for _, d := range independentDangerous {
							if strings.EqualFold(name, d) {
								return "a call of " + name
							}
						}
					}
				}
			}
			if bad := findBad(child); bad != "" {
				return bad
			}
		}
	case []any:
		for _, child := range v {
			if bad := findBad(child); bad != "" {
				return bad
			}
		}
	}
	return ""
}

func lastName(v any) string {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return ""
	}
	last, _ := list[len(list)-1].(map[string]any)
	s, _ := last["String"].(map[string]any)
	name, _ := s["sval"].(string)
	return name
}
