package harness_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/bench/harness"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// TestAuditStages writes a real audit log with broker/audit and reads the
// stage timings back the way the harness does after exec runs.
func TestAuditStages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	calls := 0
	clock := func() time.Time { calls++; return t0.Add(time.Duration(calls) * 10 * time.Millisecond) }
	l, err := audit.Open(path, audit.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []audit.Event{
		{Type: audit.GrantRequested, GrantID: "g1", Statement: "SELECT 1", Detail: `mode=exec access=read reason=""`},
		{Type: audit.GrantDecided, GrantID: "g1", StageMillis: map[string]float64{"policy": 1.5}},
		{Type: audit.GrantRequested, GrantID: "g2", Detail: `mode=session access=write reason="x"`},
		{Type: audit.CredentialIssued, GrantID: "g1", LeaseID: "local:postgres:jg_x"},
		{Type: audit.SessionEnded, GrantID: "g1", StageMillis: map[string]float64{"credential": 40, "launch_and_run": 100, "revoke": 30}},
		{Type: audit.SessionStarted, GrantID: "g2", StageMillis: map[string]float64{"credential": 20, "launch": 50}},
	} {
		if _, err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gs, err := harness.AuditStages(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[0].GrantID != "g1" || gs[1].GrantID != "g2" {
		t.Fatalf("grants %+v", gs)
	}
	g1 := gs[0]
	if g1.Mode != "exec" || g1.Statement != "SELECT 1" {
		t.Errorf("g1 mode %q statement %q", g1.Mode, g1.Statement)
	}
	want := map[string]float64{"policy": 1.5, "credential": 40, "launch_and_run": 100, "revoke": 30}
	if len(g1.Stages) != len(want) {
		t.Errorf("g1 stages %v, want %v", g1.Stages, want)
	}
	for k, v := range want {
		if g1.Stages[k] != v {
			t.Errorf("g1 %s = %v, want %v", k, g1.Stages[k], v)
		}
	}
	// g1's events are the 1st and 5th appended: a span of 40ms.
	if span := g1.Last.Sub(g1.First); span != 40*time.Millisecond {
		t.Errorf("g1 span %v (%v .. %v), want 40ms", span, g1.First, g1.Last)
	}
	if gs[1].Mode != "session" || gs[1].Stages["launch"] != 50 {
		t.Errorf("g2 %+v", gs[1])
	}
}

func TestAuditStagesRefusesAForeignLine(t *testing.T) {
	t.Parallel()
	_, err := harness.AuditStages(strings.NewReader("{\"seq\":1,\"type\":\"grant.requested\",\"grant_id\":\"g\"}\nnot json\n"))
	if err == nil || !strings.Contains(err.Error(), "audit line 2") {
		t.Fatalf("err = %v, want one naming line 2", err)
	}
}

// TestMeasureRecording writes a real v2 recording and measures it.
func TestMeasureRecording(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	rec, err := record.Create(ctx, record.Config{Dir: dir, Header: record.Header{GrantID: "g_bench", Identity: "dev:bench", Target: "bench-db", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	v := "42"
	const statements = 500
	for i := range statements {
		sql := "SELECT abalance FROM pgbench_accounts WHERE aid = " + string(rune('0'+i%10))
		for _, ev := range []record.Event{
			{Type: record.Query, Conn: 1, Statement: sql},
			{Type: record.Verdict, Conn: 1, Allowed: &yes},
			{Type: record.Rows, Conn: 1, Columns: []string{"abalance"}, Rows: [][]*string{{&v}}, RowCount: 1},
			{Type: record.Result, Conn: 1, Tag: "SELECT 1"},
		} {
			if err := rec.Write(ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := harness.MeasureRecording(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(rec.Path())
	switch {
	case got.Statements != statements:
		t.Errorf("statements = %d, want %d", got.Statements, statements)
	case got.Events != 4*statements+2: // + started and ended
		t.Errorf("events = %d, want %d", got.Events, 4*statements+2)
	case got.Bytes != st.Size():
		t.Errorf("bytes = %d, file is %d", got.Bytes, st.Size())
	case !got.Complete:
		t.Error("a closed recording must be complete")
	case got.RawBytes <= got.Bytes:
		t.Errorf("raw %d <= stored %d: a repetitive session must compress", got.RawBytes, got.Bytes)
	}
}

func TestMeasureRecordingRefusesADamagedFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	rec, err := record.Create(ctx, record.Config{Dir: dir, Header: record.Header{GrantID: "g_bad", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Write(record.Event{Type: record.Query, Conn: 1, Statement: "SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(rec.Path(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.MeasureRecording(rec.Path()); err == nil {
		t.Fatal("a damaged recording was measured without error")
	}
	if _, err := harness.MeasureRecording(filepath.Join(dir, "missing.jgr")); err == nil {
		t.Fatal("a missing recording was measured without error")
	}
}

func TestTailEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		ev := audit.Event{Type: audit.CommandAllowed, GrantID: "g1", Statement: strings.Repeat("x", i)}
		if i == 199 {
			ev = audit.Event{Type: audit.SessionEnded, GrantID: "g1"}
		}
		if _, err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := harness.TailEvents(path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || len(evs) > 30 {
		t.Fatalf("%d events in the last 4 KiB", len(evs))
	}
	if last := evs[len(evs)-1]; last.Type != audit.SessionEnded || last.Seq != 200 {
		t.Fatalf("last event %+v, want session.ended seq 200", last)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("events out of order or skipped: %d then %d", evs[i-1].Seq, evs[i].Seq)
		}
	}
	all, err := harness.TailEvents(path, 1<<30)
	if err != nil || len(all) != 200 || all[0].Seq != 1 {
		t.Fatalf("whole log: %d events, %v", len(all), err)
	}

	// A line still being written is left for the next poll, not an error.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":201,"time":"2026-`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	evs, err = harness.TailEvents(path, 4096)
	if err != nil || evs[len(evs)-1].Seq != 200 {
		t.Fatalf("with a partial last line: %v, last %+v", err, evs[len(evs)-1])
	}
	if _, err := harness.TailEvents(filepath.Join(t.TempDir(), "none"), 10); err == nil {
		t.Fatal("a missing log is an error")
	}
}
