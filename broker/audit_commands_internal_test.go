package broker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// TestAuditCommandsGroupsAllowedAndKeepsEveryBlock: every blocked statement is
// audited on its own; allowed ones are grouped by text, capped, and the rest
// summarised with a pointer to the recording.
func TestAuditCommandsGroupsAllowedAndKeepsEveryBlock(t *testing.T) {
	dir := t.TempDir()
	rec, err := record.Open(dir, record.Header{GrantID: "g_1", Mode: "session", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	for i := 0; i < 3*maxAllowedAuditEvents; i++ {
		_ = rec.Write(record.Event{Time: time.Now(), Type: record.Verdict, Statement: fmt.Sprintf("SELECT %d", i), Allowed: &yes})
		_ = rec.Write(record.Event{Time: time.Now(), Type: record.Verdict, Statement: "SELECT 1", Allowed: &yes})
	}
	for i := 0; i < 5; i++ {
		_ = rec.Write(record.Event{Time: time.Now(), Type: record.Verdict, Statement: fmt.Sprintf("DELETE FROM t -- %d", i), Allowed: &no, Reason: "write on a read grant"})
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "audit.jsonl")
	al, err := audit.Open(logPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: Config{Audit: al, Logger: slog.New(slog.DiscardHandler)}}
	s.auditCommands(context.Background(), &grant.Grant{ID: "g_1", Target: "db", Requester: "agent"}, rec.Path())
	al.Close()
	raw, _ := os.ReadFile(logPath)
	log := string(raw)
	if n := strings.Count(log, `"command.blocked"`); n != 5 {
		t.Errorf("%d blocked events, want 5 (one per refusal)", n)
	}
	if n := strings.Count(log, `"command.allowed"`); n != maxAllowedAuditEvents+1 {
		t.Errorf("%d allowed events, want %d plus one summary", n, maxAllowedAuditEvents)
	}
	if !strings.Contains(log, `"detail":"601 times"`) {
		t.Errorf("the repeated statement carries no count")
	}
	if !strings.Contains(log, "more allowed statement(s)") || !strings.Contains(log, rec.Path()) {
		t.Errorf("no summary pointing at the recording")
	}
	f, _ := os.Open(logPath)
	defer f.Close()
	if _, err := audit.Verify(f); err != nil {
		t.Fatalf("chain: %v", err)
	}
}
