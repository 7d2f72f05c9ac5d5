package broker_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

const configPolicy = `version: 1
issuers:
  - {name: okta, issuer: https://example.okta.com/oauth2/default, audience: api://jitgate}
targets:
  - name: app-config
    kind: config
    keys: ["flags/*", "db/url"]
    credentials: {source: local, store: "file:store.json"}
rules:
  - {name: agents, when: '"ai-agents" in identity.groups', targets: [app-config], access: read}
`

// TestEvaluateConfig: the broker judges a config read with the engine's key
// parser and the target's globs, before anything is issued.
func TestEvaluateConfig(t *testing.T) {
	t.Parallel()
	p := parsePolicy(t, "c.yaml", configPolicy)
	for _, tc := range []struct {
		op     string
		allow  bool
		reason string
	}{
		{"flags/db_url", true, ""},
		{"flags/*", true, ""},
		{"db/url", true, ""},
		{"db/password", false, `key refused: "db/password" is not one target app-config exposes (flags/*, db/url)`},
		{"admin/root_password", false, `key refused: "admin/root_password" is not one target app-config exposes`},
		{"flags/../admin/root_password", false, `key refused: key "flags/../admin/root_password": path segment ".." is not allowed`},
		{"db/*", true, ""}, // the proxy shows db/url only: the intersection with the target's globs
		{"admin/*", false, `key refused: glob "admin/*" is not under a path target app-config exposes`},
		{"*/password", false, "globs only in the field"},
		{"flags/nested/x", false, `"flags/nested/x" is not one target app-config exposes`},
	} {
		ev, err := evaluateExec(p, "app-config", tc.op)
		if err != nil {
			t.Fatalf("%q: %v", tc.op, err)
		}
		reasons := strings.Join(ev.Reasons, "; ")
		if (ev.Effect == policy.EffectAllow) != tc.allow || !strings.Contains(reasons, tc.reason) {
			t.Errorf("%q: effect %s, reasons %q; want allow=%v with %q", tc.op, ev.Effect, reasons, tc.allow, tc.reason)
		}
		if ev.Access != spec.Read || len(ev.Statements) != 1 || ev.Statements[0].SQL != tc.op {
			t.Errorf("%q: access %s, statements %+v", tc.op, ev.Access, ev.Statements)
		}
	}
	for _, in := range []broker.RequestInput{
		{Target: "app-config", Mode: spec.Session},
		{Target: "app-config", Mode: spec.Exec, Operation: "  "},
	} {
		wantBadRequest(t, p, in)
	}
}
