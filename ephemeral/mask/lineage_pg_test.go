package mask_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/test/pgtest"
)

type lineageFile struct {
	Setup   string   `yaml:"setup"`
	Columns []string `yaml:"columns"`
	Secrets []string `yaml:"secrets"`
	Cases   []struct {
		SQL    string   `yaml:"sql"`
		Expect []string `yaml:"expect"`
		Note   string   `yaml:"note"`
	} `yaml:"cases"`
}

func loadCases(t *testing.T) lineageFile {
	t.Helper()
	b, err := os.ReadFile("testdata/lineage_cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f lineageFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) < 30 {
		t.Fatalf("only %d lineage cases", len(f.Cases))
	}
	for _, c := range f.Cases {
		for _, e := range c.Expect {
			if e != "redact" && e != "keep" {
				t.Fatalf("case %q: expect %q, want redact or keep", c.SQL, e)
			}
		}
	}
	return f
}

// secretForms are the ways a planted secret could come back after a transformation.
func secretForms(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		r := []byte(s)
		slices.Reverse(r)
		sum := md5.Sum([]byte(s))
		out = append(out, s, string(r), hex.EncodeToString([]byte(s)),
			base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString(sum[:]))
	}
	return out
}

// TestLineageCasesAgainstPostgres runs every case of testdata/lineage_cases.yaml on a
// real PostgreSQL: the RowDescription's table OIDs are resolved through the catalog as
// the engine does, relation kinds are resolved with RelKindQuery, and the plan must
// redact exactly the expected columns. Then the rows are masked and no output value
// may contain any form of a planted secret.
func TestLineageCasesAgainstPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Parallel()
	f := loadCases(t)
	srv := pgtest.Start(t)
	ctx := context.Background()
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE shop"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.AdminDSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, f.Setup); err != nil {
		t.Fatal(err)
	}
	m, err := mask.New(mask.Config{Columns: f.Columns})
	if err != nil {
		t.Fatal(err)
	}
	forms := secretForms(f.Secrets)
	t.Run("error and notice texts", func(t *testing.T) {
		errorTexts(t, ctx, srv.AdminDSN("shop"), m, forms)
	})
	for _, c := range f.Cases {
		t.Run(c.SQL, func(t *testing.T) {
			fds, rows, err := simpleQuery(ctx, conn, c.SQL)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			fields := resolveFields(t, ctx, conn, fds)
			lins, err := mask.Analyze(c.SQL)
			if err != nil {
				t.Fatalf("analyze: %v", err)
			}
			lin := &lins[len(lins)-1]
			// Without relation kinds the plan may only redact more.
			unresolved := m.Plan(fields, lin)
			for i, want := range c.Expect {
				if want == "redact" && unresolved.Action(i) != mask.ActionRedact {
					t.Errorf("column %d kept when relation kinds are unknown: %s", i, unresolved.Reason(i))
				}
			}
			for i, rel := range lin.Relations {
				var kind *string
				err := conn.QueryRow(ctx, mask.RelKindQuery, rel.QuotedName()).Scan(&kind)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					t.Fatal(err)
				}
				if kind != nil && *kind != "" {
					lin.Relations[i].Kind = (*kind)[0]
				}
			}
			plan := m.Plan(fields, lin)
			if len(fields) != len(c.Expect) {
				t.Fatalf("%d output columns, expect lists %d", len(fields), len(c.Expect))
			}
			for i, want := range c.Expect {
				got := plan.Action(i) == mask.ActionRedact
				if got != (want == "redact") {
					t.Errorf("column %d (%s): action %s (%s), want %s\nfield %+v\nlineage %v",
						i, fields[i].Name, plan.Action(i), plan.Reason(i), want, fields[i], lin.Columns)
				}
			}
			for _, row := range rows {
				for i, v := range row {
					out := m.Value(plan, i, v)
					for _, s := range forms {
						if bytes.Contains(bytes.ToLower(out), bytes.ToLower([]byte(s))) {
							t.Errorf("column %d leaks %q: %q", i, s, out)
						}
					}
					if plan.Action(i) == mask.ActionRedact && v != nil && string(out) != "********" {
						t.Errorf("column %d redacted to %q", i, out)
					}
				}
			}
		})
	}
}

func resolveFields(t *testing.T, ctx context.Context, conn *pgx.Conn, fds []pgconn.FieldDescription) []mask.Field {
	t.Helper()
	out := make([]mask.Field, len(fds))
	for i, fd := range fds {
		out[i] = mask.Field{Name: fd.Name, Computed: fd.TableOID == 0, TextLike: fd.DataTypeOID == 25 || fd.DataTypeOID == 1043}
		if fd.TableOID == 0 || fd.TableAttributeNumber == 0 {
			continue // attnum 0 is a whole-row reference: not a column, so unresolved
		}
		var schema, table, col, kind string
		err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname, a.attname, c.relkind::text
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE a.attrelid = $1 AND a.attnum = $2`, fd.TableOID, int16(fd.TableAttributeNumber)).Scan(&schema, &table, &col, &kind)
		if err != nil {
			t.Fatalf("resolve %d/%d: %v", fd.TableOID, fd.TableAttributeNumber, err)
		}
		out[i].Resolved = true
		out[i].Source = mask.ColumnRef{Schema: schema, Table: table, Column: col}
		out[i].RelKind = kind[0]
	}
	return out
}

// TestPostgresOriginOfSetOperations pins the PostgreSQL behaviour the planner relies on
// for UNION: whatever origin the server reports, the lineage (not the origin) decides.
func TestPostgresOriginOfSetOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Parallel()
	srv := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.AdminDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE u (name text, card_number text)"); err != nil {
		t.Fatal(err)
	}
	q := "SELECT name FROM u UNION ALL SELECT card_number FROM u"
	fds, _, err := simpleQuery(ctx, conn, q)
	if err != nil || len(fds) != 1 {
		t.Fatal(fds, err)
	}
	m, _ := mask.New(mask.Config{Columns: []string{"u.card_number"}})
	fields := resolveFields(t, ctx, conn, fds)
	lins, _ := mask.Analyze(q)
	lins[0].Relations[0].Kind = 'r'
	if a := m.Plan(fields, &lins[0]).Action(0); a != mask.ActionRedact {
		t.Fatalf("UNION of a masked column: %s (origin table oid %d)", a, fds[0].TableOID)
	}
	t.Logf("PostgreSQL reports table oid %d for a UNION column", fds[0].TableOID)
}

// simpleQuery runs sql with the simple protocol (text results, as psql does) and
// returns the last result's fields and rows, even when it has no rows.
func simpleQuery(ctx context.Context, conn *pgx.Conn, sql string) ([]pgconn.FieldDescription, [][][]byte, error) {
	mrr := conn.PgConn().Exec(ctx, sql)
	var fds []pgconn.FieldDescription
	var rows [][][]byte
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		fds = slices.Clone(rr.FieldDescriptions())
		rows = nil
		for rr.NextRow() {
			row := make([][]byte, len(rr.Values()))
			for i, v := range rr.Values() {
				if v != nil {
					row[i] = slices.Clone(v)
				}
			}
			rows = append(rows, row)
		}
		if _, err := rr.Close(); err != nil {
			mrr.Close()
			return nil, nil, err
		}
	}
	return fds, rows, mrr.Close()
}

// errorTexts: errors and notices that quote a masked value are masked whole by
// TextFor; others keep their text.
func errorTexts(t *testing.T, ctx context.Context, dsn string, m *mask.Masker, forms []string) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, c := range []struct {
		sql       string
		sensitive bool
	}{
		{"SELECT card_number::int FROM users", true},
		{"SELECT 1 FROM users WHERE ssn::int = 0", true},
		{"SELECT id FROM orders o WHERE o.memo::int = (SELECT card_number::bigint FROM users LIMIT 1)", true},
		{"DO $$BEGIN RAISE NOTICE 'card %', (SELECT card_number FROM users LIMIT 1); END$$", true},
		{"SELECT 1/0 FROM orders", false},
		{"SELECT memo::int FROM orders", false},
	} {
		notices = nil
		_, err := conn.Exec(ctx, c.sql)
		var texts []string
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			texts = append(texts, pgErr.Message)
		}
		texts = append(texts, notices...)
		if len(texts) == 0 {
			t.Fatalf("%s: no error or notice (err %v)", c.sql, err)
		}
		lins, err := mask.Analyze(c.sql)
		if err != nil {
			t.Fatal(err)
		}
		lin := &lins[0]
		for i, rel := range lin.Relations {
			var kind *string
			if err := conn.QueryRow(ctx, mask.RelKindQuery, rel.QuotedName()).Scan(&kind); err == nil && kind != nil {
				lin.Relations[i].Kind = (*kind)[0]
			}
		}
		if got := m.Sensitive(lin); got != c.sensitive {
			t.Errorf("%s: Sensitive = %v, want %v", c.sql, got, c.sensitive)
		}
		for _, text := range texts {
			out := string(m.TextFor(lin, []byte(text)))
			for _, f := range forms {
				if strings.Contains(out, f) {
					t.Errorf("%s: text %q leaks %q as %q", c.sql, text, f, out)
				}
			}
			if !c.sensitive && out != text {
				t.Errorf("%s: harmless text %q changed to %q", c.sql, text, out)
			}
		}
	}
}
