package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	bbolt "go.etcd.io/bbolt"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/broker/credentials/sshca"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/sshtest"
	"github.com/jitgate/jitgate/test/vaulttest"
)

// doctorEnv is a real PostgreSQL with the shop databases, a test issuer over
// HTTPS, a Vault test double and a policy that uses all of them.
type doctorEnv struct {
	dir    string
	policy string
	issuer *devissuer.Issuer
	ts     *httptest.Server
	vault  *vaulttest.Server
	cfg    doctorConfig
}

func newDoctorEnv(t *testing.T) *doctorEnv {
	t.Helper()
	pg := pgtest.Start(t)
	if err := shopdb.Setup(context.Background(), pg); err != nil {
		t.Fatal(err)
	}
	e := &doctorEnv{dir: t.TempDir()}
	var err error
	if e.issuer, err = devissuer.New(devissuer.Options{}); err != nil {
		t.Fatal(err)
	}
	e.ts = quietTLSServer(t, e.issuer.Handler())
	e.issuer.SetURL(e.ts.URL)
	minter, err := local.NewPostgres(local.PostgresConfig{AdminDSN: pg.AdminDSN("postgres"), Database: "shop", Roles: map[spec.Access]string{spec.Read: "shop_read"}})
	if err != nil {
		t.Fatal(err)
	}
	e.vault = vaulttest.Start(t, vaulttest.Config{Minter: minter, Roles: map[string]spec.Access{"shop-ro": spec.Read}})

	good := filepath.Join(e.dir, "admin.dsn")
	bad := filepath.Join(e.dir, "bad.dsn")
	_ = os.WriteFile(good, []byte(pg.AdminDSN("postgres")), 0o600)
	_ = os.WriteFile(bad, []byte(strings.Replace(pg.AdminDSN("postgres"), "://postgres:", "://postgres:wrong", 1)), 0o600)
	if b, _ := os.ReadFile(bad); string(b) == pg.AdminDSN("postgres") {
		t.Fatalf("could not build a wrong-password DSN from %q", pg.AdminDSN("postgres"))
	}
	e.policy = filepath.Join(e.dir, "policy.yaml")
	pol := fmt.Sprintf(`version: 1
issuers:
  - name: test
    issuer: %[1]s
    audience: jitgate
  - name: down
    issuer: https://%[2]s
    audience: jitgate
targets:
  - name: good-db
    kind: postgres
    address: %[3]s
    database: shop
    credentials: {source: local, admin_dsn: "file:%[4]s", read_role: shop_read, write_role: shop_write}
  - name: missing-role-db
    kind: postgres
    address: %[3]s
    database: shop
    credentials: {source: local, admin_dsn: "file:%[4]s", read_role: shop_read, write_role: nope_writer}
  - name: wrong-password-db
    kind: postgres
    address: %[3]s
    database: shop
    credentials: {source: local, admin_dsn: "file:%[5]s", read_role: shop_read}
  - name: unset-env-db
    kind: postgres
    address: %[3]s
    database: shop
    credentials: {source: local, admin_dsn: "env:JITGATE_DOCTOR_TEST_NEVER_SET", read_role: shop_read}
  - name: no-such-db
    kind: postgres
    address: %[3]s
    database: nosuchdb
    credentials: {source: local, admin_dsn: "file:%[4]s", read_role: shop_read}
  - name: vault-db
    kind: postgres
    address: %[3]s
    database: shop
    credentials: {source: vault, vault_mount: database, vault_roles: {read: shop-ro}}
rules:
  - name: r
    when: 'true'
    targets: [good-db]
    access: read
`, e.ts.URL, freeLoopbackAddr(t), pg.Addr(), good, bad)
	if err := os.WriteFile(e.policy, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg = doctorConfig{PolicyPath: e.policy, DataDir: filepath.Join(e.dir, "data"), HTTPClient: e.ts.Client(), Timeout: 10 * time.Second,
		Vault: func() (*vaultapi.Client, error) { return e.vault.Client(), nil }}
	return e
}

// quietTLSServer serves h over TLS without logging the handshake failures of
// clients that, on purpose, do not trust it.
func quietTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func byName(res []checkResult) map[string]checkResult {
	m := map[string]checkResult{}
	for _, r := range res {
		m[r.Name] = r
	}
	return m
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	e := newDoctorEnv(t)
	ctx := context.Background()
	res := runDoctor(ctx, e.cfg)
	got := byName(res)
	for _, tc := range []struct {
		name       string
		ok         bool
		detail     string
		fix        string
		fixMissing bool
	}{
		{name: "policy", ok: true, detail: "2 issuers, 6 targets, 1 rules"},
		{name: "issuer test", ok: true, detail: "1 signing keys"},
		{name: "issuer down", detail: "discovery at https://", fix: "compared exactly"},
		{name: "credentials good-db", ok: true, detail: "can create roles; roles shop_read, shop_write exist"},
		{name: "credentials missing-role-db", detail: "roles missing: nope_writer", fix: "CREATE ROLE nope_writer NOLOGIN"},
		{name: "credentials wrong-password-db", detail: "password authentication failed", fix: "pg_hba.conf"},
		{name: "credentials unset-env-db", detail: "JITGATE_DOCTOR_TEST_NEVER_SET is not set", fix: "export JITGATE_DOCTOR_TEST_NEVER_SET"},
		{name: "credentials no-such-db", detail: "nosuchdb", fix: "database nosuchdb exists"},
		{name: "credentials vault-db", ok: true, detail: "is unsealed; mount database, roles read=shop-ro"},
		{name: "store", ok: true, detail: "grants.db will be created"},
		{name: "recordings", ok: true, detail: "is writable"},
		{name: "audit log", ok: true, detail: "will be created"},
	} {
		r, found := got[tc.name]
		if !found {
			t.Errorf("no %q check in %+v", tc.name, res)
			continue
		}
		if r.OK != tc.ok || !strings.Contains(r.Detail, tc.detail) || !strings.Contains(r.Fix, tc.fix) || (!r.OK && r.Fix == "") {
			t.Errorf("%s: %+v; want ok=%v detail ~%q fix ~%q", tc.name, r, tc.ok, tc.detail, tc.fix)
		}
	}
	if len(res) != 12 {
		t.Errorf("%d checks, want 12", len(res))
	}
	// The admin DSN's password never reaches the report.
	var buf bytes.Buffer
	failed := printChecks(&buf, res)
	if failed != 5 || strings.Count(buf.String(), "✗") != 5 || strings.Count(buf.String(), "✓") != 7 || strings.Count(buf.String(), "\n") != 12 {
		t.Errorf("failed=%d\n%s", failed, buf.String())
	}
	if strings.Contains(buf.String(), "wrongpostgres") || strings.Contains(buf.String(), "@127.0.0.1") {
		t.Errorf("a DSN leaked into the report:\n%s", buf.String())
	}

	t.Run("sealed vault", func(t *testing.T) {
		e.vault.SetDown(true)
		defer e.vault.SetDown(false)
		r := byName(runDoctor(ctx, e.cfg))["credentials vault-db"]
		if r.OK || !strings.Contains(r.Fix, "unseal") {
			t.Fatalf("%+v", r)
		}
	})

	t.Run("store in use, audit chain broken", func(t *testing.T) {
		cfg := e.cfg
		cfg.DataDir = t.TempDir()
		db, err := bbolt.Open(filepath.Join(cfg.DataDir, "grants.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		alog, err := audit.Open(filepath.Join(cfg.DataDir, "audit.jsonl"), audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := alog.Append(ctx, audit.Event{Type: audit.GrantRequested, GrantID: fmt.Sprintf("g_%d", i), Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}
		alog.Close()
		got := byName(runDoctor(ctx, cfg))
		if r := got["store"]; !r.OK || !strings.Contains(r.Detail, "in use by a running jitgate") {
			t.Errorf("store: %+v", r)
		}
		if r := got["audit log"]; !r.OK || !strings.Contains(r.Detail, "3 events, chain intact") {
			t.Errorf("audit: %+v", r)
		}
		p := filepath.Join(cfg.DataDir, "audit.jsonl")
		b, _ := os.ReadFile(p)
		_ = os.WriteFile(p, bytes.Replace(b, []byte(`"g_1"`), []byte(`"g_9"`), 1), 0o600)
		if r := byName(runDoctor(ctx, cfg))["audit log"]; r.OK || !strings.Contains(r.Detail, "BROKEN at line 2") || !strings.Contains(r.Fix, "incident") {
			t.Errorf("edited audit log: %+v", r)
		}
	})

	t.Run("data dir that cannot exist", func(t *testing.T) {
		cfg := e.cfg
		file := filepath.Join(t.TempDir(), "plain-file")
		_ = os.WriteFile(file, nil, 0o600)
		cfg.DataDir = filepath.Join(file, "data")
		got := byName(runDoctor(ctx, cfg))
		for _, name := range []string{"store", "recordings"} {
			if r := got[name]; r.OK || !strings.Contains(r.Fix, "--data-dir") {
				t.Errorf("%s: %+v", name, r)
			}
		}
	})

	t.Run("broker and token", func(t *testing.T) {
		healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				_, _ = w.Write([]byte(`{"status":"ok"}`))
				return
			}
			http.NotFound(w, r)
		}))
		defer healthy.Close()
		tok := func(aud string, extra map[string]any) string {
			s, err := e.issuer.Token("agent-1", nil, aud, extra)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		other, _ := devissuer.New(devissuer.Options{})
		other.SetURL("https://elsewhere.example")
		foreign, _ := other.Token("x", nil, "jitgate", nil)
		for _, tc := range []struct {
			name, broker, token string
			check               string
			ok                  bool
			want                string
		}{
			{"healthy broker", healthy.URL, "", "broker", true, "is healthy"},
			{"broker down", "http://" + freeLoopbackAddr(t), "", "broker", false, "connection refused"},
			{"broker that is not one", healthy.URL + "/nope", "", "broker", false, "answered 404"},
			{"good token", "", tok("jitgate", nil), "token", true, "issued by test"},
			{"wrong audience", "", tok("api://other", nil), "token", false, "expects jitgate"},
			{"expired token", "", tok("jitgate", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), "token", false, "expired"},
			{"untrusted issuer", "", foreign, "token", false, "not in the policy"},
			{"not a JWT", "", "opaque-token", "token", false, "not a JWT"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := e.cfg
				cfg.Broker, cfg.Token, cfg.HTTPClient = tc.broker, tc.token, &http.Client{Timeout: 5 * time.Second}
				r := byName(runDoctor(ctx, cfg))[tc.check]
				if r.OK != tc.ok || !strings.Contains(r.Detail, tc.want) || (!r.OK && r.Fix == "") {
					t.Fatalf("%+v, want ok=%v ~%q", r, tc.ok, tc.want)
				}
			})
		}
	})

	t.Run("broken policy still checks the rest", func(t *testing.T) {
		cfg := e.cfg
		cfg.PolicyPath = filepath.Join(t.TempDir(), "bad.yaml")
		_ = os.WriteFile(cfg.PolicyPath, []byte("version: 1\ntargets:\n  - name: x\n    kind: postgres\n    adress: 1\n"), 0o600)
		res := runDoctor(ctx, cfg)
		got := byName(res)
		if r := got["policy"]; r.OK || !strings.Contains(r.Detail, "bad.yaml:") || !strings.Contains(r.Fix, "jitgate policy check --policy") {
			t.Fatalf("%+v", r)
		}
		if _, ok := got["store"]; !ok || len(res) != 4 {
			t.Fatalf("%+v", res)
		}
	})
}

// TestDoctorCommand runs the binary: exit 0 and only ✓ lines on a good
// configuration, exit 1 and ✗ lines with fixes otherwise.
func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	bin := jitgateBinary(t)
	pg := pgtest.Start(t)
	if err := shopdb.Setup(context.Background(), pg); err != nil {
		t.Fatal(err)
	}
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := quietTLSServer(t, iss.Handler())
	iss.SetURL(ts.URL)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	var pemBuf bytes.Buffer
	_ = pem.Encode(&pemBuf, &pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	_ = os.WriteFile(caFile, pemBuf.Bytes(), 0o600)
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte(fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %s, audience: jitgate}
targets:
  - name: orders-db
    kind: postgres
    address: %s
    database: shop
    credentials: {source: local, admin_dsn: env:SHOP_ADMIN_DSN, read_role: shop_read}
rules: []
`, ts.URL, pg.Addr())), 0o600)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres"), "SSL_CERT_FILE="+caFile, "JITGATE_BROKER=", "JITGATE_TOKEN=", "JITGATE_TOKEN_FILE=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run("doctor", "--policy", good, "--data-dir", filepath.Join(dir, "data"))
	if code != 0 || strings.Count(out, "✓") != 6 || strings.Contains(out, "✗") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = run("doctor", "--policy", filepath.Join(dir, "missing.yaml"), "--data-dir", filepath.Join(dir, "data"))
	if code != exitError || !strings.Contains(out, "✗ policy") || !strings.Contains(out, "fix:") || !strings.Contains(out, "1 of 4 checks failed") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if out, code = run("doctor"); code != exitUsage || !strings.Contains(out, "--policy") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// TestDoctorSSH checks ssh targets against a real sshd: the CA key loads and
// the host key matches known_hosts; a wrong host key or a broken CA key fails
// with a fix.
func TestDoctorSSH(t *testing.T) {
	t.Parallel()
	if _, err := sshtest.SSHD(); err != nil {
		t.Skipf("no sshd: %v (make deps installs openssh-server)", err)
	}
	caPEM, err := sshca.GenerateCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sshca.LoadCA(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := sshtest.Start(t, sshtest.Config{TrustedUserCAKeys: [][]byte{gossh.MarshalAuthorizedKey(ca.PublicKey())}})
	other, err := sshca.LoadCA(mustPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	wrongHost := srv.Host + " " + strings.TrimSpace(string(gossh.MarshalAuthorizedKey(other.PublicKey())))
	if srv.Port != 22 {
		wrongHost = fmt.Sprintf("[%s]:%d %s", srv.Host, srv.Port, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(other.PublicKey()))))
	}
	dir := t.TempDir()
	caFile, badCA := filepath.Join(dir, "ca"), filepath.Join(dir, "bad-ca")
	_ = os.WriteFile(caFile, caPEM, 0o600)
	_ = os.WriteFile(badCA, []byte("not a key"), 0o600)
	pol := filepath.Join(dir, "policy.yaml")
	target := func(name, knownHosts, ca, addr string) string {
		return fmt.Sprintf("  - {name: %s, kind: ssh, address: %q, user: %s, known_hosts: [%q], credentials: {source: local, ca_key: \"file:%s\"}}\n", name, addr, srv.User, knownHosts, ca)
	}
	_ = os.WriteFile(pol, []byte("version: 1\ntargets:\n"+
		target("ssh-good", srv.KnownHosts, caFile, srv.Addr)+
		target("ssh-wrong-host-key", wrongHost, caFile, srv.Addr)+
		target("ssh-bad-ca", srv.KnownHosts, badCA, srv.Addr)+
		target("ssh-down", srv.KnownHosts, caFile, freeLoopbackAddr(t))+
		"rules: []\n"), 0o600)
	got := byName(runDoctor(context.Background(), doctorConfig{PolicyPath: pol, DataDir: filepath.Join(dir, "data")}))
	for name, want := range map[string]struct {
		ok          bool
		detail, fix string
	}{
		"credentials ssh-good":           {true, "presents a host key in known_hosts", ""},
		"credentials ssh-wrong-host-key": {false, "does not match known_hosts", "ssh-keyscan"},
		"credentials ssh-bad-ca":         {false, "ca_key does not load", "private key"},
		"credentials ssh-down":           {false, "connection refused", "sshd listens"},
	} {
		r, found := got[name]
		if !found || r.OK != want.ok || !strings.Contains(r.Detail, want.detail) || !strings.Contains(r.Fix, want.fix) {
			t.Errorf("%s: %+v, want ok=%v ~%q fix ~%q", name, r, want.ok, want.detail, want.fix)
		}
	}
}

func mustPEM(t *testing.T) []byte {
	t.Helper()
	b, err := sshca.GenerateCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDoctorTokenAndStoreTargets: http, kube and config targets with local
// credentials are checked for their own references, never through the
// PostgreSQL admin DSN check (which used to report them all as failing).
func TestDoctorTokenAndStoreTargets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok, empty, store, badStore := filepath.Join(dir, "tok"), filepath.Join(dir, "empty"), filepath.Join(dir, "store.json"), filepath.Join(dir, "bad.json")
	_ = os.WriteFile(tok, []byte("s3cr3t-token\n"), 0o600)
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	_ = os.WriteFile(store, []byte(`{"flags": {"beta": "on"}}`), 0o600)
	_ = os.WriteFile(badStore, []byte(`not json`), 0o600)
	pol := filepath.Join(dir, "policy.yaml")
	_ = os.WriteFile(pol, []byte("version: 1\ntargets:\n"+
		"  - {name: api-good, kind: http, address: 127.0.0.1:1, http: {rules: [{path: /x}]}, credentials: {source: local, token: \"file:"+tok+"\"}}\n"+
		"  - {name: api-empty, kind: http, address: 127.0.0.1:1, http: {rules: [{path: /x}]}, credentials: {source: local, token: \"file:"+empty+"\"}}\n"+
		"  - {name: k8s-missing, kind: kube, address: 127.0.0.1:1, namespace: shop, credentials: {source: local, token: \"file:"+filepath.Join(dir, "nope")+"\"}}\n"+
		"  - {name: cfg-good, kind: config, keys: [\"flags/*\"], credentials: {source: local, store: \"file:"+store+"\"}}\n"+
		"  - {name: cfg-bad, kind: config, keys: [\"flags/*\"], credentials: {source: local, store: \"file:"+badStore+"\"}}\n"+
		"rules: []\n"), 0o600)
	got := byName(runDoctor(context.Background(), doctorConfig{PolicyPath: pol, DataDir: filepath.Join(dir, "data")}))
	for name, want := range map[string]struct {
		ok     bool
		detail string
	}{
		"credentials api-good":    {true, "is set (12 bytes)"},
		"credentials api-empty":   {false, "is empty"},
		"credentials k8s-missing": {false, "no such file"},
		"credentials cfg-good":    {true, "reads"},
		"credentials cfg-bad":     {false, "want a JSON object"},
	} {
		r, found := got[name]
		if !found || r.OK != want.ok || !strings.Contains(r.Detail, want.detail) || strings.Contains(r.Detail, "admin_dsn") {
			t.Errorf("%s: %+v, want ok=%v ~%q", name, r, want.ok, want.detail)
		}
		if strings.Contains(r.Detail+r.Fix, "s3cr3t") {
			t.Errorf("%s: the token's value is printed: %+v", name, r)
		}
	}
}
