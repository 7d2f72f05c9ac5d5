package soak

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/broker/metrics"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/test/soak/harness"
)

// TestMetricsMoveWithRealOperations scrapes the broker's and one proxy's
// /metrics around real operations and checks each counter moved by exactly
// what was done.
func TestMetricsMoveWithRealOperations(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Bin: bin, Metrics: true})
	ctx := context.Background()
	agent := s.Token("agent-m", "ai-agents")
	before := s.ScrapeBroker()
	for _, name := range []string{"go_goroutines", "process_open_fds", metrics.SpoolBytes, metrics.SpoolFiles, metrics.ApprovalsPending} {
		if _, ok := before.Value(name, nil); !ok {
			t.Errorf("broker metrics lack %s", name)
		}
	}

	sess, err := s.OpenSession(agent, "orders-db", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ScrapeBroker().Get(metrics.ActiveSessions, nil); got != 1 {
		t.Errorf("%s = %v with one session open, want 1", metrics.ActiveSessions, got)
	}
	conn, err := pgx.Connect(ctx, sess.DSN)
	if err != nil {
		t.Fatal(err)
	}
	var email string
	if err := conn.QueryRow(ctx, "SELECT email FROM users WHERE id = 1").Scan(&email); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(email, "ada@example.com") {
		t.Fatalf("email came back unmasked: %q", email)
	}
	_, err = conn.Exec(ctx, "DELETE FROM orders WHERE id = 1")
	if err == nil || !strings.Contains(err.Error(), "blocked by policy") {
		t.Fatalf("DELETE: err %v, want blocked by policy", err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}

	pm, err := harness.Scrape(s.ProxyMetricsAddr(sess.GrantID))
	if err != nil {
		t.Fatal(err)
	}
	grant := map[string]string{"grant": sess.GrantID}
	rule := "agents-read-orders"
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{session.MetricStatements, map[string]string{"grant": sess.GrantID, "rule": rule, "verdict": "blocked"}, 1},
		{session.MetricConnections, grant, 1},
		{session.MetricConnsTotal, grant, 1},
	} {
		if got := pm.Get(c.name, c.labels); got != c.want {
			t.Errorf("proxy %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// pgx sends its own statements too (none here beyond ours, but catalog
	// lookups are the proxy's, not the client's): at least our two.
	if got := pm.Get(session.MetricStatements, map[string]string{"rule": rule, "verdict": "allowed"}); got < 2 {
		t.Errorf("allowed statements = %v, want >= 2", got)
	}
	if got := pm.Get(session.MetricMasked, grant); got < 1 {
		t.Errorf("masked values = %v, want >= 1 (the email)", got)
	}
	for _, dir := range []string{"from_client", "to_client"} {
		if got := pm.Get(session.MetricBytes, map[string]string{"direction": dir}); got <= 0 {
			t.Errorf("bytes relayed %s = %v, want > 0", dir, got)
		}
	}
	if _, ok := pm.Value("process_resident_memory_bytes", nil); !ok {
		t.Errorf("proxy metrics lack process_resident_memory_bytes")
	}
	conn.Close(ctx)

	if code, g, err := s.API(agent, "POST", "/v1/grants/"+sess.GrantID+"/end", nil); err != nil || code != 200 || g["state"] != "ended" {
		t.Fatalf("end session: %d %v %v", code, g, err)
	}
	// A write on test-db waits for a dba; a relay-db session meets its
	// credential source down.
	if code, g, err := s.API(agent, "POST", "/v1/grants", map[string]any{"target": "test-db", "sql": "DELETE FROM orders WHERE id = 4"}); err != nil || code != 202 {
		t.Fatalf("pending request: %d %v %v", code, g, err)
	}
	s.AdminRelay.Down()
	if _, err := s.OpenSession(agent, "relay-db", time.Minute); err == nil {
		t.Fatal("a session opened with its credential source down")
	}
	after := s.ScrapeBroker()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{metrics.GrantTransitions, map[string]string{"state": "approved", "effect": "allow"}, 2},
		{metrics.GrantTransitions, map[string]string{"state": "active", "effect": "allow"}, 2},
		{metrics.GrantTransitions, map[string]string{"state": "ended", "effect": "allow"}, 1},
		{metrics.GrantTransitions, map[string]string{"state": "failed", "effect": "allow"}, 1},
		{metrics.GrantTransitions, map[string]string{"state": "pending", "effect": "approve"}, 1},
		{metrics.DecisionSeconds, map[string]string{"effect": "allow"}, 2},
		{metrics.DecisionSeconds, map[string]string{"effect": "approve"}, 1},
		{metrics.ActiveSessions, nil, 0},
		{metrics.ApprovalsPending, nil, 1},
		{metrics.CredentialIssueFail, map[string]string{"target": "relay-db"}, 1},
		{metrics.CredentialRevokeFail, nil, 0},
	} {
		if got := after.Get(c.name, c.labels) - before.Get(c.name, c.labels); c.name != metrics.ActiveSessions && c.name != metrics.ApprovalsPending && got != c.want {
			t.Errorf("broker %s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		} else if (c.name == metrics.ActiveSessions || c.name == metrics.ApprovalsPending) && after.Get(c.name, nil) != c.want {
			t.Errorf("broker %s = %v, want %v", c.name, after.Get(c.name, nil), c.want)
		}
	}
}
