package guard_test

import (
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func newGuard(tb testing.TB, access spec.Access, cacheSize int) *guard.Guard {
	tb.Helper()
	g, err := guard.New(guard.Config{Access: access, CacheSize: cacheSize})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// TestShapeCacheConstantDependent: pairs of texts whose verdicts differ only
// because of a constant. The first is judged (and cached) first; the second
// must still get its own verdict, on its first and every later run, and the
// first must keep its own afterwards.
func TestShapeCacheConstantDependent(t *testing.T) {
	tests := []struct {
		name          string
		access        spec.Access
		first, second string
		secondReason  string // substring of the second's refusal
	}{
		{"complementary OR", spec.Write,
			"DELETE FROM t WHERE id = 5 OR NOT id = 6",
			"DELETE FROM t WHERE id = 7 OR NOT id = 7", "unsafe write"},
		{"constant-true AND arm", spec.Write,
			"UPDATE t SET a = 1 WHERE id = 2 AND 1 = 2",
			"UPDATE t SET a = 1 WHERE id = 2 OR 1 = 1", "unsafe write"},
		{"EXPLAIN ANALYZE option", spec.Read,
			"EXPLAIN (ANALYZE 0) DELETE FROM t WHERE id = 1",
			"EXPLAIN (ANALYZE 1) DELETE FROM t WHERE id = 1", "data-modifying DELETE"},
		{"SET read-only value", spec.Read,
			"SET default_transaction_read_only = 1",
			"SET default_transaction_read_only = 0", ""},
		{"BEGIN read-only value", spec.Read,
			"SET TRANSACTION READ ONLY",
			"SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fresh := newGuard(t, tt.access, -1)
			want1, want2 := fresh.Check(tt.first), fresh.Check(tt.second)
			if !want1.Allowed || want2.Allowed {
				t.Fatalf("case premise: first allowed=%v (%s), second allowed=%v", want1.Allowed, want1.Reason, want2.Allowed)
			}
			if !strings.Contains(want2.Reason, tt.secondReason) {
				t.Fatalf("second refused for %q, want %q", want2.Reason, tt.secondReason)
			}
			g := newGuard(t, tt.access, 0)
			for run := 1; run <= 3; run++ {
				if v := g.Check(tt.first); !v.Allowed {
					t.Fatalf("run %d: first refused: %s", run, v.Reason)
				}
				if v := g.Check(tt.second); v.Allowed || v.Reason != want2.Reason {
					t.Fatalf("run %d: second allowed=%v reason %q, want refused %q", run, v.Allowed, v.Reason, want2.Reason)
				}
			}
		})
	}
}

// TestShapeCacheRefusedAlways: the brief's constant-carrying attacks are
// refused on the first and every later run, after a harmless sibling of the
// same shape was judged, and none of them is cached by shape.
func TestShapeCacheRefusedAlways(t *testing.T) {
	tests := []struct {
		access         spec.Access
		sibling, sql   string
		reason         string
		shapeCacheable bool
	}{
		{spec.Read, "SELECT current_setting('x', true)", "SELECT set_config('x','y',false)", "set_config", false},
		{spec.Read, "SELECT 'lower'::regproc", "SELECT 'pg_read_file'::regproc::oid, pg_read_file('/etc/passwd')", "pg_read_file", false},
		{spec.Read, "SELECT currval('s')", "SELECT nextval('s')", "nextval", false},
		{spec.Admin, "SELECT lo_get(1)", "SELECT lo_import('/etc/passwd')", "lo_import", false},
		{spec.Read, "SELECT a FROM t WHERE id = 1", "SELECT a FROM t WHERE id = 1 FOR UPDATE", "FOR UPDATE", true},
		{spec.Write, "DELETE FROM t WHERE id = 1", "DELETE FROM t WHERE id = 1 OR 1 = 1", "unsafe write", false},
		{spec.Write, "DELETE FROM t WHERE id = 1", "DELETE FROM t WHERE 2 = 2", "unsafe write", false},
		{spec.Read, "SELECT a FROM t WHERE id = 1", "UPDATE t SET a = 2 WHERE id = 3", "UPDATE", true},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			g := newGuard(t, tt.access, 0)
			g.Check(tt.sibling)
			for run := 1; run <= 3; run++ {
				v := g.Check(tt.sql)
				if v.Allowed || !strings.Contains(v.Reason, tt.reason) {
					t.Fatalf("run %d: allowed=%v reason %q, want refused with %q", run, v.Allowed, v.Reason, tt.reason)
				}
				if (v.Shape != "") != tt.shapeCacheable {
					t.Fatalf("run %d: Shape %q, cacheable want %v", run, v.Shape, tt.shapeCacheable)
				}
			}
		})
	}
}

// TestShapeCacheHits: pgbench's statements are judged once per shape, and a
// shape hit reports the text's own statement.
func TestShapeCacheHits(t *testing.T) {
	g := newGuard(t, spec.Write, 0)
	texts := []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = %d;",
		"UPDATE pgbench_accounts SET abalance = abalance + -%d WHERE aid = 17;",
		"UPDATE pgbench_tellers SET tbalance = tbalance + %d WHERE tid = 3;",
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, %d, -4, CURRENT_TIMESTAMP);",
	}
	for _, tmpl := range texts {
		var shape string
		for i := range 20 {
			sql := strings.Replace(tmpl, "%d", strings.Repeat("7", i+1), 1)
			v := g.Check(sql)
			if !v.Allowed || v.Shape == "" {
				t.Fatalf("%s: allowed=%v shape=%q reason=%s", sql, v.Allowed, v.Shape, v.Reason)
			}
			if shape == "" {
				shape = v.Shape
			} else if v.Shape != shape {
				t.Fatalf("%s: shape %q, earlier %q", sql, v.Shape, shape)
			}
			if got, want := v.Classification.Statements[0].SQL, strings.TrimSuffix(sql, ";"); got != want {
				t.Fatalf("statement SQL %q, want %q", got, want)
			}
		}
	}
	if n := guard.ParsesForTest(g); n != int64(len(texts)) {
		t.Fatalf("%d parses for %d shapes × 20 texts", n, len(texts))
	}
}

// TestShapeCacheCorpus is differential over the adversarial corpus: each
// case's text with its constants swapped for others (including ones that
// make it dangerous) is judged by a guard that has first seen the original,
// and must get exactly the verdict an uncached guard gives.
func TestShapeCacheCorpus(t *testing.T) {
	swaps := []string{"1", "0", "-1", "2.5", "'x'", "'off'", "'pg_read_file'", "NULL", "true", "'1'"}
	n := 0
	for _, c := range loadCases(t) {
		if c.Session || len(c.Setup) > 0 {
			continue
		}
		variants := constVariants(c.SQL, swaps)
		if len(variants) == 0 {
			continue
		}
		warm, fresh := c.guard(t), c.guardUncached(t)
		warm.Check(c.SQL)
		for _, v := range variants {
			got, want := warm.Check(v), fresh.Check(v)
			if got.Allowed != want.Allowed || got.Reason != want.Reason {
				t.Errorf("%q after %q: allowed=%v %q, uncached allowed=%v %q", v, c.SQL, got.Allowed, got.Reason, want.Allowed, want.Reason)
			}
			n++
		}
	}
	if n < 500 {
		t.Fatalf("only %d variants checked", n)
	}
}

// constVariants returns sql with each constant token in turn replaced by
// each of swaps, and all of them replaced by each of swaps.
func constVariants(sql string, swaps []string) []string {
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return nil
	}
	var spans [][2]int
	for _, tk := range scan.Tokens {
		switch tk.Token {
		case pg_query.Token_ICONST, pg_query.Token_FCONST, pg_query.Token_SCONST,
			pg_query.Token_BCONST, pg_query.Token_XCONST, pg_query.Token_USCONST:
			spans = append(spans, [2]int{int(tk.Start), int(tk.End)})
		}
	}
	if len(spans) == 0 {
		return nil
	}
	replace := func(which func(i int) bool, with string) string {
		var b strings.Builder
		prev := 0
		for i, s := range spans {
			if !which(i) {
				continue
			}
			b.WriteString(sql[prev:s[0]])
			b.WriteString(with)
			prev = s[1]
		}
		b.WriteString(sql[prev:])
		return b.String()
	}
	var out []string
	for _, w := range swaps {
		out = append(out, replace(func(int) bool { return true }, w))
		for i := range spans {
			if len(spans) > 1 {
				out = append(out, replace(func(j int) bool { return j == i }, w))
			}
		}
	}
	return out
}

// FuzzShapeCache: after any text a, any text b gets the verdict an uncached
// guard gives it.
func FuzzShapeCache(f *testing.F) {
	f.Add("SELECT a FROM t WHERE id = 1", "SELECT a FROM t WHERE id = 'x'")
	f.Add("DELETE FROM t WHERE id = 5 OR NOT id = 6", "DELETE FROM t WHERE id = 7 OR NOT id = 7")
	f.Add("UPDATE t SET a = a + -1 WHERE id = 2", "UPDATE t SET a = a + - 1 WHERE id = $1")
	f.Add("INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
	f.Add("SELECT 1 LIMIT 5", "SELECT 1 LIMIT ALL")
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, access := range []spec.Access{spec.Read, spec.Write} {
			warm, fresh := newGuard(t, access, 0), newGuard(t, access, -1)
			warm.Check(a)
			got, want := warm.Check(b), fresh.Check(b)
			if got.Allowed != want.Allowed || got.Reason != want.Reason {
				t.Fatalf("%s: %q after %q: allowed=%v %q, uncached allowed=%v %q", access, b, a, got.Allowed, got.Reason, want.Allowed, want.Reason)
			}
		}
	})
}

// guardUncached is c.guard with every cache off: the reference verdict.
func (c sqlCase) guardUncached(tb testing.TB) *guard.Guard {
	tb.Helper()
	access, err := spec.ParseAccess(c.Access)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := guard.Config{Access: access, CacheSize: -1}
	if c.Config != nil {
		cfg.DenyKinds, cfg.AllowKinds = c.Config.DenyKinds, c.Config.AllowKinds
		cfg.DenyFunctions, cfg.AllowFunctions = c.Config.DenyFunctions, c.Config.AllowFunctions
		cfg.AllowUnsafeWrites = c.Config.AllowUnsafeWrites
	}
	g, err := guard.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}
