package guard_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// sqlCase is one entry of testdata/cases.yaml.
type sqlCase struct {
	SQL        string   `yaml:"sql"`
	Access     string   `yaml:"access"`
	Allowed    bool     `yaml:"allowed"`
	Class      string   `yaml:"class"`
	Reason     string   `yaml:"reason"`
	Kind       string   `yaml:"kind"`
	Session    bool     `yaml:"session"`
	Setup      []string `yaml:"setup"`
	Config     *caseCfg `yaml:"config"`
	ParseError bool     `yaml:"parse_error"`
	SecondWall bool     `yaml:"second_wall"`
	PGSkip     bool     `yaml:"pg_skip"`
	Note       string   `yaml:"note"`
	Threat     string   `yaml:"threat"`
}

type caseCfg struct {
	DenyKinds         []string `yaml:"deny_kinds"`
	AllowKinds        []string `yaml:"allow_kinds"`
	DenyFunctions     []string `yaml:"deny_functions"`
	AllowFunctions    []string `yaml:"allow_functions"`
	AllowUnsafeWrites bool     `yaml:"allow_unsafe_writes"`
}

func loadCases(tb testing.TB) []sqlCase {
	tb.Helper()
	b, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var cases []sqlCase
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&cases); err != nil {
		tb.Fatalf("cases.yaml: %v", err)
	}
	return cases
}

func (c sqlCase) guard(tb testing.TB) *guard.Guard {
	tb.Helper()
	access, err := spec.ParseAccess(c.Access)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := guard.Config{Access: access}
	if c.Config != nil {
		cfg.DenyKinds, cfg.AllowKinds = c.Config.DenyKinds, c.Config.AllowKinds
		cfg.DenyFunctions, cfg.AllowFunctions = c.Config.DenyFunctions, c.Config.AllowFunctions
		cfg.AllowUnsafeWrites = c.Config.AllowUnsafeWrites
	}
	g, err := guard.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func (c sqlCase) name() string {
	n := c.Access + ": " + c.SQL
	if len(n) > 80 {
		n = n[:80]
	}
	return n
}

// TestCases replays the adversarial table: exact class, verdict and reason.
func TestCases(t *testing.T) {
	t.Parallel()
	cases := loadCases(t)
	if len(cases) < 100 {
		t.Fatalf("cases.yaml has %d cases, want at least 100", len(cases))
	}
	threats := map[string]int{}
	for _, c := range cases {
		threats[c.Threat]++
	}
	for _, want := range []string{"multi-statement strings", "comments, nested comments", "COPY TO/FROM PROGRAM, server files, STDOUT",
		"DO blocks with dynamic EXECUTE, CREATE FUNCTION + CALL, SECURITY DEFINER", "CTEs with DML", "EXPLAIN ANALYZE runs the statement",
		"SELECT INTO and CREATE TABLE AS", "PREPARE/EXECUTE", "search_path hijacking (CVE-2018-1058 class)", "WHERE true and friends",
		"no false positives", "U&\"...\" identifiers", "client encodings, standard_conforming_strings"} {
		if threats[want] == 0 {
			t.Errorf("no case covers %q", want)
		}
	}
	for _, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			t.Parallel()
			g := c.guard(t)
			var v guard.Verdict
			if c.Session || len(c.Setup) > 0 {
				s := g.NewSession()
				for _, setup := range c.Setup {
					if sv := s.Check(setup); !sv.Allowed {
						t.Fatalf("setup %q refused: %s", setup, sv.Reason)
					}
				}
				v = s.Check(c.SQL)
			} else {
				v = g.Check(c.SQL)
			}
			if v.Allowed != c.Allowed {
				t.Fatalf("allowed = %v, want %v (reason %q, class %s)", v.Allowed, c.Allowed, v.Reason, v.Classification.Class)
			}
			if c.Allowed && v.Reason != "" {
				t.Errorf("allowed with a reason %q", v.Reason)
			}
			if !c.Allowed && !strings.Contains(v.Reason, c.Reason) {
				t.Errorf("reason = %q, want it to contain %q", v.Reason, c.Reason)
			}
			if !c.Allowed && c.Reason == "" {
				t.Errorf("refusal case without an expected reason")
			}
			_, classifyErr := guard.Classify(c.SQL)
			if c.ParseError {
				if classifyErr == nil {
					t.Fatalf("Classify accepted unparseable input")
				}
				return
			}
			if errors.Is(classifyErr, guard.ErrEmpty) && c.Allowed {
				return // no statement: allowed by Check, refused by Classify
			}
			if classifyErr != nil {
				t.Fatalf("Classify: %v", classifyErr)
			}
			want, err := guard.ParseClass(c.Class)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Classification.Class; got != want {
				t.Errorf("class = %s, want %s (reasons %q)", got, want, reasonsOf(v.Classification))
			}
			if c.Kind != "" && v.Classification.Statements[0].Kind != c.Kind {
				t.Errorf("kind = %q, want %q", v.Classification.Statements[0].Kind, c.Kind)
			}
		})
	}
}

func reasonsOf(c guard.Classification) [][]string {
	var out [][]string
	for _, s := range c.Statements {
		out = append(out, s.Reasons)
	}
	return out
}
