package policy_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

const configRules = `rules:
  - {name: r, when: "true", targets: [app-config], access: read}
`

func TestConfigTargetLoads(t *testing.T) {
	t.Parallel()
	for _, creds := range []string{
		`{source: local, store: "file:store.json"}`,
		`{source: vault, vault_mount: secret, kv_path: app}`,
	} {
		src := kubeHead + `  - name: app-config
    kind: config
    keys: ["flags/*", "db/url"]
    reveal: ["flags/beta"]
    credentials: ` + creds + `
    masking: {detectors: [credit_card]}
` + configRules
		p, err := policy.Parse("c.yaml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", creds, err)
		}
		tg, ok := p.Target("app-config")
		if !ok || tg.Protocol != spec.Config || tg.Kind != "config" || tg.Address != "kv:app-config" {
			t.Fatalf("%+v", tg)
		}
		g := tg.SpecGuard(spec.Read)
		if strings.Join(g.Config.Keys, ",") != "flags/*,db/url" || strings.Join(g.Config.Reveal, ",") != "flags/beta" {
			t.Fatalf("scope %+v", g.Config)
		}
		if st := tg.SpecTarget(); st.Protocol != spec.Config || st.Address == "" {
			t.Fatalf("spec target %+v", st)
		}
	}
}

// TestConfigTargetErrors: broken config targets are refused at load, each
// with its reason.
func TestConfigTargetErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ target, want string }{
		{`{name: app-config, kind: config, credentials: {source: local, store: "file:s.json"}}`, "keys is required for a config target"},
		{`{name: app-config, kind: config, keys: ["flags/../admin/x"], credentials: {source: local, store: "file:s.json"}}`, `path segment ".." is not allowed`},
		{`{name: app-config, kind: config, keys: ["*/password"], credentials: {source: local, store: "file:s.json"}}`, "globs only in the field"},
		{`{name: app-config, kind: config, keys: ["flags/*"], reveal: ["../x/y"], credentials: {source: local, store: "file:s.json"}}`, `path segment ".." is not allowed`},
		{`{name: app-config, kind: config, keys: ["flags/*"]}`, "credentials are required for a config target"},
		{`{name: app-config, kind: config, keys: ["flags/*"], credentials: {source: local, store: '{"flags":{"a":"b"}}'}}`, "store must be a reference"},
		{`{name: app-config, kind: config, keys: ["flags/*"], credentials: {source: local}}`, "store (file:PATH or env:NAME"},
		{`{name: app-config, kind: config, keys: ["flags/*"], credentials: {source: vault, vault_mount: secret}}`, "kv_path (the KV v2 path prefix"},
		{`{name: app-config, kind: config, keys: ["flags/*"], credentials: {source: local, store: "file:s", token: "env:X"}}`, "token and kv_field are for http targets"},
		{`{name: app-config, kind: http, address: "api:80", keys: ["flags/*"], credentials: {source: local, token: "env:T"}}`, "keys is only for config targets"},
		{`{name: app-config, kind: http, address: "api:80", credentials: {source: local, token: "env:T", store: "file:s"}}`, "store is only for config targets"},
	} {
		src := kubeHead + "  - " + tc.target + "\n" + configRules
		_, err := policy.Parse("c.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.target, err, tc.want)
		}
	}
}
