package httprule

import "github.com/jitgate/jitgate/ephemeral/spec"

// FromSpec converts a grant's (or policy's) rules: no methods means any
// method, no effect means allow. The broker and the proxy both build their
// guards through it, so they judge with the same rules.
func FromSpec(rs []spec.HTTPRule) []Rule {
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		m := r.Methods
		if len(m) == 0 {
			m = []string{"*"}
		}
		e := r.Effect
		if e == "" {
			e = "allow"
		}
		out = append(out, Rule{Methods: m, Path: r.Path, Effect: e})
	}
	return out
}
