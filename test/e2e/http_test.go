package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jitgate/jitgate/test/stack"
)

// TestHTTPExec: an agent calls an internal API through the broker and the
// ephemeral HTTP proxy. The proxy injects the API token (the agent never has
// it), masks JSON fields and detector matches, and refuses what the target's
// rules do not allow — the broker refusing first with the same rules.
func TestHTTPExec(t *testing.T) {
	const apiToken = "s3cr3t-api-token-for-config"
	var sawToken, calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") == "Bearer "+apiToken {
			sawToken.Add(1)
		} else {
			http.Error(w, "no token", 401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"flags":{"beta":true},"owner":{"email":"ops@example.com","password":"hunter2"},"card":"4111 1111 1111 1111"}`)
	}))
	defer api.Close()

	iss := stack.StartIssuer(t)
	dir := t.TempDir()
	policyText := fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %s, audience: jitgate}
targets:
  - name: config-api
    kind: http
    address: %s
    http:
      rules:
        - {methods: [GET], path: /v1/flags}
        - {path: /v1/admin/**, effect: deny}
    credentials: {source: local, token: env:CONFIG_API_TOKEN}
    masking: {detectors: [credit_card, email], json_fields: [password]}
rules:
  - name: agents-read-config
    when: '"ai-agents" in identity.groups'
    targets: [config-api]
    access: read
`, iss.URL, strings.TrimPrefix(api.URL, "http://"))
	envv := serve(t, writePolicy(t, dir, policyText), filepath.Join(dir, "data"), append(iss.Env(), "CONFIG_API_TOKEN="+apiToken), "broker", "serve", "--log-level", "warn").env
	tok := iss.Token(t, "agent-1", "ai-agents")
	// The agent's environment must not hold the API token.
	agentEnv := []string{}
	for _, kv := range envv {
		if !strings.HasPrefix(kv, "CONFIG_API_TOKEN=") {
			agentEnv = append(agentEnv, kv)
		}
	}
	run := func(args ...string) (string, string, int) { return cli(t, agentEnv, tok, "", args...) }
	out, errOut, code := run("exec", "--target", "config-api", "--http", "GET /v1/flags")
	if code != 0 || !strings.Contains(out, `"beta":true`) {
		t.Fatalf("GET: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, secret := range []string{"hunter2", "ops@example.com", "4111 1111 1111 1111", apiToken} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("%q reached the agent:\n%s", secret, out)
		}
	}
	if sawToken.Load() != 1 {
		t.Fatalf("the upstream saw the injected token %d times, want 1", sawToken.Load())
	}
	before := calls.Load()
	for _, req := range []string{"DELETE /v1/flags", "GET /v1/admin/keys", "GET /v1/flags/../admin/keys", "GET /v1/%2e%2e/admin/keys", "POST /v1/flags"} {
		_, errOut, code := run("exec", "--target", "config-api", "--http", req)
		if code != 3 || !strings.Contains(errOut, "refused") {
			t.Errorf("%q: exit %d, stderr %s; want exit 3 (refused)", req, code, errOut)
		}
	}
	if calls.Load() != before {
		t.Fatalf("refused requests reached the upstream (%d calls)", calls.Load()-before)
	}
	// Session mode with the real curl, through jitgate connect's JITGATE_URL.
	out, errOut, code = run("connect", "--target", "config-api", "--quiet", "--", "sh", "-c", `curl -sS --fail "$JITGATE_URL/v1/flags"`)
	if code != 0 || !strings.Contains(out, `"beta":true`) || strings.Contains(out, "hunter2") || strings.Contains(out, "ops@example.com") {
		t.Fatalf("curl through connect: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}
