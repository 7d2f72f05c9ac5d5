package local_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/credtest"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

// cluster is one PostgreSQL server shared by the tests of this package; each
// test gets its own database.
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

// newDB creates a fresh seeded database and returns its admin DSN and name.
func newDB(t testing.TB) (string, string) {
	t.Helper()
	cluster.once.Do(func() { cluster.srv, cluster.err = pgtest.StartServer() })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	return credtest.Database(t, cluster.srv)
}

func roles() map[spec.Access]string {
	return map[spec.Access]string{spec.Read: credtest.ReadRole, spec.Write: credtest.WriteRole}
}

func newMinter(t testing.TB, dsn, db string) *local.Postgres {
	t.Helper()
	p, err := local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: db, Roles: roles()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestContract(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	credtest.Run(t, func(t *testing.T) (credentials.Source, string) {
		return newMinter(t, dsn, db), dsn
	})
}

func admin(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func countRoles(t *testing.T, c *pgx.Conn, like string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", like).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewPostgresValidates(t *testing.T) {
	t.Parallel()
	good := func() local.PostgresConfig {
		return local.PostgresConfig{AdminDSN: "postgres://admin:s3cretpw@127.0.0.1:5432/x", Database: "shop", Roles: roles()}
	}
	tests := []struct {
		name   string
		mutate func(*local.PostgresConfig)
		want   string
	}{
		{"no dsn", func(c *local.PostgresConfig) { c.AdminDSN = "" }, "AdminDSN is required"},
		{"bad dsn", func(c *local.PostgresConfig) { c.AdminDSN = "postgres://admin:s3cretpw@[::1" }, "does not parse"},
		{"no database", func(c *local.PostgresConfig) { c.Database = "" }, "Database is required"},
		{"no roles", func(c *local.PostgresConfig) { c.Roles = nil }, "Roles is empty"},
		{"none level", func(c *local.PostgresConfig) { c.Roles[spec.AccessNone] = "x" }, "not read, write or admin"},
		{"empty role", func(c *local.PostgresConfig) { c.Roles[spec.Admin] = "" }, "1 to 63 bytes"},
		{"role with prefix", func(c *local.PostgresConfig) { c.Roles[spec.Admin] = "jg_admin" }, "starts with the minted-role prefix"},
		{"bad prefix", func(c *local.PostgresConfig) { c.Prefix = `jg"; drop` }, "Prefix"},
		{"negative limit", func(c *local.PostgresConfig) { c.ConnectionLimit = -1 }, "ConnectionLimit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mutate(&cfg)
			_, err := local.NewPostgres(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPostgres: got %v, want error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cretpw") {
				t.Fatalf("error leaks the admin password: %v", err)
			}
		})
	}
	p, err := local.NewPostgres(good())
	if err != nil {
		t.Fatal(err)
	}
	cfg := good()
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", p, p, p, p), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, &cfg)} {
		if strings.Contains(out, "s3cretpw") {
			t.Fatalf("printed minter/config leaks the admin password: %s", out)
		}
		if !strings.Contains(out, "shop") {
			t.Fatalf("printed minter/config lost its database: %s", out)
		}
	}
}

func TestRoleAndExpiryAreExact(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	p := newMinter(t, dsn, db)
	expires := time.Now().Add(90 * time.Minute)
	cred, err := p.Issue(t.Context(), credentials.Request{GrantID: "01HX-Grant.One", Access: spec.Read, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Revoke(context.Background(), cred) })
	if want := p.RoleName("01HX-Grant.One"); cred.Username != want || cred.LeaseID != local.LeasePrefix+want {
		t.Fatalf("username %q lease %q, want role %q", cred.Username, cred.LeaseID, want)
	}
	if !strings.HasPrefix(cred.Username, "jg_01hx_grant_one_") {
		t.Fatalf("role name %q does not carry the grant id", cred.Username)
	}
	if !cred.Expires.Equal(expires.Truncate(time.Microsecond)) {
		t.Fatalf("Expires %s, want %s", cred.Expires, expires)
	}
	c := admin(t, dsn)
	var (
		until    time.Time
		limit    int
		inherit  bool
		pw       string
		config   []string
		comment  string
		memberOf []string
	)
	err = c.QueryRow(t.Context(), `SELECT a.rolvaliduntil, a.rolconnlimit, a.rolinherit, a.rolpassword, coalesce(r.rolconfig, '{}'), shobj_description(a.oid, 'pg_authid'),
		ARRAY(SELECT p.rolname FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid WHERE m.member = a.oid)
		FROM pg_authid a JOIN pg_roles r ON r.oid = a.oid WHERE a.rolname = $1`, cred.Username).
		Scan(&until, &limit, &inherit, &pw, &config, &comment, &memberOf)
	if err != nil {
		t.Fatal(err)
	}
	if !until.Equal(cred.Expires) {
		t.Errorf("VALID UNTIL %s, want exactly %s", until, cred.Expires)
	}
	if limit != 5 || !inherit {
		t.Errorf("connection limit %d inherit %v, want 5 and true", limit, inherit)
	}
	if !strings.HasPrefix(pw, "SCRAM-SHA-256$4096:") || strings.Contains(pw, string(cred.Password)) {
		t.Errorf("stored password is not a SCRAM verifier: %.20s…", pw)
	}
	if len(config) != 1 || config[0] != "default_transaction_read_only=on" {
		t.Errorf("role config %v, want default_transaction_read_only=on", config)
	}
	if comment != "jitgate grant 01HX-Grant.One access read" {
		t.Errorf("comment %q", comment)
	}
	if len(memberOf) != 1 || memberOf[0] != credtest.ReadRole {
		t.Errorf("member of %v, want [%s]", memberOf, credtest.ReadRole)
	}
	if n := len(string(cred.Password)); n != 43 {
		t.Errorf("password length %d, want 43 (32 bytes base64url)", n)
	}
}

func TestIssueSameGrantTwiceIsRefused(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	p := newMinter(t, dsn, db)
	req := credentials.Request{GrantID: "grant-dup", Access: spec.Write, Expires: time.Now().Add(time.Hour)}
	first, err := p.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Revoke(context.Background(), first) })
	_, err = p.Issue(t.Context(), req)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Issue for the same grant: got %v, want 'already exists'", err)
	}
	// The first credential is untouched.
	cfg, _ := pgx.ParseConfig(dsn)
	cfg.User, cfg.Password = first.Username, string(first.Password)
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("first credential broken by the refused second Issue: %v", err)
	}
	conn.Close(t.Context())
}

func TestIssueLeavesNothingOnFailure(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	p, err := local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: db, Prefix: "jgfail_",
		Roles: map[spec.Access]string{spec.Read: "no_such_role", spec.Write: credtest.WriteRole}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Issue(t.Context(), credentials.Request{GrantID: "g1", Access: spec.Read, Expires: time.Now().Add(time.Hour)})
	if !errors.Is(err, credentials.ErrNoRole) {
		t.Fatalf("Issue with a missing access role: got %v, want ErrNoRole", err)
	}
	if n := countRoles(t, admin(t, dsn), `jgfail\_%`); n != 0 {
		t.Fatalf("%d half-made role(s) left after a failed Issue", n)
	}
}

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestSourceDown(t *testing.T) {
	t.Parallel()
	dsn := "postgres://postgres:pw@" + deadAddr(t) + "/shop?sslmode=disable&connect_timeout=5"
	p, err := local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: "shop", Roles: roles()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Issue(t.Context(), credentials.Request{GrantID: "g1", Access: spec.Read, Expires: time.Now().Add(time.Hour)})
	if !errors.Is(err, credentials.ErrUnavailable) {
		t.Fatalf("Issue with the server down: got %v, want ErrUnavailable", err)
	}
	err = p.Revoke(t.Context(), spec.Credential{Username: p.RoleName("g1"), LeaseID: local.LeasePrefix + p.RoleName("g1")})
	if !errors.Is(err, credentials.ErrUnavailable) {
		t.Fatalf("Revoke with the server down: got %v, want ErrUnavailable", err)
	}
}

func TestWrongAdminPasswordIsDenied(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword("postgres", "wrong-password")
	p, err := local.NewPostgres(local.PostgresConfig{AdminDSN: u.String(), Database: db, Roles: roles()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Issue(t.Context(), credentials.Request{GrantID: "g1", Access: spec.Read, Expires: time.Now().Add(time.Hour)})
	if !errors.Is(err, credentials.ErrDenied) || errors.Is(err, credentials.ErrUnavailable) {
		t.Fatalf("Issue with a wrong admin password: got %v, want ErrDenied (not ErrUnavailable)", err)
	}
}

func TestRevokeRefusesForeignRoles(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	p := newMinter(t, dsn, db)
	c := admin(t, dsn)
	// A role with the prefix but not minted by jitgate (no comment).
	if _, err := c.Exec(t.Context(), `CREATE ROLE jg_handmade_00000000 LOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Exec(context.Background(), `DROP ROLE IF EXISTS jg_handmade_00000000`) })
	tests := []struct {
		name string
		cred spec.Credential
		want string
	}{
		{"superuser", spec.Credential{LeaseID: "local:postgres:postgres"}, "names a role this minter does not make"},
		{"access role", spec.Credential{LeaseID: "local:postgres:shop_read"}, "names a role this minter does not make"},
		{"other source", spec.Credential{LeaseID: "database/creds/x/abc"}, "not a local postgres lease"},
		{"injection", spec.Credential{LeaseID: `local:postgres:jg_x"; DROP ROLE postgres; --`}, "names a role this minter does not make"},
		{"uppercase", spec.Credential{LeaseID: "local:postgres:jg_X"}, "names a role this minter does not make"},
		{"username mismatch", spec.Credential{Username: "jg_other_1", LeaseID: "local:postgres:jg_abc_1"}, "does not match username"},
		{"not minted", spec.Credential{LeaseID: "local:postgres:jg_handmade_00000000"}, "not minted by jitgate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Revoke(t.Context(), tc.cred)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Revoke(%q): got %v, want refusal containing %q", tc.cred.LeaseID, err, tc.want)
			}
		})
	}
	for _, r := range []string{"postgres", credtest.ReadRole, "jg_handmade_00000000"} {
		if countRoles(t, c, r) != 1 {
			t.Fatalf("role %s was dropped by a refused Revoke", r)
		}
	}
	// A lease for a role that never existed is simply gone: nil.
	if err := p.Revoke(t.Context(), spec.Credential{LeaseID: local.LeasePrefix + p.RoleName("never-issued")}); err != nil {
		t.Fatalf("Revoke of a never-issued role: %v", err)
	}
}

func TestRevokeReassignsOwnedObjects(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	p := newMinter(t, dsn, db)
	c := admin(t, dsn)
	if _, err := c.Exec(t.Context(), `CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO shop_write`); err != nil {
		t.Fatal(err)
	}
	cred, err := p.Issue(t.Context(), credentials.Request{GrantID: "g-owner", Access: spec.Write, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := pgx.ParseConfig(dsn)
	cfg.User, cfg.Password = cred.Username, string(cred.Password)
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), `CREATE TABLE scratch.made_by_grant (x int)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	if err := p.Revoke(t.Context(), cred); err != nil {
		t.Fatalf("Revoke of a role that owns a table: %v", err)
	}
	var owner string
	if err := c.QueryRow(t.Context(), `SELECT tableowner FROM pg_tables WHERE schemaname = 'scratch' AND tablename = 'made_by_grant'`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != credtest.WriteRole {
		t.Fatalf("table owner after Revoke %q, want %q", owner, credtest.WriteRole)
	}
}

func TestRevokeWithRetryAgainstRecoveredServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn, db := newDB(t)
	p := newMinter(t, dsn, db)
	cred, err := p.Issue(ctx, credentials.Request{GrantID: "g-retry", Access: spec.Read, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A source that fails twice (server unreachable), then reaches the real one.
	flaky := &flakySource{Source: p, failures: 2}
	if err := credentials.RevokeWithRetry(ctx, flaky, cred, 5, time.Millisecond); err != nil {
		t.Fatalf("RevokeWithRetry: %v", err)
	}
	if flaky.calls != 3 {
		t.Fatalf("Revoke called %d times, want 3", flaky.calls)
	}
	if n := countRoles(t, admin(t, dsn), cred.Username); n != 0 {
		t.Fatalf("role still exists after RevokeWithRetry")
	}
}

type flakySource struct {
	credentials.Source
	failures, calls int
}

func (f *flakySource) Revoke(ctx context.Context, cred spec.Credential) error {
	f.calls++
	if f.calls <= f.failures {
		return fmt.Errorf("flaky: %w", credentials.ErrUnavailable)
	}
	return f.Source.Revoke(ctx, cred)
}

func FuzzRoleName(f *testing.F) {
	for _, s := range []string{"g1", "01HX-Grant.One", "", `"; DROP ROLE postgres; --`, strings.Repeat("x", 200), "ü-ñ"} {
		f.Add(s)
	}
	p, err := local.NewPostgres(local.PostgresConfig{AdminDSN: "postgres://a@127.0.0.1/x", Database: "x", Roles: roles()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string) {
		r := p.RoleName(id)
		if len(r) > 63 || !strings.HasPrefix(r, "jg_") {
			t.Fatalf("RoleName(%q) = %q", id, r)
		}
		for _, c := range r {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				t.Fatalf("RoleName(%q) = %q has %q", id, r, c)
			}
		}
		// The name a grant gets is the name its lease will be accepted for.
		err := p.Revoke(context.Background(), spec.Credential{Username: "not-" + r, LeaseID: local.LeasePrefix + r})
		if err == nil || !strings.Contains(err.Error(), "does not match username") {
			t.Fatalf("lease for RoleName(%q) = %q was not accepted up to the username check: %v", id, r, err)
		}
	})
}

func FuzzRevokeLeaseID(f *testing.F) {
	for _, s := range []string{"local:postgres:jg_a_1", "local:postgres:postgres", "local:postgres:jg_", `local:postgres:jg_a"b`, "x"} {
		f.Add(s)
	}
	p, err := local.NewPostgres(local.PostgresConfig{AdminDSN: "postgres://a@127.0.0.1:1/x?connect_timeout=1", Database: "x", Roles: roles()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, lease string) {
		// Only a well-formed lease may get as far as connecting (which fails here).
		err := p.Revoke(context.Background(), spec.Credential{LeaseID: lease})
		if err == nil {
			t.Fatalf("Revoke(%q) = nil without a server", lease)
		}
		role, ok := strings.CutPrefix(lease, local.LeasePrefix)
		wellFormed := ok && strings.HasPrefix(role, "jg_") && len(role) > 3 && len(role) <= 49 && strings.Trim(role, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
		if errors.Is(err, credentials.ErrUnavailable) != wellFormed {
			t.Fatalf("Revoke(%q): well-formed=%v but err=%v", lease, wellFormed, err)
		}
	})
}

// BenchmarkIssueRevoke measures one grant's credential lifecycle through the
// minter; BenchmarkBaselineCreateDropRole is the least SQL that could do it (one
// connection, CREATE ROLE with a plaintext password, DROP ROLE), in the same run.
func BenchmarkIssueRevoke(b *testing.B) {
	dsn, db := newDB(b)
	p := newMinter(b, dsn, db)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		cred, err := p.Issue(ctx, credentials.Request{GrantID: fmt.Sprintf("bench-%d", i), Access: spec.Read, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Revoke(ctx, cred); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaselineCreateDropRole(b *testing.B) {
	dsn, _ := newDB(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		role := fmt.Sprintf("bench_base_%d", i)
		if _, err := c.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'x' IN ROLE shop_read"); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Exec(ctx, "DROP ROLE "+role); err != nil {
			b.Fatal(err)
		}
		c.Close(ctx)
	}
}
