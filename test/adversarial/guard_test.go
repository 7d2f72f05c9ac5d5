package adversarial

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

type guardCase struct {
	SQL        string                                                                   `yaml:"sql"`
	Access     string                                                                   `yaml:"access"`
	Allowed    bool                                                                     `yaml:"allowed"`
	Reason     string                                                                   `yaml:"reason"`
	Session    bool                                                                     `yaml:"session"`
	Setup      []string                                                                 `yaml:"setup"`
	Config     *struct{ DenyKinds, AllowKinds, DenyFunctions, AllowFunctions []string } `yaml:"config"`
	ParseError bool                                                                     `yaml:"parse_error"`
	SecondWall bool                                                                     `yaml:"second_wall"`
	Threat     string                                                                   `yaml:"threat"`
	Note       string                                                                   `yaml:"note"`
}

func loadGuardCases(t *testing.T) []guardCase {
	t.Helper()
	raw, err := os.ReadFile("../../ephemeral/guard/testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []guardCase
	if err := yaml.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 80 {
		t.Fatalf("only %d guard cases", len(cases))
	}
	return cases
}

// TestGuardCasesThroughTheProxy sends every refused case of the guard's table
// through the proxy with pgx (Parse/Bind/Execute) and psql (simple Query), and
// asserts PostgreSQL never ran it: the client gets SQLSTATE 42501 "blocked by
// policy". Every allowed read case must not be blocked (no false positives).
// Allowed write/admin cases are left to the guard's own tests: running them
// here would change the schema under the other cases.
func TestGuardCasesThroughTheProxy(t *testing.T) {
	pg := pgtest.Start(t)
	schema, err := os.ReadFile("../../ephemeral/guard/testdata/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, pg, "postgres", "CREATE DATABASE adv")
	mustExec(t, pg, "adv", string(schema))
	// The upstream login is a superuser here on purpose: only the guard stands
	// between these statements and the database, so a miss would show.
	proxies := map[string]*proxy{}
	for _, a := range []spec.Access{spec.Read, spec.Write, spec.Admin} {
		proxies[a.String()] = startProxy(t, pg, "adv", "postgres", pg.Password, a, guard.Config{}, mask.Config{})
	}
	var refused, allowedReads int
	for i, c := range loadGuardCases(t) {
		if c.Config != nil || c.SecondWall || (c.Allowed && c.Access != "read") {
			continue
		}
		// The proxy always judges within a connection's session; cases that
		// state the stateless verdict (EXECUTE/FETCH without a session) have
		// session twins in the table.
		if strings.Contains(c.Note, "without a session") || strings.Contains(c.Reason, "only known to a session") {
			continue
		}
		p := proxies[c.Access]
		if p == nil {
			t.Fatalf("case %d: unknown access %q", i, c.Access)
		}
		name := c.Threat + ": " + c.SQL
		if len(name) > 100 {
			name = name[:100]
		}
		t.Run(name, func(t *testing.T) {
			conn := p.connect(t)
			ctx := context.Background()
			for _, s := range c.Setup {
				if _, err := conn.Exec(ctx, s, pgxSimple); err != nil && blocked(err) {
					t.Fatalf("setup %q was blocked: %v", s, err)
				}
			}
			// Extended protocol: pgx prepares the statement (Parse).
			_, errExt := conn.Exec(ctx, c.SQL)
			// Simple protocol: the same string as one Query message.
			_, errSimple := conn.Exec(ctx, c.SQL, pgxSimple)
			if c.Allowed {
				if blocked(errSimple) {
					t.Fatalf("false positive: allowed read was blocked: %v", errSimple)
				}
				return
			}
			if strings.ContainsRune(c.SQL, 0) {
				// A NUL inside a Query string is a malformed message: the
				// proxy's decoder refuses it before anything reaches PostgreSQL.
				if errSimple == nil || !(blocked(errSimple) || strings.Contains(errSimple.Error(), "08P01")) {
					t.Fatalf("NUL in a Query: got %v, want a refusal", errSimple)
				}
				return
			}
			if !blocked(errSimple) {
				t.Fatalf("simple protocol: got %v, want 42501 blocked by policy (%s)", errSimple, c.Reason)
			}
			if !blocked(errExt) && !strings.Contains(c.SQL, ";") {
				t.Fatalf("extended protocol: got %v, want 42501 blocked by policy", errExt)
			}
			if c.Reason != "" && !strings.Contains(errSimple.Error(), c.Reason) {
				t.Errorf("refusal %q does not give the reason %q", errSimple, c.Reason)
			}
			// The connection stays usable after a refusal.
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("connection unusable after the refusal: %v", err)
			}
		})
		if c.Allowed {
			allowedReads++
		} else {
			refused++
		}
	}
	t.Logf("replayed %d refused and %d allowed read cases through pgx and the simple protocol", refused, allowedReads)
	if refused < 80 {
		t.Errorf("only %d refused cases replayed", refused)
	}

	// psql itself, for a sample of refusals: its \; sends two statements in one Query.
	for _, sql := range []string{`SELECT 1 \; DELETE FROM orders`, `COPY users TO PROGRAM 'id'`, `SET ROLE postgres`, `DO $$BEGIN EXECUTE 'DR' || 'OP TABLE users'; END$$`} {
		out, err := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", proxies["read"].dsn(), "-c", sql).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "blocked by policy") {
			t.Errorf("psql %q: err %v output %s; want a policy refusal", sql, err, out)
		}
	}
	if got := scalar(t, pg, "adv", "SELECT count(*) FROM orders"); got != "2" {
		t.Fatalf("orders has %s rows after the replay, want 2: a refused statement ran", got)
	}
}

func scalar(t *testing.T, pg *pgtest.Server, db, sql string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-A", "-t", pg.AdminDSN(db), "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}
