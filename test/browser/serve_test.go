package browser

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	teststack "github.com/jitgate/jitgate/test/stack"
)

// `jitgate broker serve --ui-client-id` mounts the page at /ui/ and sends
// approvers to the policy's issuer with PKCE; without a matching issuer it
// refuses to start.
func TestBrokerServeMountsUI(t *testing.T) {
	t.Parallel()
	iss := teststack.StartIssuer(t)
	dir := t.TempDir()
	// The target is never contacted: nobody requests a grant here.
	pol := fmt.Sprintf(`version: 1
issuers:
  - name: corp
    issuer: %s
    audience: jitgate
targets:
  - name: test-db
    kind: postgres
    address: 127.0.0.1:1
    database: shop_test
    credentials: {source: local, admin_dsn: "postgres://x@127.0.0.1:1/postgres", read_role: r, write_role: w}
rules:
  - name: read
    when: '"ai-agents" in identity.groups'
    targets: [test-db]
    access: read
`, iss.URL)
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), iss.Env()...)

	// No issuer with that audience: refused at start.
	bad := exec.Command(jitgateBin, "broker", "serve", "--policy", policyPath, "--listen", teststack.FreeAddr(t), "--data-dir", filepath.Join(dir, "bad"), "--ui-client-id", "approvals")
	bad.Env = env
	out, err := bad.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), `no issuer in the policy has audience "approvals"`) {
		t.Fatalf("--ui-client-id without an issuer: %v\n%s", err, out)
	}

	listen := teststack.FreeAddr(t)
	logs := &teststack.Buffer{}
	srv := exec.Command(jitgateBin, "broker", "serve", "--policy", policyPath, "--listen", listen, "--data-dir", filepath.Join(dir, "data"), "--ui-client-id", "jitgate")
	srv.Env, srv.Stdout, srv.Stderr = env, logs, logs
	start(t, srv)
	teststack.WaitHealthy(t, "http://"+listen+"/healthz", nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) *http.Response {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get("http://" + listen + "/ui/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://"+listen+"/ui/login?next=%2Fui%2F" {
		t.Fatalf("GET /ui/: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), logs.String())
	}
	resp = get("http://" + listen + "/ui/login")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("GET /ui/login: %d %v\n%s", resp.StatusCode, err, logs.String())
	}
	q := loc.Query()
	if loc.Scheme+"://"+loc.Host+loc.Path != iss.URL+"/authorize" || q.Get("client_id") != "jitgate" ||
		q.Get("redirect_uri") != "http://"+listen+"/ui/callback" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" {
		t.Fatalf("sign-in goes to %s", loc)
	}
	// The API still answers beside the page.
	if resp := get("http://" + listen + "/v1/grants"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API beside the page: %d", resp.StatusCode)
	}
}
