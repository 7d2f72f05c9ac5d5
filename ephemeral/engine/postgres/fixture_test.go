package postgres_test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/ephemeral/engine/postgres"
	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

// One PostgreSQL server for the package's tests; every test gets its own grant,
// engine and recording. Tests that write use their own tables.
var (
	srv       *pgtest.Server
	srvErr    error
	srvOnce   sync.Once
	mintedPW  = "minted-" + randHex(8)
	mintedUsr = "jg_minted"
)

const (
	card1  = "4111111111111111"
	card2  = "5500005555555559"
	email1 = "alice@example.com"
)

const seedSQL = `
CREATE ROLE jg_minted LOGIN PASSWORD '%s';
CREATE TABLE users (id int PRIMARY KEY, name text, card_number text, email text, card_num bigint);
INSERT INTO users VALUES (1, 'alice', '4111111111111111', 'alice@example.com', 4111111111111111),
                         (2, 'bob', '5500005555555559', 'bob@example.org', 5500005555555559);
CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric);
INSERT INTO orders SELECT g, 1 + g %% 2, g * 10 FROM generate_series(1, 100) g;
CREATE TABLE notes (id int, body text);
CREATE FUNCTION sneaky_delete() RETURNS int LANGUAGE sql VOLATILE AS 'DELETE FROM orders; SELECT 1';
CREATE FUNCTION leak_notice() RETURNS int LANGUAGE plpgsql AS $f$
DECLARE c text;
BEGIN
  SELECT card_number INTO c FROM users WHERE id = 1;
  RAISE NOTICE 'card is %%', c;
  RETURN 1;
END $f$;
CREATE VIEW v_users AS SELECT id, card_number AS cn, lower(email) AS contact FROM users;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, orders, notes TO jg_minted;
GRANT SELECT ON v_users TO jg_minted;
GRANT EXECUTE ON FUNCTION sneaky_delete(), leak_notice() TO jg_minted;
`

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

func server(t testing.TB) *pgtest.Server {
	t.Helper()
	srvOnce.Do(func() {
		srv, srvErr = pgtest.StartServer()
		if srvErr != nil {
			return
		}
		ctx := context.Background()
		if srvErr = srv.Exec(ctx, "postgres", "CREATE DATABASE shop"); srvErr != nil {
			return
		}
		srvErr = srv.Exec(ctx, "shop", fmt.Sprintf(seedSQL, mintedPW))
	})
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	return srv
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type opts struct {
	access   spec.Access
	columns  []string
	detector []string
	op       string
	db       string
	tls      *tls.Config
	addr     string // upstream address; default the shared server
}

// proxy is a running engine behind a loopback listener.
type proxy struct {
	t       testing.TB
	grant   *spec.Grant
	eng     *postgres.Engine
	rec     *record.Recorder
	addr    string
	cancel  context.CancelFunc
	active  atomic.Int64
	served  atomic.Int64
	serveMu sync.Mutex
	errs    []error
	wg      sync.WaitGroup
}

var maskAll = opts{access: spec.Admin,
	columns:  []string{"public.users.card_number", "public.users.email"},
	detector: []string{"credit_card", "email"}}

func startProxy(t testing.TB, o opts) *proxy {
	t.Helper()
	s := server(t)
	if o.access == spec.AccessNone {
		o.access = spec.Read
	}
	db := o.db
	if db == "" {
		db = "shop"
	}
	mode := spec.Session
	if o.op != "" {
		mode = spec.Exec
	}
	g := &spec.Grant{
		ID:           "g" + randHex(6),
		Mode:         mode,
		Target:       spec.Target{Name: db, Protocol: spec.Postgres, Address: cmp.Or(o.addr, s.Addr()), Database: db},
		Identity:     "test#agent",
		Rule:         "test-rule",
		Operation:    o.op,
		ClientSecret: spec.WireSecret("s3cret-" + randHex(8)),
		Deadline:     time.Now().Add(time.Hour),
		Credential:   spec.Credential{Username: mintedUsr, Password: spec.WireSecret(mintedPW), LeaseID: "lease"},
		Guard:        spec.Guard{Access: o.access},
		Mask:         spec.Mask{Columns: o.columns, Detectors: o.detector},
		Record:       spec.Record{Dir: t.TempDir()},
	}
	gd, err := guard.New(guard.Config{Access: o.access})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := mask.New(mask.Config{Columns: o.columns, Detectors: o.detector})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.Open(g.Record.Dir, record.Header{GrantID: g.ID, Identity: g.Identity, Target: db, Rule: g.Rule, Mode: mode.String()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := postgres.New(postgres.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec, TLS: o.tls})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{t: t, grant: g, eng: eng, rec: rec, addr: ln.Addr().String(), cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.active.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.active.Add(-1)
				defer p.served.Add(1)
				if err := eng.Serve(ctx, c); err != nil {
					p.serveMu.Lock()
					p.errs = append(p.errs, err)
					p.serveMu.Unlock()
				}
			}()
		}
	}()
	go func() { <-ctx.Done(); ln.Close() }()
	t.Cleanup(func() {
		cancel()
		p.wg.Wait()
		eng.Close()
		rec.Close()
	})
	return p
}

func (p *proxy) host() (string, string) {
	h, port, _ := net.SplitHostPort(p.addr)
	return h, port
}

// dsn is what an agent uses: user = grant id, password = the client secret.
func (p *proxy) dsn(secret string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(p.grant.ID, secret), Host: p.addr, Path: "/" + p.grant.Target.Database}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

func (p *proxy) portNum(t testing.TB) uint16 {
	_, port := p.host()
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func (p *proxy) secret() string { return string(p.grant.ClientSecret) }

func (p *proxy) pgx(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn(p.secret()))
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// events returns the recording so far.
func (p *proxy) events(t testing.TB) []record.Event {
	t.Helper()
	if err := p.rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(p.rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// psql runs the real psql binary against the proxy.
func psql(t testing.TB, p *proxy, secret string, args ...string) (string, string, error) {
	t.Helper()
	return psqlEnv(t, p, []string{"PGPASSWORD=" + secret, "PGSSLMODE=disable"}, args...)
}

func psqlEnv(t testing.TB, p *proxy, env []string, args ...string) (string, string, error) {
	t.Helper()
	h, port := p.host()
	all := append([]string{"-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-h", h, "-p", port, "-U", p.grant.ID, "-d", p.grant.Target.Database}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", all...)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PGPASSWORD=") }) {
		env = append(env, "PGPASSWORD="+p.secret())
	}
	cmd.Env = cleanEnv(append(env, "PGCONNECT_TIMEOUT=20")...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// admin runs a query as the superuser, directly.
func adminQueryRow(t testing.TB, sql string, dst ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, server(t).AdminDSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, sql).Scan(dst...); err != nil {
		t.Fatal(err)
	}
}

// leakForms are the raw and transformed forms of seeded secrets that must never
// reach a client of a masking grant.
func leakForms() []string {
	var forms []string
	for _, s := range []string{card1, card2, email1} {
		forms = append(forms, s, reverse(s), hex.EncodeToString([]byte(s)), b64(s))
	}
	return forms
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func assertNoLeak(t testing.TB, where, got string) {
	t.Helper()
	for _, f := range leakForms() {
		if strings.Contains(strings.ToLower(got), strings.ToLower(f)) {
			t.Errorf("%s: secret form %q reached the client:\n%s", where, f, got)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func fmtAny(v any) string { return fmt.Sprint(v) }

func selfSignedTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}
