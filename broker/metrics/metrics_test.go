package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/metrics"
)

func TestNilBrokerCountsNothing(t *testing.T) {
	var b *metrics.Broker
	// None of these may panic: a broker without metrics calls them all.
	b.Transition("approved", "allow")
	b.Decision("allow", time.Millisecond)
	b.SessionStarted()
	b.SessionEnded()
	b.IssueFailed("db")
	b.RevokeFailed("db")
	b.UploadFailed()
}

func TestCountersAndScrapeTimeGauges(t *testing.T) {
	spool := t.TempDir()
	for name, size := range map[string]int{"g_a.jgr": 100, "g_b.jgr": 23} {
		if err := os.WriteFile(filepath.Join(spool, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pending := 3
	b, err := metrics.New(metrics.Config{SpoolDir: spool, Pending: func(context.Context) (int, error) { return pending, nil }})
	if err != nil {
		t.Fatal(err)
	}
	b.Transition("approved", "allow")
	b.Transition("approved", "allow")
	b.Transition("pending", "approve")
	b.Decision("allow", 3*time.Millisecond)
	b.SessionStarted()
	b.SessionStarted()
	b.SessionEnded()
	b.IssueFailed("orders-db")
	b.RevokeFailed("orders-db")
	b.RevokeFailed("orders-db")
	b.UploadFailed()

	body := scrape(t, b)
	for _, want := range []string{
		`jitgate_grant_transitions_total{effect="allow",state="approved"} 2`,
		`jitgate_grant_transitions_total{effect="approve",state="pending"} 1`,
		`jitgate_policy_decision_seconds_count{effect="allow"} 1`,
		`jitgate_policy_decision_seconds_bucket{effect="allow",le="0.005"} 1`,
		`jitgate_policy_decision_seconds_bucket{effect="allow",le="0.0025"} 0`,
		`jitgate_active_sessions 1`,
		`jitgate_credential_issue_failures_total{target="orders-db"} 1`,
		`jitgate_credential_revoke_failures_total{target="orders-db"} 2`,
		`jitgate_recording_upload_failures_total 1`,
		`jitgate_recording_spool_bytes 123`,
		`jitgate_recording_spool_files 2`,
		`jitgate_approvals_pending 3`,
		`go_goroutines `,
		`process_open_fds `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// Scrape-time gauges follow their source.
	pending = 0
	if err := os.Remove(filepath.Join(spool, "g_a.jgr")); err != nil {
		t.Fatal(err)
	}
	body = scrape(t, b)
	for _, want := range []string{"jitgate_approvals_pending 0\n", "jitgate_recording_spool_bytes 23\n", "jitgate_recording_spool_files 1\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("second scrape lacks %q", want)
		}
	}
}

// A gauge that cannot be read fails the scrape loudly instead of reporting a
// made-up zero.
func TestUnreadableSourcesAreNotZero(t *testing.T) {
	b, err := metrics.New(metrics.Config{
		SpoolDir: filepath.Join(t.TempDir(), "missing"),
		Pending:  func(context.Context) (int, error) { return 0, errors.New("store closed") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Registry().Gather(); err == nil || !strings.Contains(err.Error(), "store closed") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("gather: %v, want errors naming the store and the spool", err)
	}
	body := scrape(t, b)
	for _, absent := range []string{"jitgate_approvals_pending 0", "jitgate_recording_spool_files 0"} {
		if strings.Contains(body, absent) {
			t.Errorf("scrape reports %q for a source it could not read", absent)
		}
	}
}

func scrape(t *testing.T, b *metrics.Broker) string {
	t.Helper()
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}
