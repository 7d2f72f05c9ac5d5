package soak

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/test/soak/harness"
)

// load is one soak run's shape.
type load struct {
	Grants   int           // concurrent session grants, one proxy process each
	Duration time.Duration // how long every grant keeps querying
	// Slack is the growth in broker goroutines and fds tolerated after the
	// run (idle keep-alive connections, the admin connection pool).
	Slack int
}

// loadReport is what a run measured.
type loadReport struct {
	Queries, Errors               int64
	FirstErrors                   []string
	GoroutinesBefore, Goroutines  float64 // broker, from its /metrics
	GoroutinesPeak                float64
	FDsBefore, FDs, FDsPeak       float64
	ProxyRSS                      []int64 // bytes, one per proxy, sampled mid-run
	ProxyAnon                     []int64 // of which anonymous (private heap and stacks)
	BrokerRSSBefore, BrokerRSSEnd float64
	Elapsed                       time.Duration
}

func (r loadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "queries %d (%.0f/s), errors %d\n", r.Queries, float64(r.Queries)/r.Elapsed.Seconds(), r.Errors)
	fmt.Fprintf(&b, "broker goroutines: before %.0f, peak %.0f, after %.0f\n", r.GoroutinesBefore, r.GoroutinesPeak, r.Goroutines)
	fmt.Fprintf(&b, "broker open fds:   before %.0f, peak %.0f, after %.0f\n", r.FDsBefore, r.FDsPeak, r.FDs)
	fmt.Fprintf(&b, "broker RSS: before %.1f MiB, after %.1f MiB\n", r.BrokerRSSBefore/(1<<20), r.BrokerRSSEnd/(1<<20))
	for _, m := range []struct {
		name string
		v    []int64
	}{{"proxy RSS", r.ProxyRSS}, {"proxy RSS anonymous", r.ProxyAnon}} {
		v := append([]int64(nil), m.v...)
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		if n := len(v); n > 0 {
			var sum int64
			for _, x := range v {
				sum += x
			}
			fmt.Fprintf(&b, "%s (%d processes): min %.1f MiB, median %.1f MiB, max %.1f MiB, total %.0f MiB\n", m.name, n,
				float64(v[0])/(1<<20), float64(v[n/2])/(1<<20), float64(v[n-1])/(1<<20), float64(sum)/(1<<20))
		}
	}
	return b.String()
}

// runLoad opens l.Grants session grants on soak-db (guard, detector masking
// and a signed recording on), has each query through its own proxy for
// l.Duration, ends them all, and checks: no query failed, every grant ended
// with its credential revoked and no role left, and the broker's goroutines
// and open fds returned to where they were (within l.Slack).
func runLoad(t *testing.T, l load) loadReport {
	t.Helper()
	s := harness.Start(t, harness.Options{Bin: bin, Metrics: true})
	if need := 2*l.Grants + 50; need > 300 {
		// Each proxy holds two upstream connections (the client's and the
		// masking catalog's); pgtest starts PostgreSQL with 300.
		s.StopPG()
		s.StartPG(fmt.Sprintf("-c max_connections=%d", need))
	}
	ctx := context.Background()
	agent := s.Token("agent-soak", "ai-agents")
	var rep loadReport

	// Warm up: the first session initialises what lives for the process
	// (the issuer's key set, the admin connection, the HTTP server's pools).
	warm, err := s.OpenSession(agent, "soak-db", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	endSession(t, s, agent, warm.GrantID)
	before := settled(t, s, nil, 0)
	rep.GoroutinesBefore, rep.FDsBefore = before.Get("go_goroutines", nil), before.Get("process_open_fds", nil)
	rep.BrokerRSSBefore = before.Get("process_resident_memory_bytes", nil)

	started := time.Now()
	sessions := make([]*harness.Session, l.Grants)
	var wg sync.WaitGroup
	var queries, errs atomic.Int64
	var errMu sync.Mutex
	fail := func(err error) {
		errs.Add(1)
		errMu.Lock()
		if len(rep.FirstErrors) < 10 {
			rep.FirstErrors = append(rep.FirstErrors, err.Error())
		}
		errMu.Unlock()
	}
	opened := make(chan struct{}, l.Grants)
	gate := make(chan struct{}, 16) // opening is bursty work for the broker; queries are not gated
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gate <- struct{}{}
			sess, err := s.OpenSession(agent, "soak-db", l.Duration+2*time.Minute)
			var conn *pgx.Conn
			if err == nil {
				sessions[i] = sess // ended below whatever happens next
				conn, err = pgx.Connect(ctx, sess.DSN)
			}
			<-gate
			opened <- struct{}{}
			if err != nil {
				fail(fmt.Errorf("grant %d: %w", i, err))
				return
			}
			defer conn.Close(ctx)
			stop := time.Now().Add(l.Duration)
			for q := 0; time.Now().Before(stop); q++ {
				var err error
				if q%2 == 0 {
					var n int
					err = conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE amount > $1", q%100).Scan(&n)
				} else {
					var email string
					err = conn.QueryRow(ctx, "SELECT email FROM users WHERE id = 1").Scan(&email)
					if err == nil && strings.Contains(email, "ada@example.com") {
						err = fmt.Errorf("unmasked email %q", email)
					}
				}
				if err != nil {
					fail(fmt.Errorf("grant %d query %d: %w", i, q, err))
					return
				}
				queries.Add(1)
			}
		}()
	}
	// Sample once every grant is open: proxies' memory and the broker's peak.
	for range sessions {
		<-opened
	}
	for _, pid := range s.ProxyPIDs() {
		if rss, anon, err := harness.RSS(pid); err == nil {
			rep.ProxyRSS, rep.ProxyAnon = append(rep.ProxyRSS, rss), append(rep.ProxyAnon, anon)
		}
	}
	peak := s.ScrapeBroker()
	rep.GoroutinesPeak, rep.FDsPeak = peak.Get("go_goroutines", nil), peak.Get("process_open_fds", nil)
	wg.Wait()
	rep.Elapsed = time.Since(started)
	rep.Queries, rep.Errors = queries.Load(), errs.Load()

	var ewg sync.WaitGroup
	for _, sess := range sessions {
		if sess == nil {
			continue
		}
		ewg.Add(1)
		go func() {
			defer ewg.Done()
			gate <- struct{}{}
			defer func() { <-gate }()
			endSession(t, s, agent, sess.GrantID)
		}()
	}
	ewg.Wait()
	if pids := s.ProxyPIDs(); len(pids) != 0 {
		t.Errorf("%d proxy processes still running after every session ended", len(pids))
	}
	if roles := s.Roles(); len(roles) != 0 {
		t.Errorf("%d per-grant roles left behind", len(roles))
	}
	after := settled(t, s, before, l.Slack)
	rep.Goroutines, rep.FDs = after.Get("go_goroutines", nil), after.Get("process_open_fds", nil)
	rep.BrokerRSSEnd = after.Get("process_resident_memory_bytes", nil)
	if rep.Errors != 0 {
		t.Errorf("%d errors; first: %v", rep.Errors, rep.FirstErrors)
	}
	if rep.Queries < int64(l.Grants) {
		t.Errorf("only %d queries for %d grants", rep.Queries, l.Grants)
	}
	if len(rep.ProxyRSS) != l.Grants {
		t.Errorf("measured %d proxy processes mid-run, want %d", len(rep.ProxyRSS), l.Grants)
	}
	return rep
}

// endSession ends a session grant and waits until it is ended with its
// credential revoked.
func endSession(t *testing.T, s *harness.Stack, tok, id string) {
	code, g, err := s.API(tok, "POST", "/v1/grants/"+id+"/end", nil)
	if err != nil || code != 200 {
		t.Errorf("end %s: %d %v %v", id, code, g, err)
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, g, err := s.API(tok, "GET", "/v1/grants/"+id, nil)
		if err == nil && g["state"] == "ended" && g["credential_revoked"] == true {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("grant %s not ended and revoked: %v %v", id, g, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settled scrapes the broker until its goroutines and fds stop moving (and,
// with a baseline, are back within slack of it), closing the test client's
// idle keep-alive connections first so they do not count as the broker's.
func settled(t *testing.T, s *harness.Stack, base harness.Metrics, slack int) harness.Metrics {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var lastG, lastF float64 = -1, -1
	for {
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(300 * time.Millisecond)
		m := s.ScrapeBroker()
		g, f := m.Get("go_goroutines", nil), m.Get("process_open_fds", nil)
		stable := g == lastG && f == lastF
		within := base == nil || (g <= base.Get("go_goroutines", nil)+float64(slack) && f <= base.Get("process_open_fds", nil)+float64(slack))
		if stable && within {
			return m
		}
		if time.Now().After(deadline) {
			if base != nil {
				t.Errorf("broker did not return to its baseline: goroutines %.0f (was %.0f), fds %.0f (was %.0f), slack %d",
					g, base.Get("go_goroutines", nil), f, base.Get("process_open_fds", nil), slack)
			}
			return m
		}
		lastG, lastF = g, f
	}
}
