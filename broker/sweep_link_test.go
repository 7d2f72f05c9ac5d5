package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	launchlocal "github.com/jitgate/jitgate/broker/launch/local"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/bolt"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TestSweeperLinksRecordingOfAnOrphanedSession: the broker died while a
// session ran; its proxy stored the recording in the sink and exited with no
// one to hear it. The next broker's sweeper ends the overdue grant, revokes
// its credential, points the grant at the stored recording, audits
// recording.stored and the statements the recording holds — the blocked one
// by itself. A grant with no stored recording is ended without a link.
func TestSweeperLinksRecordingOfAnOrphanedSession(t *testing.T) {
	ctx := context.Background()
	p, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "grants.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	sinkDir, spool := filepath.Join(dir, "recordings"), filepath.Join(dir, "spool")
	sink, err := filesink.New(filesink.Config{Dir: sinkDir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	active := func() *grant.Grant {
		expires := now.Add(-10 * time.Minute)
		g := &grant.Grant{ID: grant.NewID(), Requester: "okta|agent", Target: "test-db", Protocol: spec.Postgres, Mode: spec.Session, Access: spec.Read,
			State: grant.Approved, TTL: time.Minute, CreatedAt: expires.Add(-time.Minute), UpdatedAt: expires.Add(-time.Minute)}
		if err := st.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		g, err := st.Update(ctx, g.ID, func(g *grant.Grant) error {
			g.LeaseID, g.ExpiresAt = "local:postgres:jg_"+strings.ToLower(g.ID[2:12]), expires
			return g.Transition(grant.Active, expires.Add(-time.Minute))
		})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	orphan, unrecorded := active(), active()

	// What the orphaned proxy left: a sealed recording, stored in the sink.
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	rec, err := record.Open(spool, record.Header{GrantID: orphan.ID, Mode: "session", Started: now.Add(-11 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	_ = rec.Write(record.Event{Time: now, Type: record.Verdict, Statement: "SELECT count(*) FROM orders", Allowed: &yes})
	_ = rec.Write(record.Event{Time: now, Type: record.Verdict, Statement: "DELETE FROM orders", Allowed: &no, Reason: "write on a read grant"})
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	stored, err := record.Upload(ctx, sink, rec.Path())
	if err != nil {
		t.Fatal(err)
	}

	src := &downSource{}
	ln, _ := launchlocal.New(launchlocal.Config{})
	svc, err := broker.New(broker.Config{Policy: p, Store: st, Audit: al, Sources: map[string]credentials.Source{"test-db": src},
		Launcher: ln, RecordDir: spool, Recordings: sink, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	rep := svc.Sweep(ctx)
	if rep.Ended != 2 || rep.Revoked != 2 || len(rep.Errors) != 0 {
		t.Fatalf("sweep %+v, want both overdue grants ended and revoked, no errors", rep)
	}
	g, err := st.Get(ctx, orphan.ID)
	if err != nil || g.RecordingPath != stored.Location || g.RecordingPath != filepath.Join(sinkDir, orphan.ID+record.Ext) {
		t.Fatalf("orphan's recording %q (%v), want %q", g.RecordingPath, err, stored.Location)
	}
	if g, _ := st.Get(ctx, unrecorded.ID); g.RecordingPath != "" {
		t.Errorf("a grant with no stored recording got %q", g.RecordingPath)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var stores, blocked int
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, `"type":"recording.stored"`) && strings.Contains(line, orphan.ID) && strings.Contains(line, `"actor":"sweeper"`) && strings.Contains(line, stored.Location) {
			stores++
		}
		if strings.Contains(line, `"type":"command.blocked"`) && strings.Contains(line, "DELETE FROM orders") {
			blocked++
		}
		if strings.Contains(line, "recording.stored") && strings.Contains(line, unrecorded.ID) {
			t.Errorf("recording.stored audited for the grant without one: %s", line)
		}
	}
	if stores != 1 || blocked != 1 {
		t.Errorf("audit: %d recording.stored by the sweeper, %d command.blocked; want 1 and 1:\n%s", stores, blocked, raw)
	}
	// A second sweep finds nothing more to do.
	if rep := svc.Sweep(ctx); rep.Ended != 0 || len(rep.Errors) != 0 {
		t.Errorf("second sweep %+v", rep)
	}
}
