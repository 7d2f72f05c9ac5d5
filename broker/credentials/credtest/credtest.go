// Package credtest is the contract suite every credentials.Source must pass,
// against a real PostgreSQL: the credential logs in, carries exactly the
// privileges of its access level, stops working when revoked (sessions included),
// and never shows its password in printed or marshalled values.
//
// A test prepares a database with Seed, builds a Source that maps spec.Read to
// ReadRole and spec.Write to WriteRole (and nothing to spec.Admin), and calls Run:
//
//	srv := pgtest.Start(t)
//	dsn, db := credtest.Database(t, srv) // CREATE DATABASE + Seed
//	credtest.Run(t, func(t *testing.T) (credentials.Source, string) {
//		src, _ := local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: db,
//			Roles: map[spec.Access]string{spec.Read: credtest.ReadRole, spec.Write: credtest.WriteRole}})
//		return src, dsn
//	})
package credtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

const (
	// ReadRole may SELECT from Table.
	ReadRole = "shop_read"
	// WriteRole may SELECT, INSERT, UPDATE and DELETE on Table.
	WriteRole = "shop_write"
	// Table is the seeded table, in schema public.
	Table = "shop_items"
)

// SeedSQL creates ReadRole, WriteRole and Table with their grants. It can run
// more than once, also concurrently in several databases of one cluster.
const SeedSQL = `
DO $$ BEGIN
  BEGIN CREATE ROLE shop_read NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
  BEGIN CREATE ROLE shop_write NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
END $$;
CREATE TABLE IF NOT EXISTS public.shop_items (id serial PRIMARY KEY, name text NOT NULL);
GRANT USAGE ON SCHEMA public TO shop_read, shop_write;
GRANT SELECT ON public.shop_items TO shop_read;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.shop_items TO shop_write;
GRANT USAGE ON SEQUENCE public.shop_items_id_seq TO shop_write;
INSERT INTO public.shop_items (name) SELECT 'seed' WHERE NOT EXISTS (SELECT 1 FROM public.shop_items);
`

// Seed runs SeedSQL as the admin in the database adminDSN names.
func Seed(ctx context.Context, adminDSN string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("credtest: seed: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, SeedSQL); err != nil {
		return fmt.Errorf("credtest: seed: %w", err)
	}
	return nil
}

// Database creates a fresh database on srv, seeds it with SeedSQL and returns
// its admin DSN and name. Databases are left for srv's own cleanup.
func Database(tb testing.TB, srv *pgtest.Server) (dsn, name string) {
	tb.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name = "shop_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	dsn = srv.AdminDSN(name)
	if err := Seed(ctx, dsn); err != nil {
		tb.Fatal(err)
	}
	return dsn, name
}

// NewSource returns a fresh Source and the admin DSN of the database its
// credentials log in to (seeded with Seed). It is called once per subtest, from
// parallel subtests.
type NewSource func(t *testing.T) (credentials.Source, string)

// Run runs the contract suite. Subtests run in parallel.
func Run(t *testing.T, newSource NewSource) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"ReadCanSelectButNotWrite", testRead},
		{"WriteCanInsert", testWrite},
		{"RoleAttributes", testAttributes},
		{"ExpiryIsBounded", testExpiry},
		{"RevokeEndsLoginAndDropsRole", testRevoke},
		{"RevokeTwiceIsNil", testRevokeTwice},
		{"RevokeTerminatesLiveSession", testRevokeSession},
		{"UnconfiguredLevelIsRefused", testUnconfigured},
		{"ConcurrentGrantsAreDistinct", testConcurrent},
		{"PasswordNeverPrinted", testRedaction},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, dsn := newSource(t)
			admin, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatalf("credtest: admin DSN: %v", err)
			}
			tc.fn(t, &harness{src: src, dsn: dsn, admin: admin})
		})
	}
}

type harness struct {
	src   credentials.Source
	dsn   string
	admin *pgx.ConnConfig
}

func grantID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "credtest-" + hex.EncodeToString(b)
}

// issue issues a credential and registers a revoke in cleanup, so a failing
// test does not leave a live role behind.
func (h *harness) issue(t *testing.T, a spec.Access) (credentials.Request, spec.Credential) {
	t.Helper()
	req := credentials.Request{GrantID: grantID(), Access: a, Expires: time.Now().Add(time.Hour)}
	cred, err := h.src.Issue(t.Context(), req)
	if err != nil {
		t.Fatalf("Issue(%s): %v", a, err)
	}
	if cred.Username == "" || cred.Password == "" || cred.LeaseID == "" {
		t.Fatalf("Issue(%s) returned an incomplete credential: username %q, lease %q, password set %v", a, cred.Username, cred.LeaseID, cred.Password != "")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.src.Revoke(ctx, cred); err != nil {
			t.Errorf("cleanup Revoke(%s): %v", cred.LeaseID, err)
		}
	})
	return req, cred
}

func (h *harness) login(ctx context.Context, cred spec.Credential) (*pgx.Conn, error) {
	cfg := h.admin.Copy()
	cfg.User = cred.Username
	cfg.Password = string(cred.Password)
	cfg.Fallbacks = nil
	return pgx.ConnectConfig(ctx, cfg)
}

func (h *harness) mustLogin(t *testing.T, cred spec.Credential) *pgx.Conn {
	t.Helper()
	conn, err := h.login(t.Context(), cred)
	if err != nil {
		t.Fatalf("login as %s: %v", cred.Username, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (h *harness) adminConn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(t.Context(), h.admin.Copy())
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func testRead(t *testing.T, h *harness) {
	_, cred := h.issue(t, spec.Read)
	conn := h.mustLogin(t, cred)
	ctx := t.Context()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM public."+Table).Scan(&n); err != nil {
		t.Fatalf("read credential cannot SELECT: %v", err)
	}
	if n < 1 {
		t.Fatalf("SELECT count(*) = %d, want the seeded row", n)
	}
	// Writing is refused, by the read-only default (25006) or by privileges (42501).
	_, err := conn.Exec(ctx, "INSERT INTO public."+Table+" (name) VALUES ('read-grant-write')")
	if c := sqlstate(err); c != "25006" && c != "42501" {
		t.Fatalf("read credential INSERT: got %v (SQLSTATE %q), want read_only_sql_transaction or insufficient_privilege", err, c)
	}
	// The attack: switch the session default off. Privileges must still refuse.
	if _, err := conn.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
		t.Fatalf("SET default_transaction_read_only: %v", err)
	}
	for _, stmt := range []string{
		"INSERT INTO public." + Table + " (name) VALUES ('read-grant-write')",
		"UPDATE public." + Table + " SET name = 'x'",
		"DELETE FROM public." + Table,
	} {
		_, err := conn.Exec(ctx, stmt)
		if c := sqlstate(err); c != "42501" {
			t.Errorf("read credential %q after read_only=off: got %v (SQLSTATE %q), want permission denied (42501)", stmt, err, c)
		} else if !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("read credential %q: error %q does not say permission denied", stmt, err)
		}
	}
}

func testWrite(t *testing.T, h *harness) {
	req, cred := h.issue(t, spec.Write)
	conn := h.mustLogin(t, cred)
	ctx := t.Context()
	var id int
	if err := conn.QueryRow(ctx, "INSERT INTO public."+Table+" (name) VALUES ($1) RETURNING id", req.GrantID).Scan(&id); err != nil {
		t.Fatalf("write credential cannot INSERT: %v", err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT name FROM public."+Table+" WHERE id = $1", id).Scan(&name); err != nil || name != req.GrantID {
		t.Fatalf("write credential SELECT of its row: name %q, err %v", name, err)
	}
	// Write is not ownership.
	_, err := conn.Exec(ctx, "DROP TABLE public."+Table)
	if c := sqlstate(err); c != "42501" {
		t.Fatalf("write credential DROP TABLE: got %v (SQLSTATE %q), want must be owner (42501)", err, c)
	}
}

func testAttributes(t *testing.T, h *harness) {
	_, cred := h.issue(t, spec.Write)
	admin := h.adminConn(t)
	var super, createRole, createDB, repl, bypass, login bool
	var until *time.Time
	err := admin.QueryRow(t.Context(), `SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = $1`, cred.Username).
		Scan(&super, &createRole, &createDB, &repl, &bypass, &login, &until)
	if err != nil {
		t.Fatalf("role %s: %v", cred.Username, err)
	}
	if super || createRole || createDB || repl || bypass {
		t.Fatalf("role %s has elevated attributes: super=%v createrole=%v createdb=%v replication=%v bypassrls=%v", cred.Username, super, createRole, createDB, repl, bypass)
	}
	if !login {
		t.Fatalf("role %s cannot log in", cred.Username)
	}
	if until == nil {
		t.Fatalf("role %s has no VALID UNTIL: it would never stop working by itself", cred.Username)
	}
}

func testExpiry(t *testing.T, h *harness) {
	before := time.Now()
	req, cred := h.issue(t, spec.Read)
	if !cred.Expires.After(before) {
		t.Fatalf("credential Expires %s is not after issue time %s", cred.Expires, before)
	}
	if cred.Expires.After(req.Expires) {
		t.Fatalf("credential Expires %s is after the requested hard expiry %s", cred.Expires, req.Expires)
	}
	var until time.Time
	if err := h.adminConn(t).QueryRow(t.Context(), `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, cred.Username).Scan(&until); err != nil {
		t.Fatalf("rolvaliduntil of %s: %v", cred.Username, err)
	}
	if !until.After(before) {
		t.Fatalf("role %s VALID UNTIL %s is already past", cred.Username, until)
	}
}

func testRevoke(t *testing.T, h *harness) {
	_, cred := h.issue(t, spec.Write)
	conn := h.mustLogin(t, cred) // proves it worked before
	conn.Close(t.Context())
	if err := h.src.Revoke(t.Context(), cred); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, err := h.login(t.Context(), cred)
	if c := sqlstate(err); !strings.HasPrefix(c, "28") {
		t.Fatalf("login after Revoke: got %v (SQLSTATE %q), want an authentication failure (28xxx)", err, c)
	}
	var n int
	if err := h.adminConn(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_roles WHERE rolname = $1`, cred.Username).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("role %s still exists after Revoke", cred.Username)
	}
}

func testRevokeTwice(t *testing.T, h *harness) {
	_, cred := h.issue(t, spec.Read)
	for i := 1; i <= 2; i++ {
		if err := h.src.Revoke(t.Context(), cred); err != nil {
			t.Fatalf("Revoke #%d: %v", i, err)
		}
	}
}

func testRevokeSession(t *testing.T, h *harness) {
	_, cred := h.issue(t, spec.Read)
	conn := h.mustLogin(t, cred)
	if _, err := conn.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatalf("live session: %v", err)
	}
	if err := h.src.Revoke(t.Context(), cred); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	// A source that signals without waiting may leave the backend a moment to
	// exit; give it a bounded time, not a fixed sleep.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := conn.Exec(t.Context(), "SELECT 1")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session of %s still answers 10s after Revoke", cred.Username)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var n int
	if err := h.adminConn(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, cred.Username).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d session(s) of %s remain after Revoke", n, cred.Username)
	}
}

func testUnconfigured(t *testing.T, h *harness) {
	for _, a := range []spec.Access{spec.Admin, spec.AccessNone} {
		req := credentials.Request{GrantID: grantID(), Access: a, Expires: time.Now().Add(time.Hour)}
		cred, err := h.src.Issue(t.Context(), req)
		if err == nil {
			_ = h.src.Revoke(t.Context(), cred)
			t.Fatalf("Issue(%s) with no role configured for it succeeded (user %s)", a, cred.Username)
		}
		if !errors.Is(err, credentials.ErrNoRole) {
			t.Errorf("Issue(%s): error %v does not wrap credentials.ErrNoRole", a, err)
		}
	}
	// Expired and incomplete requests are refused too.
	for name, req := range map[string]credentials.Request{
		"expired":   {GrantID: grantID(), Access: spec.Read, Expires: time.Now().Add(-time.Minute)},
		"no grant":  {Access: spec.Read, Expires: time.Now().Add(time.Hour)},
		"no expiry": {GrantID: grantID(), Access: spec.Read},
	} {
		if cred, err := h.src.Issue(t.Context(), req); err == nil {
			_ = h.src.Revoke(t.Context(), cred)
			t.Errorf("Issue(%s request) succeeded, want refusal", name)
		}
	}
}

func testConcurrent(t *testing.T, h *harness) {
	const n = 4
	creds := make([]spec.Credential, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			access := spec.Read
			if i%2 == 1 {
				access = spec.Write
			}
			creds[i], errs[i] = h.src.Issue(t.Context(), credentials.Request{GrantID: grantID(), Access: access, Expires: time.Now().Add(time.Hour)})
		}()
	}
	wg.Wait()
	users := map[string]bool{}
	passwords := map[spec.WireSecret]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("concurrent Issue #%d: %v", i, errs[i])
			continue
		}
		cred := creds[i]
		t.Cleanup(func() { _ = h.src.Revoke(context.Background(), cred) })
		if users[cred.Username] || passwords[cred.Password] {
			t.Errorf("concurrent Issue #%d reused a username or password (%s)", i, cred.Username)
		}
		users[cred.Username], passwords[cred.Password] = true, true
		conn, err := h.login(t.Context(), cred)
		if err != nil {
			t.Errorf("login #%d: %v", i, err)
			continue
		}
		conn.Close(t.Context())
	}
	if t.Failed() {
		return
	}
	errs = make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.src.Revoke(t.Context(), creds[i]) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Revoke #%d: %v", i, err)
		}
	}
}

func testRedaction(t *testing.T, h *harness) {
	req, cred := h.issue(t, spec.Write)
	pw := string(cred.Password)
	adminPW := h.admin.Password
	reqJSON, _ := json.Marshal(req)
	redJSON, err := json.Marshal(credentials.Redacted(cred))
	if err != nil {
		t.Fatalf("json.Marshal(Redacted): %v", err)
	}
	outputs := map[string]string{
		"source":        fmt.Sprintf("%v %+v %#v %s", h.src, h.src, h.src, h.src),
		"request":       fmt.Sprintf("%v %+v %#v", req, req, req),
		"request JSON":  string(reqJSON),
		"redacted":      fmt.Sprintf("%v %+v %#v %s", credentials.Redacted(cred), credentials.Redacted(cred), credentials.Redacted(cred), credentials.Redacted(cred)),
		"redacted JSON": string(redJSON),
	}
	// An error from the source (here: an unconfigured level) must not carry secrets either.
	if _, err := h.src.Issue(t.Context(), credentials.Request{GrantID: req.GrantID, Access: spec.Admin, Expires: req.Expires}); err != nil {
		outputs["error"] = err.Error()
	}
	for what, out := range outputs {
		if strings.Contains(out, pw) {
			t.Errorf("%s output contains the credential's password: %s", what, out)
		}
		if adminPW != "" && strings.Contains(out, adminPW) {
			t.Errorf("%s output contains the admin password", what)
		}
	}
	if !strings.Contains(outputs["redacted"], cred.Username) || !strings.Contains(outputs["redacted JSON"], cred.LeaseID) {
		t.Errorf("Redacted lost the fields audit needs: %s / %s", outputs["redacted"], outputs["redacted JSON"])
	}
}
