package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A policy with one target of every kind that has an exec mode.
const checkPolicy = `version: 1
issuers:
  - {name: gh, issuer: https://token.actions.githubusercontent.com, audience: jitgate}
targets:
  - name: web-1
    kind: ssh
    address: 127.0.0.1:22
    user: deploy
    known_hosts: ["127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmhb1mq0T2VDDQ4bQvCbXxIxaFd1Q4Zr6p2b7sVtqwf"]
    credentials: {source: local, ca_key: "env:JITGATE_TEST_NO_SUCH_KEY"}
    commands: {deny: [curl]}
  - name: config-api
    kind: http
    address: 127.0.0.1:8080
    http:
      rules:
        - {methods: [GET], path: /v1/flags}
    credentials: {source: local, token: env:JITGATE_TEST_NO_SUCH_TOKEN}
  - name: app-config
    kind: config
    keys: ["flags/*"]
    credentials: {source: local, store: "file:/nonexistent/store.json"}
  - name: k8s
    kind: kube
    address: 127.0.0.1:6443
    namespace: shop
    exec: true
    credentials: {source: local, token: env:JITGATE_TEST_NO_SUCH_TOKEN}
rules:
  - {name: agents, when: '"ai-agents" in identity.groups', targets: [web-1, config-api, app-config, k8s], access: read}
`

// TestPolicyCheckEveryExecKind decides one allowed and one refused exec
// operation per target kind offline, as the broker would, and refuses two
// operations at once.
func TestPolicyCheckEveryExecKind(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(checkPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		effect string
		reason string // a substring of one reason, for denials
	}{
		{"ssh allowed", []string{"--target", "web-1", "--command", "uptime"}, "allow", ""},
		{"ssh rm in a substitution", []string{"--target", "web-1", "--command", "echo $(rm -rf /srv)"}, "deny", "command refused"},
		{"ssh denied command behind env", []string{"--target", "web-1", "--command", "env curl http://x"}, "deny", "curl"},
		{"http allowed", []string{"--target", "config-api", "--http", "GET /v1/flags"}, "allow", ""},
		{"http path outside the rules", []string{"--target", "config-api", "--http", "GET /v1/%2e%2e/admin"}, "deny", "request refused"},
		{"http write on a read rule", []string{"--target", "config-api", "--http", "DELETE /v1/flags"}, "deny", ""},
		{"config key allowed", []string{"--target", "app-config", "--key", "flags/beta"}, "allow", ""},
		{"config key outside the globs", []string{"--target", "app-config", "--key", "db/password"}, "deny", ""},
		{"kube exec allowed", []string{"--target", "k8s", "--pod", "shop/web-1", "--", "ls", "/srv"}, "allow", ""},
		{"kube rm through sh -c", []string{"--target", "k8s", "--pod", "shop/web-1", "--", "sh", "-c", "rm -rf /srv"}, "deny", "rm"},
		{"kube other namespace", []string{"--target", "k8s", "--pod", "kube-system/etcd-0", "--", "ls"}, "deny", "namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, code := runPolicyCheck(t, append([]string{"--policy", path, "--groups", "ai-agents"}, tc.args...))
			if code != exitOK {
				t.Fatalf("exit %d, output %s", code, out)
			}
			var got checkOutput
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("output is not the check JSON: %v\n%s", err, out)
			}
			if got.Effect != tc.effect {
				t.Fatalf("effect %s (reasons %q), want %s", got.Effect, got.Reasons, tc.effect)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(got.Reasons, "; "), tc.reason) {
				t.Errorf("reasons %q lack %q", got.Reasons, tc.reason)
			}
		})
	}
	t.Run("two operations", func(t *testing.T) {
		t.Parallel()
		_, code := runPolicyCheck(t, []string{"--policy", path, "--target", "web-1", "--command", "ls", "--http", "GET /"})
		if code != exitUsage {
			t.Fatalf("exit %d, want %d", code, exitUsage)
		}
	})
}

func runPolicyCheck(t *testing.T, args []string) ([]byte, int) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(context.Background(), append([]string{"jitgate", "policy", "check"}, args...))
	if err == nil {
		return out.Bytes(), exitOK
	}
	if ec, ok := err.(interface{ ExitCode() int }); ok {
		return out.Bytes(), ec.ExitCode()
	}
	return out.Bytes(), exitUsage
}
