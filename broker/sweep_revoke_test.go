package broker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	launchlocal "github.com/jitgate/jitgate/broker/launch/local"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/bolt"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// downSource is a credential source whose revocations fail while down.
type downSource struct {
	mu      sync.Mutex
	down    bool
	revoked []string
	calls   int
}

func (d *downSource) Issue(context.Context, credentials.Request) (spec.Credential, error) {
	return spec.Credential{}, errors.New("not in this test")
}

func (d *downSource) Revoke(_ context.Context, c spec.Credential) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.down {
		return errors.New("connection refused")
	}
	d.revoked = append(d.revoked, c.LeaseID)
	return nil
}

func (d *downSource) set(down bool) { d.mu.Lock(); d.down = down; d.mu.Unlock() }
func (d *downSource) count() (int, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls, append([]string(nil), d.revoked...)
}

// TestSweeperRetriesFailedRevocations: a grant ended with its revocation
// failed (stored by an earlier broker process). A new process's sweeper
// retries it, keeps retrying while the source is down, revokes it once the
// source is back, audits that, and leaves alone a grant whose credential
// expired long ago.
func TestSweeperRetriesFailedRevocations(t *testing.T) {
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
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	stored := func(expires time.Time) *grant.Grant {
		g := &grant.Grant{ID: grant.NewID(), Requester: "okta|agent", Target: "test-db", Protocol: spec.Postgres, Mode: spec.Session, Access: spec.Read, State: grant.Approved, TTL: time.Minute,
			CreatedAt: expires.Add(-time.Minute), UpdatedAt: expires.Add(-time.Minute)}
		if err := st.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		// The store takes one legal edge per write: approved → active → ended.
		for _, step := range []func(g *grant.Grant) error{
			func(g *grant.Grant) error {
				g.LeaseID, g.ExpiresAt = "local:postgres:jg_"+strings.ToLower(g.ID[2:12]), expires
				return g.Transition(grant.Active, expires.Add(-time.Minute))
			},
			func(g *grant.Grant) error {
				g.RevokeError = "credentials: revoke: 5 attempt(s) failed"
				return g.Transition(grant.Ended, expires)
			},
		} {
			var err error
			if g, err = st.Update(ctx, g.ID, step); err != nil {
				t.Fatal(err)
			}
		}
		return g
	}
	recent, ancient := stored(now.Add(-time.Minute)), stored(now.Add(-48*time.Hour))

	src := &downSource{down: true}
	ln, _ := launchlocal.New(launchlocal.Config{})
	svc, err := broker.New(broker.Config{Policy: p, Store: st, Audit: al, Sources: map[string]credentials.Source{"test-db": src},
		Launcher: ln, RecordDir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)

	// First sweep: the full scan finds the recent one; the source is down.
	if rep := svc.Sweep(ctx); rep.Rerevoked != 0 {
		t.Fatalf("revoked with the source down: %+v", rep)
	}
	// Second sweep: retried from memory, still down.
	svc.Sweep(ctx)
	if calls, _ := src.count(); calls != 2 {
		t.Fatalf("%d revoke attempts over two sweeps, want 2 (one per sweep, the ancient grant never)", calls)
	}
	src.set(false)
	if rep := svc.Sweep(ctx); rep.Rerevoked != 1 {
		t.Fatalf("sweep with the source back: %+v, want one revoked", rep)
	}
	if _, revoked := src.count(); len(revoked) != 1 || revoked[0] != recent.LeaseID {
		t.Fatalf("revoked %v, want only %s", revoked, recent.LeaseID)
	}
	g, err := st.Get(ctx, recent.ID)
	if err != nil || !g.CredentialRevoked || g.RevokeError != "" {
		t.Fatalf("grant after retry: revoked %v error %q (%v)", g.CredentialRevoked, g.RevokeError, err)
	}
	if g, _ := st.Get(ctx, ancient.ID); g.CredentialRevoked {
		t.Error("a credential past the retry window was touched")
	}
	// Nothing left to retry: a fourth sweep calls the source no more.
	svc.Sweep(ctx)
	if calls, _ := src.count(); calls != 3 {
		t.Errorf("%d revoke attempts, want 3", calls)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"type":"credential.revoked"`) || !strings.Contains(string(raw), "revoked on retry after: credentials: revoke: 5 attempt(s) failed") {
		t.Errorf("audit lacks the sweeper's credential.revoked:\n%s", raw)
	}
}
