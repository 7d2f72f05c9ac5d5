package record_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/postgres"
	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

const replaySeed = `
CREATE ROLE jg_replay LOGIN PASSWORD 'replay-pw-4c1e';
CREATE TABLE users (id int PRIMARY KEY, name text, card_number text, email text);
INSERT INTO users VALUES (1, 'alice', '4111111111111111', 'alice@example.com'),
                         (2, 'bob|pipe', '5500005555555559', NULL);
GRANT SELECT, DELETE ON users TO jg_replay;
`

// A real psql session through the real PostgreSQL engine, recorded with a
// signed v2 recorder: the recording verifies, and its replay shows what psql
// showed: the same rows (masked), the same refusal, the same values.
func TestReplayOfAPsqlSessionMatchesWhatTheClientSaw(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql is not installed")
	}
	ctx := context.Background()
	srv := pgtest.Start(t)
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE shop"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, "shop", replaySeed); err != nil {
		t.Fatal(err)
	}
	secret := "client-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	g := &spec.Grant{
		ID: "g-replay", Mode: spec.Session, Identity: "test#agent", Rule: "agents-read",
		Target:       spec.Target{Name: "shop", Protocol: spec.Postgres, Address: srv.Addr(), Database: "shop"},
		ClientSecret: spec.WireSecret(secret), Deadline: time.Now().Add(time.Hour),
		Credential: spec.Credential{Username: "jg_replay", Password: spec.WireSecret("replay-pw-4c1e"), LeaseID: "lease-replay"},
		Guard:      spec.Guard{Access: spec.Read},
		Mask:       spec.Mask{Columns: []string{"public.users.card_number"}, Detectors: []string{"email"}},
		Record:     spec.Record{Dir: t.TempDir()},
	}
	gd, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := mask.New(mask.Config{Columns: g.Mask.Columns, Detectors: g.Mask.Detectors})
	if err != nil {
		t.Fatal(err)
	}
	key := newSigner(t)
	rec, err := record.Create(ctx, record.Config{Dir: g.Record.Dir, Signer: key, Header: record.Header{GrantID: g.ID,
		Identity: g.Identity, Target: "shop", Rule: g.Rule, LeaseID: g.Credential.LeaseID, Version: "test", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := postgres.New(postgres.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = eng.Serve(sctx, c) }()
		}
	}()

	host, port, _ := net.SplitHostPort(ln.Addr().String())
	statements := []string{
		"SELECT id, name, card_number, email FROM users ORDER BY id",
		"DELETE FROM users",
		"SELECT count(*) AS n, NULL::text AS nothing FROM users",
	}
	args := []string{"-X", "-A", "-t", "-F", "|", "-h", host, "-p", port, "-U", g.ID, "-d", "shop"}
	for _, s := range statements {
		args = append(args, "-c", s)
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(pctx, "psql", args...)
	cmd.Env = []string{"PGPASSWORD=" + secret, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=20"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // psql exits 1 after the refused DELETE; the output is what matters
	stop()
	ln.Close()
	wg.Wait()
	eng.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}

	// What the client saw.
	if strings.Contains(stdout.String(), "4111111111111111") || strings.Contains(stdout.String(), "alice@example.com") {
		t.Fatalf("psql saw unmasked values:\n%s", stdout.String())
	}
	sawLines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	if len(sawLines) != 3 {
		t.Fatalf("psql printed %d lines, want 3 (2 rows, 1 count):\nstdout:\n%s\nstderr:\n%s", len(sawLines), stdout.String(), stderr.String())
	}

	// The recording verifies and holds the same.
	rep, err := record.VerifyFile(rec.Path(), record.VerifyOptions{PublicKey: key.PublicKey()})
	if err != nil || !rep.Complete || !rep.Signed {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	h, evs, err := record.ReadFile(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	var statementsSeen []string
	var blockedMsg string
	for _, ev := range evs {
		switch ev.Type {
		case record.Query:
			statementsSeen = append(statementsSeen, ev.Statement)
		case record.Rows:
			for _, row := range ev.Rows {
				cells := make([]string, len(row))
				for i, v := range row {
					if v != nil {
						cells[i] = *v
					}
				}
				recorded = append(recorded, strings.Join(cells, "|"))
			}
		case record.Error:
			// The first error is the refusal; the session's end may add one
			// (the test's own deadline) after it.
			if blockedMsg == "" {
				blockedMsg = ev.Error
			}
		}
	}
	if strings.Join(statementsSeen, "\n") != strings.Join(statements, "\n") {
		t.Errorf("recorded statements %q, psql sent %q", statementsSeen, statements)
	}
	if strings.Join(recorded, "\n") != strings.Join(sawLines, "\n") {
		t.Errorf("recorded rows:\n%s\npsql showed:\n%s", strings.Join(recorded, "\n"), strings.Join(sawLines, "\n"))
	}
	// The refusal: the message psql printed is the one recorded.
	_, msg, _ := strings.Cut(blockedMsg, " ")
	if msg == "" || !strings.Contains(stderr.String(), msg) {
		t.Errorf("recorded error %q; psql stderr:\n%s", blockedMsg, stderr.String())
	}

	// The transcript a human reads shows the same statements, values and refusal.
	var tr bytes.Buffer
	if err := record.WriteTranscript(&tr, h, evs, nil); err != nil {
		t.Fatal(err)
	}
	text := tr.String()
	for _, want := range append([]string{"BLOCKED:", "ERROR: " + blockedMsg, "SELECT 2", "SELECT 1", "(2 rows)", "session ended", "lease lease-replay"}, statements...) {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	for _, line := range sawLines {
		for _, cell := range strings.Split(line, "|") {
			if cell != "" && !strings.Contains(text, cell) {
				t.Errorf("transcript lacks the value %q psql showed", cell)
			}
		}
	}
	if strings.Contains(text, "4111111111111111") || strings.Contains(text, "alice@example.com") {
		t.Error("transcript holds unmasked values")
	}
}
