// Package e2e runs jitgate end to end as a user would: the real `jitgate` binary
// (`broker serve` and `dev`, the CLI, the ephemeral proxy it launches), a real
// PostgreSQL 15 (test/pgtest), real psql and pgx clients. The OIDC issuer is a
// test double (broker/identity/devissuer served over HTTPS with a test CA the
// broker trusts through SSL_CERT_FILE): it speaks real discovery + JWKS and signs
// real RS256 tokens, which is what Okta would do.
package e2e

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/stack"
)

var jitgateBin string

func TestMain(m *testing.M) { os.Exit(stack.Main(m, "e2e", &jitgateBin)) }

// env is one running stack: PostgreSQL with the shop databases, a test issuer,
// and `jitgate broker serve` with the shop policy.
type env struct {
	t       *testing.T
	pg      *pgtest.Server
	issuer  *devissuer.Issuer
	broker  string
	dataDir string
	cmdEnv  []string
	logs    *stack.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pg := stack.StartShop(t)
	// The test issuer, over HTTPS like a real IdP.
	iss := stack.StartIssuer(t)
	dir := t.TempDir()
	pol := iss.TrustIn(shopdb.PolicyFor(pg.Addr()))
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
	b := serve(t, writePolicy(t, dir, pol), filepath.Join(dir, "data"),
		append(iss.Env(), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres")), "broker", "serve", "--log-level", "warn")
	return &env{t: t, pg: pg, issuer: iss.Issuer, broker: b.url, dataDir: b.dataDir, cmdEnv: b.env, logs: b.logs}
}

// served is one long-lived jitgate server (`broker serve`, `dev`).
type served struct {
	// url is its base URL, http://127.0.0.1:port.
	url     string
	dataDir string
	// env is the test's environment with the extra variables given to
	// serve and JITGATE_BROKER: what CLI calls against it run with.
	env  []string
	logs *stack.Buffer
}

// serve runs `jitgate <cmd...> --policy policyPath --listen <free loopback
// port> --data-dir dataDir` until the test ends, with the test's environment
// plus extra, and waits until it answers /healthz.
func serve(t *testing.T, policyPath, dataDir string, extra []string, cmd ...string) served {
	t.Helper()
	listen := freeAddr(t)
	s := served{url: "http://" + listen, dataDir: dataDir}
	s.env = append(append(os.Environ(), extra...), "JITGATE_BROKER="+s.url)
	p := stack.StartProcess(t, stack.ProcessConfig{Bin: jitgateBin, Env: s.env,
		Args: append(cmd, "--policy", policyPath, "--listen", listen, "--data-dir", dataDir)})
	stack.WaitHealthy(t, s.url+"/healthz", p.Exited())
	s.logs = p.Logs
	return s
}

// writePolicy writes text to dir/policy.yaml and returns its path.
func writePolicy(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startJitgate runs a long-lived jitgate command (broker serve, dev) in its
// own process group until the test ends: SIGTERM, then SIGKILL after 15 s.
// Its output is returned, and logged when the test failed.
func startJitgate(t *testing.T, env []string, args ...string) *stack.Buffer {
	t.Helper()
	return stack.StartProcess(t, stack.ProcessConfig{Bin: jitgateBin, Env: env, Args: args}).Logs
}

// cli runs the jitgate CLI with env plus JITGATE_TOKEN=tok (none if tok is
// empty) and stdin, and returns stdout, stderr and the exit code.
func cli(t *testing.T, env []string, tok, stdin string, args ...string) (string, string, int) {
	t.Helper()
	if tok != "" {
		env = append(append([]string{}, env...), "JITGATE_TOKEN="+tok)
	}
	out, errOut, code, err := stack.Run(jitgateBin, env, stdin, args...)
	if err != nil {
		t.Fatalf("run jitgate %v: %v", args, err)
	}
	return out, errOut, code
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
	return cli(e.t, e.cmdEnv, tok, "", args...)
}

// api calls the broker's HTTP API with tok and decodes the JSON answer.
func (e *env) api(tok, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	code, out, err := stack.API(e.broker, tok, method, path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	return code, out
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

func writeCert(t *testing.T, path string, cfg *tls.Config) { stack.WriteCert(t, path, cfg) }

func freeAddr(t *testing.T) string { return stack.FreeAddr(t) }

func waitHealthy(t *testing.T, url string) { stack.WaitHealthy(t, url, nil) }

type syncBuffer = stack.Buffer
