package guard_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/test/pgtest"
)

const sqlstateReadOnly = "25006" // read_only_sql_transaction

// TestReadCasesInReadOnlyPostgres runs every read-classified case against a
// real PostgreSQL in a read-only session and asserts PostgreSQL never
// refuses one as a write (SQLSTATE 25006): the guard never calls read what
// the server considers a write. Cases marked second_wall (an unknown
// function that writes, read by design) must be refused with 25006: that is
// the wall the package doc relies on.
func TestReadCasesInReadOnlyPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Parallel()
	srv := pgtest.Start(t)
	ctx := context.Background()
	schema, err := os.ReadFile("testdata/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE guard"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, "guard", string(schema)); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgconn.ParseConfig(srv.AdminDSN("guard"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"

	ran, succeeded, walls := 0, 0, 0
	for _, c := range loadCases(t) {
		if c.Class != "read" || c.ParseError || c.PGSkip || c.Config != nil {
			continue
		}
		// Re-derive the class here: the table's expectation is checked by
		// TestCases, this test checks what the guard really says.
		g := c.guard(t)
		s := g.NewSession()
		for _, setup := range c.Setup {
			s.Check(setup)
		}
		if v := s.Check(c.SQL); v.Classification.Class != guard.ClassRead {
			continue
		}
		ran++
		t.Run(c.name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			conn, err := pgconn.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			// The server must really be read-only, or the test proves nothing.
			if err := firstErr(conn.Exec(ctx, "CREATE TEMP TABLE probe (a int)").ReadAll()); sqlstate(err) != sqlstateReadOnly {
				t.Fatalf("session is not read-only: %v", err)
			}
			for _, setup := range c.Setup {
				if err := firstErr(conn.Exec(ctx, setup).ReadAll()); err != nil {
					t.Fatalf("setup %q: %v", setup, err)
				}
			}
			err = firstErr(conn.Exec(ctx, c.SQL).ReadAll())
			switch {
			case c.SecondWall:
				if sqlstate(err) != sqlstateReadOnly {
					t.Fatalf("second wall: want SQLSTATE %s, got %v", sqlstateReadOnly, err)
				}
				walls++
			case sqlstate(err) == sqlstateReadOnly:
				t.Fatalf("classified read but PostgreSQL refused it as a write: %v", err)
			case err == nil:
				succeeded++
			default:
				t.Logf("failed for another reason (allowed): %v", err)
			}
		})
	}
	if ran < 60 || walls == 0 {
		t.Fatalf("ran %d read cases (%d second-wall); want at least 60 and one", ran, walls)
	}
	t.Logf("%d read cases: %d succeeded, %d refused by the second wall", ran, succeeded, walls)
	// The seeded schema must make most read cases really run.
	if succeeded < ran*3/4 {
		t.Errorf("only %d of %d read cases succeeded; the seed schema is missing something", succeeded, ran)
	}
}

func firstErr(results []*pgconn.Result, err error) error {
	if err != nil {
		return err
	}
	for _, r := range results {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
