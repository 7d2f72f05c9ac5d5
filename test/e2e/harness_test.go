// Package e2e runs jitgate end to end as a user would: the real `jitgate` binary
// (`broker serve` and `dev`, the CLI, the ephemeral proxy it launches), a real
// PostgreSQL 15 (test/pgtest), real psql and pgx clients. The OIDC issuer is a
// test double (broker/identity/devissuer served over HTTPS with a test CA the
// broker trusts through SSL_CERT_FILE): it speaks real discovery + JWKS and signs
// real RS256 tokens, which is what Okta would do.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
)

var jitgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jitgate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	jitgateBin = filepath.Join(dir, "jitgate")
	build := exec.Command("go", "build", "-o", jitgateBin, "github.com/jitgate/jitgate/cmd/jitgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build jitgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one running stack: PostgreSQL with the shop databases, a test issuer,
// and `jitgate broker serve` with the shop policy.
type env struct {
	t       *testing.T
	pg      *pgtest.Server
	issuer  *devissuer.Issuer
	broker  string
	dataDir string
	cmdEnv  []string
	logs    *syncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	pg := pgtest.Start(t)
	if err := shopdb.Setup(ctx, pg); err != nil {
		t.Fatal(err)
	}
	// The test issuer, over HTTPS like a real IdP.
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(iss.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	iss.SetURL(ts.URL)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeCert(t, caFile, ts.TLS)

	pol := strings.Replace(shopdb.PolicyFor(pg.Addr()), "issuers:\n", fmt.Sprintf("issuers:\n  - name: test\n    issuer: %s\n    audience: jitgate\n    groups_claim: groups\n", ts.URL), 1)
	// down-db points at a closed port with working admin credentials: the
	// credential is minted, the proxy cannot reach the target.
	pol = strings.Replace(pol, "rules:\n", fmt.Sprintf(`  - name: down-db
    kind: postgres
    address: %s
    database: shop
    credentials: {source: local, admin_dsn: env:SHOP_ADMIN_DSN, read_role: shop_read, write_role: shop_write}
rules:
  - name: agents-read-down
    when: '"ai-agents" in identity.groups'
    targets: [down-db]
    access: read
`, freeAddr(t)), 1)
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	e := &env{t: t, pg: pg, issuer: iss, broker: "http://" + listen, dataDir: filepath.Join(dir, "data")}
	e.cmdEnv = append(os.Environ(), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres"), "SSL_CERT_FILE="+caFile, "JITGATE_BROKER="+e.broker)
	e.logs = startJitgate(t, e.cmdEnv, "broker", "serve", "--policy", policyPath, "--listen", listen, "--data-dir", e.dataDir, "--log-level", "warn")
	waitHealthy(t, e.broker+"/healthz")
	return e
}

// startJitgate runs a long-lived jitgate command (broker serve, dev) in its
// own process group until the test ends: SIGTERM, then SIGKILL after 15 s.
// Its output is returned, and logged when the test failed.
func startJitgate(t *testing.T, env []string, args ...string) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(jitgateBin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("jitgate %s log:\n%s", args[0], logs.String())
		}
	})
	return logs
}

// token signs a token for sub in groups with the trusted test issuer.
func (e *env) token(sub string, groups ...string) string {
	e.t.Helper()
	tok, err := e.issuer.Token(sub, groups, "jitgate", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// run runs the jitgate CLI with tok and returns stdout, stderr and the exit code.
func (e *env) run(tok string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(jitgateBin, args...)
	cmd.Env = append(append([]string{}, e.cmdEnv...), "JITGATE_TOKEN="+tok)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run jitgate %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// api calls the broker's HTTP API with tok and decodes the JSON answer.
func (e *env) api(tok, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.broker+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("%s %s: %d, body not JSON: %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// perGrantRoles lists the per-grant roles that exist in the cluster.
func (e *env) perGrantRoles() []string {
	e.t.Helper()
	out, err := exec.Command("psql", "-X", "-A", "-t", e.pg.AdminDSN("postgres"), "-c", "SELECT rolname FROM pg_roles WHERE rolname LIKE 'jg\\_%' ORDER BY 1").CombinedOutput()
	if err != nil {
		e.t.Fatalf("list roles: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

func writeCert(t *testing.T, path string, cfg *tls.Config) {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range cfg.Certificates {
		for _, der := range c.Certificate {
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", url)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
