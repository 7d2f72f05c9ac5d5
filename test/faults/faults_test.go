// Package faults breaks a running jitgate stack (test/soak/harness: the real
// broker binary, its proxy processes, a real PostgreSQL) in the ways
// production breaks, and checks that nothing is lost or left behind:
// PostgreSQL restarted mid-session, the credential source down at issue time,
// revocation failing, the broker SIGKILLed mid-approval, a proxy SIGKILLed, the
// recording spool unwritable. Each test says what the client sees, what state
// the grant ends in, what happened to the credential and what the audit says.
package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/broker/metrics"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/test/soak/harness"
	"github.com/jitgate/jitgate/test/stack"
)

var bin string

func TestMain(m *testing.M) { os.Exit(stack.Main(m, "faults", &bin)) }

// start runs a stack whose sweeper and spool flush run often, so recovery is
// observed in seconds rather than minutes.
func start(t *testing.T) *harness.Stack {
	t.Helper()
	return startArgs(t)
}

// startArgs is start with more `broker serve` flags.
func startArgs(t *testing.T, args ...string) *harness.Stack {
	t.Helper()
	return harness.Start(t, harness.Options{Bin: bin, Metrics: true,
		Args: append([]string{"--sweep-every", "200ms", "--spool-flush-every", "200ms", "--spool-flush-age", "1s"}, args...)})
}

// connect opens a read session on target as agent and connects to its
// proxy; a first statement, sql (if not empty), must succeed. The
// connection is closed when the test ends, if the test has not closed it.
func connect(t *testing.T, s *harness.Stack, agent, target string, ttl time.Duration, sql string) (*harness.Session, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	sess, err := s.OpenSession(agent, target, ttl)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, sess.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if sql != "" {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	return sess, conn
}

// noRolesLeft fails the test if a per-grant role is still in the cluster.
func noRolesLeft(t *testing.T, s *harness.Stack) {
	t.Helper()
	if roles := s.Roles(); len(roles) != 0 {
		t.Errorf("roles left behind: %v", roles)
	}
}

func terminal(g map[string]any) bool {
	switch g["state"] {
	case "ended", "failed", "expired", "denied", "revoked":
		return true
	}
	return false
}

func revoked(g map[string]any) bool { return g["credential_revoked"] == true }

// events lists the audit event types of one grant, in order.
func events(s *harness.Stack, id string) []string {
	var out []string
	for _, ev := range s.Audit(id) {
		out = append(out, ev.Type)
	}
	return out
}

func auditDetail(s *harness.Stack, id, typ string) (string, bool) {
	for _, ev := range s.Audit(id) {
		if ev.Type == typ {
			return ev.Detail, true
		}
	}
	return "", false
}

// TestPostgresRestartMidSession: PostgreSQL goes down under a live session.
// The client gets PostgreSQL's own shutdown error through the proxy; the
// proxy ends the session by itself (its target went away) while the
// database is still down, so the grant fails with that reason, revocation fails
// (audited, with the role's own expiry); once the database is back the
// sweeper revokes it and the role is gone.
func TestPostgresRestartMidSession(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	agent := s.Token("agent-pg", "ai-agents")
	sess, conn := connect(t, s, agent, "soak-db", time.Minute, "")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 4 {
		t.Fatalf("before the restart: %d, %v", n, err)
	}

	s.StopPG()
	_, err := conn.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("a query succeeded with PostgreSQL down")
	}
	if msg := err.Error(); !strings.Contains(msg, "terminating connection due to administrator command") && !strings.Contains(msg, "57P01") {
		t.Errorf("client error is not PostgreSQL's shutdown notice: %v", err)
	}
	// A new connection through the proxy is refused with the reason.
	if c2, err := pgx.Connect(ctx, sess.DSN); err == nil {
		c2.Close(ctx)
		t.Error("a new connection succeeded with PostgreSQL down")
	}

	// Nobody ends the session: the proxy ends it on its own when its target
	// goes away, and the grant fails with the reason.
	g := s.WaitGrant(agent, sess.GrantID, 30*time.Second, func(g map[string]any) bool { return terminal(g) && g["revoke_error"] != nil })
	if g["state"] != "failed" || revoked(g) || g["revoke_error"] == nil {
		t.Fatalf("with the database down: state %v revoked %v revoke_error %v, want failed, false, an error", g["state"], g["credential_revoked"], g["revoke_error"])
	}
	if e, _ := g["error"].(string); !strings.Contains(e, "the target went away") {
		t.Errorf("grant error %q does not say the target went away", e)
	}
	if d, ok := auditDetail(s, sess.GrantID, "credential.revoke_failed"); !ok || !strings.Contains(d, "expires at") {
		t.Errorf("audit lacks credential.revoke_failed with the expiry: %q %v", d, events(s, sess.GrantID))
	}
	s.StartPG()
	g = s.WaitGrant(agent, sess.GrantID, 30*time.Second, revoked)
	if !revoked(g) {
		t.Fatalf("credential not revoked after PostgreSQL came back: %v", g)
	}
	if d, ok := auditDetail(s, sess.GrantID, "credential.revoked"); !ok || !strings.Contains(d, "revoked on retry") {
		t.Errorf("audit lacks the sweeper's credential.revoked: %q %v", d, events(s, sess.GrantID))
	}
	noRolesLeft(t, s)
}

// TestCredentialSourceDownAtIssue: the credential source (the admin
// connection of relay-db) is unreachable when a session and an exec grant
// are used. Both are refused with the reason, end failed (never stuck
// approved, active or pending), no role exists, and the same target works
// once the source is back.
func TestCredentialSourceDownAtIssue(t *testing.T) {
	t.Parallel()
	s := start(t)
	agent := s.Token("agent-src", "ai-agents")
	s.AdminRelay.Down()

	sess, err := s.OpenSession(agent, "relay-db", time.Minute)
	if err == nil {
		t.Fatal("a session opened with its credential source down")
	}
	if !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "issue credential for relay-db") {
		t.Errorf("session refusal does not say why: %v", err)
	}
	code, g, err := s.API(agent, "POST", "/v1/grants", map[string]any{"target": "relay-db", "sql": "SELECT 1"})
	if err != nil || code != 201 {
		t.Fatalf("request exec: %d %v %v", code, g, err)
	}
	execID := g["id"].(string)
	code, body, err := s.API(agent, "POST", "/v1/grants/"+execID+"/run", nil)
	if err != nil || code != 503 || !strings.Contains(fmt.Sprint(body), "issue credential for relay-db") {
		t.Errorf("exec run: %d %v %v, want 503 naming the credential source", code, body, err)
	}
	for _, id := range []string{sess.GrantID, execID} {
		g := s.Grant(agent, id)
		if g["state"] != "failed" || g["lease_id"] != nil {
			t.Errorf("grant %s: state %v lease %v, want failed with no lease", id, g["state"], g["lease_id"])
		}
		// A session fails at open (grant.failed); an exec run ends failed
		// (session.ended state=failed).
		evs := events(s, id)
		ended, _ := auditDetail(s, id, "session.ended")
		if slices.Contains(evs, "credential.issued") || (!slices.Contains(evs, "grant.failed") && !strings.Contains(ended, "state=failed")) {
			t.Errorf("grant %s audit: %v (%s), want it failed and no credential.issued", id, evs, ended)
		}
	}
	if roles := s.Roles(); len(roles) != 0 {
		t.Errorf("roles half-made: %v", roles)
	}
	if got := s.ScrapeBroker().Get(metrics.CredentialIssueFail, map[string]string{"target": "relay-db"}); got != 2 {
		t.Errorf("%s{target=relay-db} = %v, want 2", metrics.CredentialIssueFail, got)
	}

	s.AdminRelay.Up()
	again, err := s.OpenSession(agent, "relay-db", time.Minute)
	if err != nil {
		t.Fatalf("the source is back but sessions are still refused: %v", err)
	}
	if code, g, err := s.API(agent, "POST", "/v1/grants/"+again.GrantID+"/end", nil); err != nil || code != 200 {
		t.Fatalf("end: %d %v %v", code, g, err)
	}
}

// TestRevocationFailingIsRetried: revocation cannot reach the credential
// source when a session ends. The broker retries, then audits the failure with
// the credential's own expiry; the role really carries VALID UNTIL that
// expiry; when the source is back the sweeper revokes it.
func TestRevocationFailingIsRetried(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	agent := s.Token("agent-rev", "ai-agents")
	sess, conn := connect(t, s, agent, "relay-db", time.Minute, "SELECT 1")
	conn.Close(ctx)

	s.AdminRelay.Down()
	if code, g, err := s.API(agent, "POST", "/v1/grants/"+sess.GrantID+"/end", nil); err != nil || code != 200 {
		t.Fatalf("end: %d %v %v", code, g, err)
	}
	g := s.WaitGrant(agent, sess.GrantID, 30*time.Second, func(g map[string]any) bool { return terminal(g) && g["revoke_error"] != nil })
	if g["state"] != "ended" || revoked(g) {
		t.Fatalf("state %v revoked %v, want ended and not revoked", g["state"], g["credential_revoked"])
	}
	if !strings.Contains(fmt.Sprint(g["revoke_error"]), "5 attempt(s) failed") {
		t.Errorf("revoke_error does not show the retries: %v", g["revoke_error"])
	}
	detail, ok := auditDetail(s, sess.GrantID, "credential.revoke_failed")
	if !ok {
		t.Fatalf("no credential.revoke_failed in the audit: %v", events(s, sess.GrantID))
	}
	_, at, _ := strings.Cut(detail, "expires at ")
	auditedExpiry, err := time.Parse(time.RFC3339, strings.TrimSpace(at))
	if err != nil {
		t.Fatalf("audit detail %q: no expiry: %v", detail, err)
	}
	roles := s.Roles()
	if len(roles) != 1 {
		t.Fatalf("want the one unrevoked role, have %v", roles)
	}
	for name, until := range roles {
		vu, err := time.Parse("2006-01-02 15:04:05-07", until)
		if err != nil {
			vu, err = time.Parse("2006-01-02 15:04:05.999999-07", until)
		}
		if err != nil {
			t.Fatalf("role %s VALID UNTIL %q: %v", name, until, err)
		}
		if d := vu.Sub(auditedExpiry); d < -time.Second || d > time.Second {
			t.Errorf("role %s VALID UNTIL %s, audited expiry %s", name, vu, auditedExpiry)
		}
		if exp, _ := time.Parse(time.RFC3339, fmt.Sprint(g["expires_at"])); vu.Before(exp) || vu.After(exp.Add(2*time.Minute)) {
			t.Errorf("role %s VALID UNTIL %s is not just after the grant's deadline %s", name, vu, exp)
		}
	}
	if got := s.ScrapeBroker().Get(metrics.CredentialRevokeFail, map[string]string{"target": "relay-db"}); got != 1 {
		t.Errorf("%s{target=relay-db} = %v, want 1", metrics.CredentialRevokeFail, got)
	}

	s.AdminRelay.Up()
	if g := s.WaitGrant(agent, sess.GrantID, 30*time.Second, revoked); !revoked(g) {
		t.Fatalf("not revoked once the source was back: %v", g)
	}
	noRolesLeft(t, s)
}

// TestBrokerKilledMidApproval: the broker is SIGKILLed while a write waits
// for its approver. Restarted on the same data directory it still has the
// grant pending; the approver approves, the requester runs it, and the audit
// chain is intact across the crash.
func TestBrokerKilledMidApproval(t *testing.T) {
	t.Parallel()
	s := start(t)
	agent, dba := s.Token("agent-ap", "ai-agents"), s.Token("alice", "dba")
	code, g, err := s.API(agent, "POST", "/v1/grants", map[string]any{"target": "test-db", "sql": "UPDATE orders SET amount = 13.00 WHERE id = 4"})
	if err != nil || code != 202 || g["state"] != "pending" {
		t.Fatalf("request: %d %v %v", code, g, err)
	}
	id := g["id"].(string)

	s.Kill()
	s.StartBroker()

	if g := s.Grant(agent, id); g["state"] != "pending" {
		t.Fatalf("after the crash: state %v, want pending", g["state"])
	}
	if code, g, err := s.API(dba, "POST", "/v1/grants/"+id+"/approve", map[string]any{"reason": "after restart"}); err != nil || code != 200 || g["state"] != "approved" {
		t.Fatalf("approve: %d %v %v", code, g, err)
	}
	code, body, err := s.API(agent, "POST", "/v1/grants/"+id+"/run", nil)
	if err != nil || code != 200 {
		t.Fatalf("run: %d %v %v", code, body, err)
	}
	if tag := fmt.Sprint(body["result"].(map[string]any)["tag"]); tag != "UPDATE 1" {
		t.Errorf("tag %q, want UPDATE 1", tag)
	}
	out, err := exec.Command(bin, "audit", "verify", "--data-dir", s.DataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "chain intact") {
		t.Errorf("audit verify after the crash: %v: %s", err, out)
	}
	noRolesLeft(t, s)
}

// TestProxyKilled: a session's proxy process is SIGKILLed mid-session. The
// client's connection drops; the broker sees the proxy die, revokes the
// credential and fails the grant with the reason; the recording the proxy
// left in the spool (its sealed chunks, with the statements sent) is
// recovered by the flush loop into the recordings store and audited.
func TestProxyKilled(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	agent := s.Token("agent-kill", "ai-agents")
	sess, conn := connect(t, s, agent, "soak-db", time.Minute, "SELECT 42 AS before_the_kill")
	spooled := filepath.Join(s.DataDir, "spool", sess.GrantID+".jgr")
	waitFor(t, 20*time.Second, "the statement sealed into the spooled recording", func() bool { ok, _ := recorded(spooled, "before_the_kill"); return ok })
	pids := s.ProxyPIDs()
	if len(pids) != 1 {
		t.Fatalf("want one proxy process, have %v", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a query succeeded through a killed proxy")
	}
	g := s.WaitGrant(agent, sess.GrantID, 30*time.Second, func(g map[string]any) bool { return terminal(g) && revoked(g) })
	if g["state"] != "failed" || !revoked(g) || !strings.Contains(fmt.Sprint(g["error"]), "proxy exited without reporting") {
		t.Fatalf("grant: state %v revoked %v error %v", g["state"], g["credential_revoked"], g["error"])
	}
	noRolesLeft(t, s)
	stored := waitStored(t, s, sess.GrantID, "the flush loop to store the killed proxy's recording")
	if ok, err := recorded(stored, "before_the_kill"); !ok {
		t.Errorf("recovered recording lacks the statement: %v", err)
	}
	if _, err := os.Stat(spooled); !os.IsNotExist(err) {
		t.Errorf("recording still in the spool after it was stored: %v", err)
	}
	if g := s.Grant(agent, sess.GrantID); g["recording"] != stored {
		t.Errorf("grant recording %v, want %s", g["recording"], stored)
	}
}

// TestProxyKilledWhileBrokerDown: the broker is frozen, its proxy SIGKILLed,
// then the broker SIGKILLed too, so nobody saw the proxy die. Restarted on
// the same data directory, the broker's sweeper finds the grant still active
// past its deadline, revokes its credential, expires it, and the flush loop
// stores the recording the proxy left in the spool.
func TestProxyKilledWhileBrokerDown(t *testing.T) {
	t.Parallel()
	s := startArgs(t, "--run-timeout", "1s")
	agent := s.Token("agent-orphan", "ai-agents")
	sess, _ := connect(t, s, agent, "soak-db", 10*time.Second, "SELECT 'orphan' AS before_the_crash")
	spooled := filepath.Join(s.DataDir, "spool", sess.GrantID+".jgr")
	waitFor(t, 20*time.Second, "the statement sealed into the spooled recording", func() bool { ok, _ := recorded(spooled, "before_the_crash"); return ok })
	pids := s.ProxyPIDs()
	if len(pids) != 1 {
		t.Fatalf("want one proxy process, have %v", pids)
	}
	if err := syscall.Kill(s.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if roles := s.Roles(); len(roles) != 1 {
		t.Fatalf("with broker and proxy dead the grant's role should still exist: %v", roles)
	}

	s.StartBroker()
	g := s.WaitGrant(agent, sess.GrantID, 60*time.Second, func(g map[string]any) bool { return terminal(g) && revoked(g) })
	if g["state"] != "expired" || !revoked(g) {
		t.Fatalf("after restart: state %v revoked %v, want expired and revoked", g["state"], g["credential_revoked"])
	}
	if d, ok := auditDetail(s, sess.GrantID, "grant.expired"); !ok || !strings.Contains(d, "without its proxy reporting") {
		t.Errorf("audit lacks the sweeper's grant.expired: %q %v", d, events(s, sess.GrantID))
	}
	if !slices.Contains(events(s, sess.GrantID), "credential.revoked") {
		t.Errorf("audit lacks credential.revoked: %v", events(s, sess.GrantID))
	}
	noRolesLeft(t, s)
	stored := waitStored(t, s, sess.GrantID, "the flush loop to store the orphaned recording")
	if ok, err := recorded(stored, "before_the_crash"); !ok {
		t.Errorf("recovered recording lacks the statement: %v", err)
	}
}

// TestBrokerKilledMidSession: the broker is SIGKILLed under a live session.
// Its proxy is told by the kernel (PR_SET_PDEATHSIG) and ends the session on
// its own, closing the client and storing its signed recording; nobody is
// left to revoke the credential until the restarted broker's sweeper does,
// past the grant's deadline, and links the stored recording to the grant.
func TestBrokerKilledMidSession(t *testing.T) {
	t.Parallel()
	s := startArgs(t, "--run-timeout", "1s")
	ctx := context.Background()
	agent := s.Token("agent-crash", "ai-agents")
	sess, conn := connect(t, s, agent, "soak-db", 10*time.Second, "SELECT 'alive' AS before_the_broker_died")
	pids := s.ProxyPIDs()
	if len(pids) != 1 {
		t.Fatalf("want one proxy process, have %v", pids)
	}
	s.Kill()
	waitFor(t, 30*time.Second, "the orphaned proxy to exit", func() bool {
		return syscall.Kill(pids[0], 0) != nil
	})
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the client's connection outlived its proxy")
	}
	stored := filepath.Join(s.DataDir, "recordings", sess.GrantID+".jgr")
	if ok, err := recorded(stored, "before_the_broker_died"); !ok {
		t.Errorf("the proxy did not store its recording on the way out: %v", err)
	}
	if roles := s.Roles(); len(roles) != 1 {
		t.Fatalf("with the broker dead the role should still exist: %v", roles)
	}

	s.StartBroker()
	g := s.WaitGrant(agent, sess.GrantID, 60*time.Second, func(g map[string]any) bool { return terminal(g) && revoked(g) })
	if g["state"] != "expired" || !revoked(g) {
		t.Fatalf("after restart: state %v revoked %v, want expired and revoked", g["state"], g["credential_revoked"])
	}
	// The recording the orphaned proxy stored is linked to the grant by the
	// sweeper that ended it, and audited.
	if g["recording"] != stored {
		t.Errorf("grant recording %v, want %s", g["recording"], stored)
	}
	if d, ok := auditDetail(s, sess.GrantID, "recording.stored"); !ok || d != stored {
		t.Errorf("audit lacks recording.stored %s: %q %v", stored, d, events(s, sess.GrantID))
	}
	noRolesLeft(t, s)
}

// TestSpoolUnwritable: the recording spool cannot be written (a file stands
// where the directory was: root ignores permissions, and no tmpfs can be
// mounted here). A new session is refused with the reason, its credential
// revoked; a session already running keeps working and ends cleanly; its
// recording, which could not be stored from the broken spool, is stored by
// the flush loop once the spool is back.
func TestSpoolUnwritable(t *testing.T) {
	t.Parallel()
	s := start(t)
	ctx := context.Background()
	agent := s.Token("agent-spool", "ai-agents")
	running, conn := connect(t, s, agent, "soak-db", time.Minute, "SELECT 'before' AS spool_breaks")

	spool := filepath.Join(s.DataDir, "spool")
	if err := os.Rename(spool, spool+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spool, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The flush loop cannot read the spool either: counted.
	waitFor(t, 30*time.Second, "a counted upload failure", func() bool {
		return s.ScrapeBroker().Get(metrics.UploadFailures, nil) > 0
	})
	refused, err := s.OpenSession(agent, "soak-db", time.Minute)
	if err == nil {
		t.Fatal("a session opened without a writable spool")
	}
	if !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "recording") {
		t.Errorf("refusal does not name the recording: %v", err)
	}
	if g := s.Grant(agent, refused.GrantID); g["state"] != "failed" || !revoked(g) {
		t.Errorf("refused grant: state %v revoked %v, want failed and revoked", g["state"], g["credential_revoked"])
	}

	var after string
	if err := conn.QueryRow(ctx, "SELECT 'after' AS spool_broke").Scan(&after); err != nil || after != "after" {
		t.Fatalf("the running session stopped working: %q %v", after, err)
	}
	conn.Close(ctx)
	if code, g, err := s.API(agent, "POST", "/v1/grants/"+running.GrantID+"/end", nil); err != nil || code != 200 {
		t.Fatalf("end: %d %v %v", code, g, err)
	}
	g := s.WaitGrant(agent, running.GrantID, 60*time.Second, func(g map[string]any) bool { return terminal(g) && revoked(g) })
	if g["state"] != "ended" || !revoked(g) {
		t.Fatalf("running session: state %v revoked %v error %v, want ended and revoked", g["state"], g["credential_revoked"], g["error"])
	}
	noRolesLeft(t, s)

	if err := os.Remove(spool); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(spool+".away", spool); err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(s.DataDir, "recordings", running.GrantID+".jgr")
	waitFor(t, 30*time.Second, "the running session's recording stored once the spool is back", func() bool {
		ok, _ := recorded(stored, "spool_broke")
		return ok
	})
}

// recorded reports whether the recording at path reads and holds a
// statement containing marker; err says why it does not read.
func recorded(path, marker string) (bool, error) {
	_, evs, err := record.ReadFile(path)
	return err == nil && slices.ContainsFunc(evs, func(e record.Event) bool { return strings.Contains(e.Statement, marker) }), err
}

// waitStored waits until the audit says grant id's recording was stored in
// the recordings store, and returns its path there.
func waitStored(t *testing.T, s *harness.Stack, id, what string) string {
	t.Helper()
	stored := filepath.Join(s.DataDir, "recordings", id+".jgr")
	waitFor(t, 30*time.Second, what, func() bool {
		d, ok := auditDetail(s, id, "recording.stored")
		return ok && strings.Contains(d, stored)
	})
	return stored
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
