package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/credtest"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/broker/credentials/vault"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/vaulttest"
)

var cluster struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.srv != nil {
		cluster.srv.Stop()
	}
	os.Exit(code)
}

func pg(t *testing.T) *pgtest.Server {
	t.Helper()
	cluster.once.Do(func() { cluster.srv, cluster.err = pgtest.StartServer() })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	return cluster.srv
}

var vaultRoles = map[spec.Access]string{spec.Read: "shop_read", spec.Write: "shop_write"}

// env is a seeded database, a local minter, the Vault double in front of it and
// a vault.Source talking to the double.
type env struct {
	dsn    string
	prefix string // of the roles this env's minter makes (roles are cluster-wide; tests run in parallel)
	minter *local.Postgres
	vt     *vaulttest.Server
	src    *vault.Source
	logs   *bytes.Buffer
}

// envSeq numbers envs so each minter's roles have their own prefix.
var envSeq atomic.Int64

func newEnv(t *testing.T, mutate func(*vaulttest.Config, *vault.Config)) *env {
	t.Helper()
	dsn, db := credtest.Database(t, pg(t))
	prefix := fmt.Sprintf("jg%d_", envSeq.Add(1))
	minter, err := local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: db, Prefix: prefix,
		Roles: map[spec.Access]string{spec.Read: credtest.ReadRole, spec.Write: credtest.WriteRole}})
	if err != nil {
		t.Fatal(err)
	}
	vtc := vaulttest.Config{Minter: minter, TTL: 30 * time.Minute,
		Roles: map[string]spec.Access{"shop_read": spec.Read, "shop_write": spec.Write}}
	logs := &bytes.Buffer{}
	vc := vault.Config{Mount: "database", Roles: vaultRoles, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if mutate != nil {
		mutate(&vtc, &vc)
	}
	vt := vaulttest.Start(t, vtc)
	vc.Client = vt.Client()
	src, err := vault.New(vc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{dsn: dsn, prefix: prefix, minter: minter, vt: vt, src: src, logs: logs}
}

func TestContractViaVaultDouble(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	credtest.Run(t, func(t *testing.T) (credentials.Source, string) { return e.src, e.dsn })
	if left := e.vt.Leases(); len(left) != 0 {
		t.Fatalf("leases left after the contract suite: %v", left)
	}
}

// TestContractRealVault runs the contract against a real Vault. It mounts a
// database secrets engine at a fresh path, points it at a throw-away local
// PostgreSQL, and unmounts it afterwards.
func TestContractRealVault(t *testing.T) {
	if os.Getenv("VAULT_ADDR") == "" || os.Getenv("VAULT_TOKEN") == "" {
		t.Skip("real Vault contract skipped: set VAULT_ADDR and VAULT_TOKEN (a token that may mount secrets engines, e.g. `vault server -dev`'s root token, on a Vault that can reach 127.0.0.1 here) to run it")
	}
	srv := pg(t)
	dsn, db := credtest.Database(t, srv)
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	mount := "jitgate-credtest-" + hex.EncodeToString(b)
	if err := client.Sys().MountWithContext(ctx, mount, &api.MountInput{Type: "database"}); err != nil {
		t.Fatalf("mount database engine: %v", err)
	}
	t.Cleanup(func() { _ = client.Sys().UnmountWithContext(context.Background(), mount) })
	_, err = client.Logical().WriteWithContext(ctx, mount+"/config/shop", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": "postgresql://{{username}}:{{password}}@" + srv.Addr() + "/" + db + "?sslmode=disable",
		"username":       "postgres",
		"password":       srv.Password,
		"allowed_roles":  "*",
	})
	if err != nil {
		t.Fatalf("configure connection: %v", err)
	}
	for role, inherit := range map[string]string{"shop_read": credtest.ReadRole, "shop_write": credtest.WriteRole} {
		creation := `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' INHERIT IN ROLE ` + inherit + `;`
		if inherit == credtest.ReadRole {
			creation += ` ALTER ROLE "{{name}}" SET default_transaction_read_only = on;`
		}
		_, err := client.Logical().WriteWithContext(ctx, mount+"/roles/"+role, map[string]any{
			"db_name":             "shop",
			"default_ttl":         "30m",
			"max_ttl":             "1h",
			"creation_statements": []string{creation},
			"revocation_statements": []string{
				`ALTER ROLE "{{name}}" NOLOGIN;`,
				`SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = '{{name}}';`,
				`REASSIGN OWNED BY "{{name}}" TO ` + inherit + `;`,
				`DROP OWNED BY "{{name}}";`,
				`DROP ROLE IF EXISTS "{{name}}";`,
			},
		})
		if err != nil {
			t.Fatalf("create role %s: %v", role, err)
		}
	}
	src, err := vault.New(vault.Config{Client: client, Mount: mount, Roles: vaultRoles})
	if err != nil {
		t.Fatal(err)
	}
	credtest.Run(t, func(t *testing.T) (credentials.Source, string) { return src, dsn })
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	c, err := api.NewClient(&api.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  vault.Config
		want string
	}{
		{"no client", vault.Config{Mount: "database", Roles: vaultRoles}, "Client is required"},
		{"bad mount", vault.Config{Client: c, Mount: "data base", Roles: vaultRoles}, "Mount"},
		{"traversal mount", vault.Config{Client: c, Mount: "database/../sys", Roles: vaultRoles}, "Mount"},
		{"no roles", vault.Config{Client: c, Mount: "database"}, "Roles is empty"},
		{"bad role", vault.Config{Client: c, Mount: "database", Roles: map[spec.Access]string{spec.Read: "../../sys/leases"}}, "must match"},
		{"dot role", vault.Config{Client: c, Mount: "database", Roles: map[spec.Access]string{spec.Read: ".."}}, "must match"},
		{"none level", vault.Config{Client: c, Mount: "database", Roles: map[spec.Access]string{spec.AccessNone: "x"}}, "not read, write or admin"},
	}
	for _, tc := range tests {
		if _, err := vault.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	src, err := vault.New(vault.Config{Client: c, Roles: vaultRoles})
	if err != nil || !strings.Contains(src.String(), `mount="database"`) {
		t.Fatalf("empty Mount: %v, %v; want the default mount \"database\"", src, err)
	}
}

func TestIssueWhenVaultIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.vt.SetDown(true)
	req := credentials.Request{GrantID: "g-down", Access: spec.Write, Expires: time.Now().Add(time.Hour)}
	_, err := e.src.Issue(t.Context(), req)
	if !errors.Is(err, credentials.ErrUnavailable) {
		t.Fatalf("Issue while sealed: got %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "Vault is sealed") {
		t.Errorf("error %q does not carry Vault's reason", err)
	}
	if left := e.vt.Leases(); len(left) != 0 {
		t.Fatalf("a lease was made while down: %v", left)
	}
	admin := adminConn(t, e.dsn)
	var n int
	if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)`, e.prefix).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d role(s) made while Vault was down", n)
	}

	// Up again: issue, go down, revoke fails with ErrUnavailable, then a retry
	// that finds Vault back revokes it.
	e.vt.SetDown(false)
	cred, err := e.src.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	e.vt.SetDown(true)
	if err := e.src.Revoke(t.Context(), cred); !errors.Is(err, credentials.ErrUnavailable) {
		t.Fatalf("Revoke while sealed: got %v, want ErrUnavailable", err)
	}
	healing := &healAfter{Source: e.src, n: 2, heal: func() { e.vt.SetDown(false) }}
	if err := credentials.RevokeWithRetry(t.Context(), healing, cred, 5, time.Millisecond); err != nil {
		t.Fatalf("RevokeWithRetry: %v", err)
	}
	if healing.calls != 3 {
		t.Fatalf("Revoke called %d times, want 3 (two 503s, then success)", healing.calls)
	}
	if left := e.vt.Leases(); len(left) != 0 {
		t.Fatalf("lease not revoked: %v", left)
	}
	var revoke503 int
	for _, c := range e.vt.Calls() {
		if c.Path == "/v1/sys/leases/revoke" && c.Status == 503 {
			revoke503++
		}
	}
	if revoke503 != 3 { // the direct Revoke plus two retries
		t.Errorf("double saw %d sealed revokes, want 3", revoke503)
	}
}

// healAfter calls heal before the (n+1)th Revoke.
type healAfter struct {
	credentials.Source
	n, calls int
	heal     func()
}

func (h *healAfter) Revoke(ctx context.Context, cred spec.Credential) error {
	h.calls++
	if h.calls == h.n+1 {
		h.heal()
	}
	return h.Source.Revoke(ctx, cred)
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *vaulttest.Config, vc *vault.Config) {
		vc.Roles = map[spec.Access]string{spec.Read: "shop_read", spec.Admin: "no_such_role"}
	})
	req := func(a spec.Access) credentials.Request {
		return credentials.Request{GrantID: "g-map", Access: a, Expires: time.Now().Add(time.Hour)}
	}
	// Unknown Vault role: 400 "unknown role".
	if _, err := e.src.Issue(t.Context(), req(spec.Admin)); !errors.Is(err, credentials.ErrNoRole) || !strings.Contains(err.Error(), "unknown role: no_such_role") {
		t.Errorf("unknown role: got %v, want ErrNoRole with Vault's text", err)
	}
	// Wrong mount: 404 → the client returns nothing.
	wrongMount := e.vt.Client()
	src, _ := vault.New(vault.Config{Client: wrongMount, Mount: "nosuchmount", Roles: vaultRoles})
	if _, err := src.Issue(t.Context(), req(spec.Read)); !errors.Is(err, credentials.ErrNoRole) {
		t.Errorf("wrong mount: got %v, want ErrNoRole", err)
	}
	// Bad token: 403.
	bad := e.vt.Client()
	bad.SetToken("hvs.not-the-token")
	src, _ = vault.New(vault.Config{Client: bad, Mount: "database", Roles: vaultRoles})
	if _, err := src.Issue(t.Context(), req(spec.Read)); !errors.Is(err, credentials.ErrDenied) {
		t.Errorf("bad token issue: got %v, want ErrDenied", err)
	}
	if err := src.Revoke(t.Context(), spec.Credential{LeaseID: "database/creds/shop_read/x"}); !errors.Is(err, credentials.ErrDenied) {
		t.Errorf("bad token revoke: got %v, want ErrDenied", err)
	}
	// Nothing listening: transport error.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	dead, _ := api.NewClient(&api.Config{Address: "http://" + addr, MaxRetries: 0})
	src, _ = vault.New(vault.Config{Client: dead, Mount: "database", Roles: vaultRoles})
	if _, err := src.Issue(t.Context(), req(spec.Read)); !errors.Is(err, credentials.ErrUnavailable) {
		t.Errorf("no server: got %v, want ErrUnavailable", err)
	}
	// Leases from elsewhere are refused without a call.
	before := len(e.vt.Calls())
	for _, lease := range []string{"", "local:postgres:jg_x_1", "auth/token/create/abc", "databasex/creds/a/b"} {
		if err := e.src.Revoke(t.Context(), spec.Credential{LeaseID: lease}); err == nil {
			t.Errorf("Revoke(%q) = nil, want refusal", lease)
		}
	}
	if after := len(e.vt.Calls()); after != before {
		t.Errorf("refused revokes reached Vault (%d calls)", after-before)
	}
	// Unknown lease under the mount: Vault answers 204, so nil.
	if err := e.src.Revoke(t.Context(), spec.Credential{LeaseID: "database/creds/shop_read/never"}); err != nil {
		t.Errorf("Revoke of an unknown lease: %v", err)
	}
}

func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	t.Run("lease shorter than grant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(vtc *vaulttest.Config, vc *vault.Config) { vtc.TTL = 10 * time.Minute; vc.Now = clock })
		cred, err := e.src.Issue(t.Context(), credentials.Request{GrantID: "g1", Access: spec.Read, Expires: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if want := now.Add(10 * time.Minute); !cred.Expires.Equal(want) {
			t.Fatalf("Expires %s, want lease end %s", cred.Expires, want)
		}
		if e.logs.Len() != 0 {
			t.Fatalf("unexpected warning: %s", e.logs)
		}
	})
	t.Run("lease longer than grant", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(vtc *vaulttest.Config, vc *vault.Config) { vtc.TTL = 2 * time.Hour; vc.Now = clock })
		grantEnd := now.Add(30 * time.Minute)
		cred, err := e.src.Issue(t.Context(), credentials.Request{GrantID: "g2", Access: spec.Read, Expires: grantEnd})
		if err != nil {
			t.Fatal(err)
		}
		if !cred.Expires.Equal(grantEnd) {
			t.Fatalf("Expires %s, want the grant's %s", cred.Expires, grantEnd)
		}
		if !strings.Contains(e.logs.String(), "lease outlives its grant") || !strings.Contains(e.logs.String(), cred.LeaseID) {
			t.Fatalf("no warning about the long lease: %q", e.logs)
		}
		if strings.Contains(e.logs.String(), string(cred.Password)) {
			t.Fatalf("log contains the password")
		}
	})
}

func TestWrapUnwrapSingleUse(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, func(vtc *vaulttest.Config, _ *vault.Config) { vtc.Now = clock })
	ctx := t.Context()
	data := map[string]any{"grant": `{"id":"g1"}`, "n": "1"}
	token, err := vault.Wrap(ctx, e.vt.Client(), data, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The remote task holds only the wrapping token, no Vault token of its own.
	remote, _ := api.NewClient(&api.Config{Address: e.vt.Addr(), MaxRetries: 0})
	remote.ClearToken()
	got, err := vault.Unwrap(ctx, remote, token)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !reflect.DeepEqual(got, data) {
		t.Fatalf("Unwrap = %v, want %v", got, data)
	}
	if remote.Token() != "" {
		t.Fatalf("Unwrap changed the caller's client token")
	}
	// The attack: replaying the token (an interceptor, or a second task).
	if _, err := vault.Unwrap(ctx, remote, token); !errors.Is(err, vault.ErrWrapToken) {
		t.Fatalf("second Unwrap: got %v, want ErrWrapToken", err)
	}
	// Also with a privileged caller passing the token in the body.
	if _, err := vault.Unwrap(ctx, e.vt.Client(), token); !errors.Is(err, vault.ErrWrapToken) {
		t.Fatalf("second Unwrap via root client: got %v, want ErrWrapToken", err)
	}
	// Expired before first use.
	token2, err := vault.Wrap(ctx, e.vt.Client(), data, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	if _, err := vault.Unwrap(ctx, remote, token2); !errors.Is(err, vault.ErrWrapToken) {
		t.Fatalf("expired Unwrap: got %v, want ErrWrapToken", err)
	}
	// Refusals before any call.
	if _, err := vault.Wrap(ctx, e.vt.Client(), data, 500*time.Millisecond); err == nil {
		t.Errorf("Wrap with a sub-second ttl succeeded")
	}
	if _, err := vault.Wrap(ctx, e.vt.Client(), nil, time.Minute); err == nil {
		t.Errorf("Wrap of nothing succeeded")
	}
	if _, err := vault.Unwrap(ctx, remote, " "); err == nil {
		t.Errorf("Unwrap of an empty token succeeded")
	}
	var unwrap400 int
	for _, c := range e.vt.Calls() {
		if c.Path == "/v1/sys/wrapping/unwrap" && c.Status == 400 {
			unwrap400++
		}
	}
	if unwrap400 != 3 {
		t.Errorf("double answered %d unwraps with 400, want 3", unwrap400)
	}
}

func adminConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
