package targetsource_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/targetsource"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/vaulttest"
)

func configTarget(t *testing.T, creds string) *policy.Target {
	t.Helper()
	p, err := policy.Parse("c.yaml", []byte(`version: 1
targets:
  - name: app-config
    kind: config
    keys: ["flags/*", "db/url"]
    credentials: `+creds+`
rules:
  - {name: r, when: "true", targets: [app-config], access: read}
`))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := p.Target("app-config")
	return tg
}

func issueValues(t *testing.T, src credentials.Source) spec.Credential {
	t.Helper()
	cred, err := src.Issue(context.Background(), credentials.Request{GrantID: "g1", Access: spec.Read, Expires: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Revoke(context.Background(), cred); err != nil {
		t.Fatalf("revoke %s: %v", cred.LeaseID, err)
	}
	return cred
}

// TestConfigSourceVault: a config target with source vault reads the KV v2
// secrets under kv_path (from the Vault API double) and keeps only the keys
// the target exposes.
func TestConfigSourceVault(t *testing.T) {
	t.Parallel()
	vs := vaulttest.Start(t, vaulttest.Config{KV: map[string]map[string]map[string]any{"secret": {
		"app/flags": {"beta": "true", "db_url": "postgres://a:pw@db/app", "limit": 5},
		"app/db":    {"url": "db.internal", "password": "never-issued"},
		"app/admin": {"root": "never-issued"},
	}}})
	src, err := targetsource.New(configTarget(t, "{source: vault, vault_mount: secret, kv_path: app}"), vaultEnv(t, vs.Addr(), vs.Token))
	if err != nil {
		t.Fatal(err)
	}
	cred := issueValues(t, src)
	got := map[string]string{}
	for k, v := range cred.Values {
		got[k] = v.Secret().Reveal()
	}
	if len(got) != 4 || got["flags/beta"] != "true" || got["flags/limit"] != "5" || got["db/url"] != "db.internal" || got["flags/db_url"] == "" {
		t.Fatalf("values %v", got)
	}
	if cred.LeaseID != "kv:secret/app#0" {
		t.Fatalf("lease %q", cred.LeaseID)
	}
	if err := src.Revoke(context.Background(), spec.Credential{LeaseID: "kv:other/x#1"}); err == nil {
		t.Fatal("a foreign lease was accepted")
	}
}

func TestConfigSourceLocal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "store.json")
	_ = os.WriteFile(good, []byte(`{"flags":{"beta":"true"},"admin":{"root":"x"}}`), 0o600)
	src, err := targetsource.New(configTarget(t, `{source: local, store: "file:`+good+`"}`), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	cred := issueValues(t, src) // db/url is missing from the store: no key, no error
	if len(cred.Values) != 1 || cred.Values["flags/beta"].Secret().Reveal() != "true" {
		t.Fatalf("values %v", cred.Values)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"flags": "not an object"}`), 0o600)
	if _, err := targetsource.New(configTarget(t, `{source: local, store: "file:`+bad+`"}`), testEnv()); err == nil || !strings.Contains(err.Error(), "want a JSON object") {
		t.Fatalf("bad store: %v", err)
	}
	if _, err := targetsource.New(configTarget(t, `{source: local, store: "file:`+filepath.Join(dir, "missing.json")+`"}`), testEnv()); err == nil {
		t.Fatal("missing store accepted")
	}
}
