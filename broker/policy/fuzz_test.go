package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// FuzzParse: Parse never panics; every error is a list of positioned
// *policy.Error; a policy that loads can decide any request without panicking,
// and decides the same request the same way twice.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, s := range append(seeds, bad...) {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b, "orders-db", uint8(1))
		}
	}
	f.Add([]byte(ghPolicy), "ci-db", uint8(2))
	f.Add([]byte(semantics), "a", uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, target string, access uint8) {
		p, err := policy.Parse("f.yaml", data)
		if err != nil {
			var pe *policy.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		in := policy.Input{
			Identity: identity.Identity{IssuerName: "okta", Subject: "s", Groups: []string{"ai-agents"}, Claims: map[string]any{"repository": "org/repo"}},
			Target:   target, Mode: spec.Exec, Access: spec.Access(access % 5),
		}
		d1, d2 := p.Decide(in), p.Decide(in)
		if d1.Effect != d2.Effect || d1.Rule != d2.Rule {
			t.Fatalf("decisions differ: %v vs %v", d1, d2)
		}
		if d1.Effect != policy.EffectDeny && (d1.Target == nil || d1.Rule == "") {
			t.Fatalf("non-deny decision without target or rule: %v", d1)
		}
	})
}
