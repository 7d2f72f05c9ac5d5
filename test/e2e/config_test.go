package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/stack"
)

// TestConfigExec: an agent reads configuration keys through the broker and
// the ephemeral config engine with the real binary. Values are read from the
// embedded store by the broker, masked by the proxy (key names, entropy,
// URL passwords, detectors) unless the policy reveals them, and recorded
// masked; keys outside the target's globs, .. and escaping globs are
// refused before anything is issued.
func TestConfigExec(t *testing.T) {
	const (
		dbPass = "pg-Secret-9f"
		awsKey = "AKIAIOSFODNN7EXAMPLE"
		rootPw = "root-pass-never-shown"
	)
	iss := stack.StartIssuer(t)
	dir := t.TempDir()
	store := map[string]map[string]string{
		"flags": {"beta": "true", "color": awsKey, "db_url": "postgres://app:" + dbPass + "@db.internal:5432/app", "api_token": "tok-123"},
		"admin": {"root_password": rootPw},
	}
	b, _ := json.Marshal(store)
	storePath := filepath.Join(dir, "store.json")
	if err := os.WriteFile(storePath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	policyText := fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %s, audience: jitgate}
targets:
  - name: app-config
    kind: config
    keys: ["flags/*"]
    reveal: ["flags/beta"]
    credentials: {source: local, store: "file:%s"}
    masking: {detectors: [aws_access_key]}
rules:
  - name: agents-read-config
    when: '"ai-agents" in identity.groups'
    targets: [app-config]
    access: read
`, iss.URL, storePath)
	data := filepath.Join(dir, "data")
	envv := serve(t, writePolicy(t, dir, policyText), data, iss.Env(), "broker", "serve", "--log-level", "warn").env
	tok := iss.Token(t, "agent-1", "ai-agents")
	run := func(args ...string) (string, string, int) { return cli(t, envv, tok, "", args...) }
	secrets := []string{dbPass, awsKey, rootPw, "tok-123"}

	out, errOut, code := run("exec", "--target", "app-config", "--key", "flags/db_url")
	if code != 0 || !strings.Contains(out, "postgres://app:********@db.internal:5432/app") {
		t.Fatalf("one key: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	out, errOut, code = run("exec", "--target", "app-config", "--key", "flags/*", "--format", "json")
	if code != 0 {
		t.Fatalf("glob: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, want := range []string{"flags/beta", "flags/color", "flags/db_url", "flags/api_token", `"true"`} {
		if !strings.Contains(out, want) {
			t.Errorf("glob output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "admin/") {
		t.Errorf("a key outside the target's globs came back:\n%s", out)
	}
	for _, s := range secrets {
		if strings.Contains(out+errOut, s) {
			t.Errorf("%q reached the agent:\n%s", s, out)
		}
	}
	for _, attack := range []struct{ key, want string }{
		{"admin/root_password", "is not one target app-config exposes"},
		{"flags/../admin/root_password", `path segment ".." is not allowed`},
		{"*/root_password", "globs only in the field"},
		{"admin/*", "is not under a path target app-config exposes"},
	} {
		out, errOut, code := run("exec", "--target", "app-config", "--key", attack.key)
		if code != 3 || !strings.Contains(out+errOut, attack.want) || strings.Contains(out+errOut, rootPw) {
			t.Errorf("%q: exit %d, stdout %s, stderr %s; want exit 3 with %q", attack.key, code, out, errOut, attack.want)
		}
	}
	// The recordings hold which keys were read, with masked values only.
	var recs []string
	_ = filepath.Walk(data, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, ".jgr") {
			recs = append(recs, p)
		}
		return nil
	})
	if len(recs) == 0 {
		t.Fatalf("no recordings under %s", data)
	}
	found := false
	for _, p := range recs {
		out, errOut, _ := run("replay", p)
		if strings.Contains(out, "flags/db_url") {
			found = true
		}
		for _, s := range secrets {
			if strings.Contains(out+errOut, s) {
				t.Errorf("recording %s holds %q", p, s)
			}
		}
	}
	if !found {
		t.Errorf("no recording names flags/db_url (%v)", recs)
	}
}
