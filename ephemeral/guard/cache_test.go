package guard

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TestCacheSkipsParse: the second Check of the same text is served from the
// cache without parsing; different text, a disabled cache and eviction parse.
func TestCacheSkipsParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cacheSize int
		sqls      []string
		parses    int64
	}{
		{"same text twice", 0, []string{"SELECT 1", "SELECT 1"}, 1},
		{"text differs by a space", 0, []string{"SELECT 1", "SELECT  1"}, 2},
		{"refusals are cached too", 0, []string{"DROP TABLE users", "DROP TABLE users"}, 1},
		{"unparseable input is cached too", 0, []string{"SELEC 1", "SELEC 1"}, 1},
		{"cache disabled", -1, []string{"SELECT 1", "SELECT 1"}, 2},
		{"other constants, same shape", 0, []string{"SELECT 1", "SELECT 2", "SELECT 'x'"}, 1},
		{"shape cache disabled with the cache", -1, []string{"SELECT 1", "SELECT 2"}, 2},
		{"evicted by LRU", 2, []string{"SELECT a", "SELECT b", "SELECT c", "SELECT a"}, 4},
		{"recently used survives", 2, []string{"SELECT a", "SELECT b", "SELECT a", "SELECT c", "SELECT a"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := New(Config{Access: spec.Read, CacheSize: tt.cacheSize})
			if err != nil {
				t.Fatal(err)
			}
			var first Verdict
			for i, q := range tt.sqls {
				v := g.Check(q)
				if i == 0 {
					first = v
				} else if q == tt.sqls[0] && (v.Allowed != first.Allowed || v.Reason != first.Reason) {
					t.Fatalf("cached verdict differs: %+v vs %+v", v, first)
				}
			}
			if got := g.parses.Load(); got != tt.parses {
				t.Fatalf("parses = %d, want %d", got, tt.parses)
			}
		})
	}
}

// TestCacheSessionState: a cached entry must not carry one session's state
// into another.
func TestCacheSessionState(t *testing.T) {
	t.Parallel()
	g, err := New(Config{Access: spec.Read})
	if err != nil {
		t.Fatal(err)
	}
	a, b := g.NewSession(), g.NewSession()
	if v := a.Check("PREPARE p AS SELECT 1"); !v.Allowed {
		t.Fatal(v.Reason)
	}
	if v := a.Check("EXECUTE p"); !v.Allowed {
		t.Fatalf("session a: %s", v.Reason)
	}
	if v := b.Check("EXECUTE p"); v.Allowed {
		t.Fatal("session b executed a statement only session a prepared")
	}
	if v := g.Check("EXECUTE p"); v.Allowed {
		t.Fatal("stateless Check executed a prepared statement")
	}
	if got := g.parses.Load(); got != 2 {
		t.Fatalf("parses = %d, want 2", got)
	}
}

// TestCheckConcurrent hammers one Guard from many goroutines (run with -race).
func TestCheckConcurrent(t *testing.T) {
	t.Parallel()
	g, err := New(Config{Access: spec.Write, CacheSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				q := fmt.Sprintf("DELETE FROM users WHERE id = %d", i%16)
				if v := g.Check(q); !v.Allowed {
					errs <- fmt.Errorf("worker %d: %q refused: %s", w, q, v.Reason)
					return
				}
				if v := g.Check("DELETE FROM users"); v.Allowed {
					errs <- fmt.Errorf("worker %d: unsafe delete allowed", w)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
