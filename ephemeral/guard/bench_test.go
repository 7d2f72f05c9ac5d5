package guard_test

import (
	"strconv"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// benchSQL is a typical agent query: a join, a CTE, a function call.
const benchSQL = `WITH recent AS (SELECT user_id, sum(amount) AS total FROM orders WHERE amount > $1 GROUP BY user_id)
SELECT u.id, u.name, lower(u.email), r.total FROM users u JOIN recent r ON r.user_id = u.id
WHERE u.id = ANY($2) ORDER BY r.total DESC LIMIT 50`

// BenchmarkParseOnly is the baseline: pg_query's parse into Go structs,
// which every uncached Check pays.
func BenchmarkParseOnly(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := pg_query.Parse(benchSQL); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckUncached: parse + classify + verdict, cache disabled.
func BenchmarkCheckUncached(b *testing.B) {
	g, err := guard.New(guard.Config{Access: spec.Read, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := g.Check(benchSQL); !v.Allowed {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkCheckCached: the proxy's hot path, a repeated statement text.
func BenchmarkCheckCached(b *testing.B) {
	g, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		b.Fatal(err)
	}
	g.Check(benchSQL)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := g.Check(benchSQL); !v.Allowed {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkCheckCachedParallel: the cache under concurrent connections.
func BenchmarkCheckCachedParallel(b *testing.B) {
	g, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		b.Fatal(err)
	}
	sqls := make([]string, 64)
	for i := range sqls {
		sqls[i] = benchSQL + " OFFSET " + strconv.Itoa(i)
		g.Check(sqls[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if v := g.Check(sqls[i%len(sqls)]); !v.Allowed {
				b.Error(v.Reason)
				return
			}
			i++
		}
	})
}

// BenchmarkSessionCheckCached: a Session on a statement with no session
// effects costs the same as Guard.Check.
func BenchmarkSessionCheckCached(b *testing.B) {
	g, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		b.Fatal(err)
	}
	s := g.NewSession()
	s.Check(benchSQL)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := s.Check(benchSQL); !v.Allowed {
			b.Fatal(v.Reason)
		}
	}
}

// pgbenchSelect is pgbench -S's statement: simple protocol, so every
// statement carries its own literal and is a distinct text.
func pgbenchSelect(i int) string {
	return "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(1+i%1000000) + ";"
}

// BenchmarkDistinctLiteralsUncached is the baseline for distinct texts: no
// cache can help, every statement is parsed and classified.
func BenchmarkDistinctLiteralsUncached(b *testing.B) {
	g, err := guard.New(guard.Config{Access: spec.Read, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	s := g.NewSession()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := s.Check(pgbenchSelect(i)); !v.Allowed {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkDistinctLiteralsShape: the same distinct texts through the shape
// cache (Normalize, then the verdict of the first text of that shape).
func BenchmarkDistinctLiteralsShape(b *testing.B) {
	g, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		b.Fatal(err)
	}
	s := g.NewSession()
	s.Check(pgbenchSelect(-1))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := s.Check(pgbenchSelect(i)); !v.Allowed || v.Shape == "" {
			b.Fatal(v.Reason)
		}
	}
}
