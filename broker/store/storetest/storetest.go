// Package storetest is the contract suite every grant.Store must pass: the bolt
// store today, the DynamoDB store in the AWS deployment. The broker relies on
// exactly these behaviours — sentinel errors, the state machine enforced on
// every write, compare-and-swap updates under concurrency, newest-first lists —
// so an implementation that passes can be swapped in without the broker noticing.
//
// Call it from the implementation's own test:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) grant.Store {
//			s, err := bolt.Open(filepath.Join(t.TempDir(), "grants.db"), bolt.Options{})
//			if err != nil { t.Fatal(err) }
//			return s
//		}, storetest.WithReopen(func(t *testing.T, old grant.Store) grant.Store {
//			s, err := bolt.Open(old.(*bolt.Store).Path(), bolt.Options{})
//			if err != nil { t.Fatal(err) }
//			return s
//		}))
//	}
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Racers is how many goroutines race in the concurrency tests.
const Racers = 50

// Option adjusts Run.
type Option func(*config)

type config struct {
	reopen func(t *testing.T, old grant.Store) grant.Store
}

// WithReopen enables the persistence test. The suite closes old first; reopen
// must return a new Store over the same data (the same file for bolt, the same
// table for DynamoDB). Without it the persistence test is skipped.
func WithReopen(reopen func(t *testing.T, old grant.Store) grant.Store) Option {
	return func(c *config) { c.reopen = reopen }
}

// Run runs the contract suite. open must return a new, empty Store for each call;
// the suite closes every store it gets. Subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) grant.Store, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	s := suite{open: open, cfg: c}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"CreateGet", s.createGet},
		{"CreateRefusesInvalid", s.createRefusesInvalid},
		{"CreateExists", s.createExists},
		{"NotFound", s.notFound},
		{"Update", s.update},
		{"UpdateFnErrorWritesNothing", s.updateFnError},
		{"IllegalTransitionRefused", s.illegalTransition},
		{"ImmutableFieldsRefused", s.immutable},
		{"TerminalGrantsKeepBookkeeping", s.terminal},
		{"List", s.list},
		{"ListFollowsTransitions", s.listFollowsTransitions},
		{"RaceApprove", s.raceApprove},
		{"RaceApproveExpire", s.raceApproveExpire},
		{"NoLostUpdates", s.noLostUpdates},
		{"CanceledContext", s.canceled},
		{"Closed", s.closed},
		{"Reopen", s.reopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

type suite struct {
	open func(t *testing.T) grant.Store
	cfg  config
}

func (s suite) store(t *testing.T) grant.Store {
	t.Helper()
	st := s.open(t)
	if st == nil {
		t.Fatal("storetest: open returned nil")
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

var base = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// newGrant returns a complete pending exec grant; every field that survives a
// store round trip is set.
func newGrant(requester, target string, created time.Time) *grant.Grant {
	op := "UPDATE accounts SET plan = 'pro' WHERE id = 7"
	return &grant.Grant{
		ID: grant.NewID(), Requester: requester, RequesterName: "ci bot", Groups: []string{"ci"},
		Claims: map[string]any{"repository": "acme/api", "pr": float64(42), "sha": "abc", "nested": map[string]any{"ok": true}},
		Target: target, Protocol: spec.Postgres, Mode: spec.Exec, Access: spec.Write,
		Operation: op, OperationHash: grant.HashOperation(op),
		Statements: []grant.StatementInfo{{SQL: op, Kind: "UPDATE", Class: "write"}},
		Reason:     "fix a customer's plan", Rule: "ci-writes", Reasons: []string{"writes need approval"}, Effect: "approve",
		State: grant.Pending, ApproversGroups: []string{"dba"}, ApproversUsers: []string{"okta|bob"}, Quorum: 1,
		CreatedAt: created, PendingUntil: created.Add(time.Hour), TTL: 5 * time.Minute,
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

// equal compares grants by their JSON form with every time in UTC, so that a
// store may return times in another location and nil or empty slices alike.
func equal(t *testing.T, what string, got, want *grant.Grant) {
	t.Helper()
	g, w := canon(t, got), canon(t, want)
	if g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func canon(t *testing.T, g *grant.Grant) string {
	t.Helper()
	if g == nil {
		return "<nil>"
	}
	c := g.Clone()
	for _, p := range []*time.Time{&c.CreatedAt, &c.UpdatedAt, &c.PendingUntil, &c.ExpiresAt} {
		*p = p.UTC()
	}
	for i := range c.Approvals {
		c.Approvals[i].At = c.Approvals[i].At.UTC()
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

func mustCreate(t *testing.T, st grant.Store, g *grant.Grant) {
	t.Helper()
	if err := st.Create(ctx(t), g); err != nil {
		t.Fatalf("Create(%s): %v", g.ID, err)
	}
}

func mustGet(t *testing.T, st grant.Store, id string) *grant.Grant {
	t.Helper()
	g, err := st.Get(ctx(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return g
}

func (s suite) createGet(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	if g.Version != 1 {
		t.Errorf("Create set Version %d, want 1", g.Version)
	}
	if g.UpdatedAt.IsZero() {
		t.Error("Create did not set UpdatedAt")
	}
	if !g.CreatedAt.Equal(base) {
		t.Errorf("Create changed a given CreatedAt to %v", g.CreatedAt)
	}
	got := mustGet(t, st, g.ID)
	equal(t, "Get after Create", got, g)

	// The returned grant is the caller's own copy.
	got.Groups[0] = "admins"
	got.Claims["repository"] = "evil/repo"
	got.State = grant.Active
	equal(t, "Get after mutating an earlier result", mustGet(t, st, g.ID), g)

	// A zero CreatedAt is filled from the store's clock.
	z := newGrant("okta|alice", "db", time.Time{})
	mustCreate(t, st, z)
	if z.CreatedAt.IsZero() || z.Version != 1 {
		t.Errorf("zero CreatedAt: got %v version %d", z.CreatedAt, z.Version)
	}
	if got := mustGet(t, st, z.ID); !got.CreatedAt.Equal(z.CreatedAt) {
		t.Errorf("stored CreatedAt %v, caller saw %v", got.CreatedAt, z.CreatedAt)
	}

	// Approved and Denied are also initial states; denied grants are kept for audit.
	d := &grant.Grant{ID: grant.NewID(), Requester: "okta|mallory", State: grant.Denied, Reasons: []string{"no rule matches"}, CreatedAt: base}
	mustCreate(t, st, d)
	equal(t, "denied grant", mustGet(t, st, d.ID), d)
	a := newGrant("okta|alice", "db", base)
	a.State = grant.Approved
	mustCreate(t, st, a)
	if mustGet(t, st, a.ID).State != grant.Approved {
		t.Error("approved grant not stored as approved")
	}
}

func (s suite) createRefusesInvalid(t *testing.T) {
	st := s.store(t)
	tests := []struct {
		name string
		mod  func(g *grant.Grant)
		want string
	}{
		{"created active", func(g *grant.Grant) { g.State = grant.Active }, "cannot be created in state active"},
		{"created ended", func(g *grant.Grant) { g.State = grant.Ended }, "cannot be created in state ended"},
		{"zero state", func(g *grant.Grant) { g.State = grant.StateUnknown }, "cannot be created in state unknown"},
		{"path id", func(g *grant.Grant) { g.ID = "../../etc/passwd" }, "invalid id"},
		{"empty id", func(g *grant.Grant) { g.ID = "" }, "invalid id"},
		{"operation swapped after hashing", func(g *grant.Grant) { g.Operation = "DROP TABLE accounts" }, "operation hash does not match"},
		{"preset version", func(g *grant.Grant) { g.Version = 7 }, "new grant has version 7"},
		{"no requester", func(g *grant.Grant) { g.Requester = "" }, "no requester"},
	}
	for _, tc := range tests {
		g := newGrant("okta|alice", "db", base)
		tc.mod(g)
		err := st.Create(ctx(t), g)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Create err %v, want %q", tc.name, err, tc.want)
			continue
		}
		if grant.ValidID(g.ID) {
			if _, err := st.Get(ctx(t), g.ID); !errors.Is(err, grant.ErrNotFound) {
				t.Errorf("%s: refused grant was stored (Get err %v)", tc.name, err)
			}
		}
	}
	if list, err := st.List(ctx(t), grant.Filter{}); err != nil || len(list) != 0 {
		t.Errorf("List after refused creates: %d grants, %v", len(list), err)
	}
}

func (s suite) createExists(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	dup := newGrant("okta|mallory", "other", base.Add(time.Hour))
	dup.ID = g.ID
	if err := st.Create(ctx(t), dup); !errors.Is(err, grant.ErrExists) {
		t.Fatalf("second Create err %v, want ErrExists", err)
	}
	if dup.Version != 0 {
		t.Errorf("failed Create set Version %d on the caller's grant", dup.Version)
	}
	equal(t, "original after duplicate Create", mustGet(t, st, g.ID), g)
	if list, _ := st.List(ctx(t), grant.Filter{}); len(list) != 1 {
		t.Errorf("List has %d grants after a duplicate Create, want 1", len(list))
	}
}

func (s suite) notFound(t *testing.T) {
	st := s.store(t)
	for _, id := range []string{grant.NewID(), "../x", "", "g_" + strings.Repeat("a", 500)} {
		if _, err := st.Get(ctx(t), id); !errors.Is(err, grant.ErrNotFound) {
			t.Errorf("Get(%q) err %v, want ErrNotFound", id, err)
		}
		called := false
		_, err := st.Update(ctx(t), id, func(*grant.Grant) error { called = true; return nil })
		if !errors.Is(err, grant.ErrNotFound) || called {
			t.Errorf("Update(%q) err %v (fn called %v), want ErrNotFound without calling fn", id, err, called)
		}
	}
}

func (s suite) update(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	at := base.Add(time.Minute)
	out, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
		g.Approvals = append(g.Approvals, grant.Approval{By: "okta|bob", Name: "Bob", At: at, Decision: "approve", Reason: "looks right"})
		return g.Transition(grant.Approved, at)
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if out.Version != 2 || out.State != grant.Approved || len(out.Approvals) != 1 || out.UpdatedAt.IsZero() {
		t.Errorf("Update returned version %d state %s approvals %d updated %v", out.Version, out.State, len(out.Approvals), out.UpdatedAt)
	}
	equal(t, "Get after Update", mustGet(t, st, g.ID), out)

	out, err = st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
		g.LeaseID, g.ExpiresAt, g.SecretHash, g.ProxyAddr = "database/creds/rw/1", at.Add(5*time.Minute), "ab12", "127.0.0.1:6000"
		return g.Transition(grant.Active, at)
	})
	if err != nil || out.Version != 3 || out.State != grant.Active || out.LeaseID != "database/creds/rw/1" {
		t.Fatalf("second Update: %+v, %v", out, err)
	}
	equal(t, "Get after second Update", mustGet(t, st, g.ID), out)
}

func (s suite) updateFnError(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	errNope := errors.New("approver is the requester")
	out, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
		g.LeaseID = "half-done"
		_ = g.Transition(grant.Approved, base)
		return errNope
	})
	if err != errNope || out != nil {
		t.Fatalf("Update err %v (grant %v), want exactly fn's error", err, out)
	}
	equal(t, "grant after a failed fn", mustGet(t, st, g.ID), g)
}

func (s suite) illegalTransition(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	tests := []struct {
		name string
		fn   func(g *grant.Grant) error
	}{
		{"Transition pending→active", func(g *grant.Grant) error { return g.Transition(grant.Active, base) }},
		{"Transition pending→ended", func(g *grant.Grant) error { return g.Transition(grant.Ended, base) }},
		// fn sets the state directly: the store itself refuses the edge.
		{"assign pending→active", func(g *grant.Grant) error { g.State = grant.Active; return nil }},
		{"assign pending→unknown", func(g *grant.Grant) error { g.State = grant.StateUnknown; return nil }},
		{"assign pending→failed", func(g *grant.Grant) error { g.State = grant.Failed; return nil }},
	}
	for _, tc := range tests {
		_, err := st.Update(ctx(t), g.ID, tc.fn)
		if !errors.Is(err, grant.ErrIllegalTransition) || !strings.Contains(err.Error(), "pending →") {
			t.Errorf("%s: err %v, want ErrIllegalTransition naming pending", tc.name, err)
		}
	}
	equal(t, "grant after refused transitions", mustGet(t, st, g.ID), g)
}

func (s suite) immutable(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	tests := []struct {
		name string
		fn   func(g *grant.Grant)
		want string
	}{
		// An approval bound to one operation must never cover another.
		{"operation", func(g *grant.Grant) {
			g.Operation = "DROP TABLE accounts"
			g.OperationHash = grant.HashOperation(g.Operation)
		}, "operation is immutable"},
		{"requester", func(g *grant.Grant) { g.Requester = "okta|mallory" }, "requester is immutable"},
		{"target", func(g *grant.Grant) { g.Target = "prod" }, "target is immutable"},
		{"version", func(g *grant.Grant) { g.Version = 100 }, "changed the version"},
		{"id", func(g *grant.Grant) { g.ID = grant.NewID() }, "changed the id"},
	}
	for _, tc := range tests {
		_, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error { tc.fn(g); return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// Approvals only grow.
	if _, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
		g.Approvals = append(g.Approvals, grant.Approval{By: "okta|bob", At: base, Decision: "deny"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error { g.Approvals[0].Decision = "approve"; return nil })
	if err == nil || !strings.Contains(err.Error(), "approvals can only be added") {
		t.Errorf("rewriting an approval: err %v", err)
	}
	if got := mustGet(t, st, g.ID); got.Version != 2 || got.Approvals[0].Decision != "deny" || got.Operation != g.Operation {
		t.Errorf("after refused updates: version %d approvals %+v", got.Version, got.Approvals)
	}
}

func (s suite) terminal(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	g.State = grant.Approved
	mustCreate(t, st, g)
	for _, to := range []grant.State{grant.Active, grant.Ended} {
		if _, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error { return g.Transition(to, base) }); err != nil {
			t.Fatalf("→ %s: %v", to, err)
		}
	}
	for _, to := range grant.States() {
		if _, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error { g.State = to; return nil }); to != grant.Ended && !errors.Is(err, grant.ErrIllegalTransition) {
			t.Errorf("ended → %s: err %v, want ErrIllegalTransition", to, err)
		}
	}
	// Revocation is recorded after the grant ended.
	out, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
		g.CredentialRevoked, g.RecordingPath = true, "/rec/"+g.ID
		return nil
	})
	if err != nil || !out.CredentialRevoked || out.State != grant.Ended {
		t.Errorf("bookkeeping on an ended grant: %+v, %v", out, err)
	}
}

func (s suite) list(t *testing.T) {
	st := s.store(t)
	// Created out of order; two share a timestamp (ties: id descending).
	specs := []struct {
		requester, target string
		minute            int
		state             grant.State
	}{
		{"okta|alice", "db", 3, grant.Pending},
		{"okta|bob", "db", 1, grant.Approved},
		{"okta|alice", "ssh", 5, grant.Denied},
		{"okta|carol", "db", 4, grant.Pending},
		{"okta|alice", "db", 2, grant.Pending},
		{"okta|bob", "ssh", 4, grant.Pending},
	}
	byID := map[string]*grant.Grant{}
	var all []*grant.Grant
	for _, sp := range specs {
		g := newGrant(sp.requester, sp.target, base.Add(time.Duration(sp.minute)*time.Minute))
		g.State = sp.state
		mustCreate(t, st, g)
		byID[g.ID] = g
		all = append(all, g)
	}
	newestFirst := func(keep func(*grant.Grant) bool) []string {
		var ids []string
		for _, g := range all {
			if keep(g) {
				ids = append(ids, g.ID)
			}
		}
		// insertion sort: CreatedAt desc, then id desc
		for i := 1; i < len(ids); i++ {
			for j := i; j > 0 && less(byID[ids[j-1]], byID[ids[j]]); j-- {
				ids[j-1], ids[j] = ids[j], ids[j-1]
			}
		}
		return ids
	}
	pending, denied, active := grant.Pending, grant.Denied, grant.Active
	tests := []struct {
		name string
		f    grant.Filter
		keep func(*grant.Grant) bool
		max  int
	}{
		{"all", grant.Filter{}, func(*grant.Grant) bool { return true }, 0},
		{"pending", grant.Filter{State: &pending}, func(g *grant.Grant) bool { return g.State == grant.Pending }, 0},
		{"denied", grant.Filter{State: &denied}, func(g *grant.Grant) bool { return g.State == grant.Denied }, 0},
		{"active (none)", grant.Filter{State: &active}, func(g *grant.Grant) bool { return false }, 0},
		{"requester", grant.Filter{Requester: "okta|alice"}, func(g *grant.Grant) bool { return g.Requester == "okta|alice" }, 0},
		{"target", grant.Filter{Target: "ssh"}, func(g *grant.Grant) bool { return g.Target == "ssh" }, 0},
		{"pending alice db", grant.Filter{State: &pending, Requester: "okta|alice", Target: "db"}, func(g *grant.Grant) bool {
			return g.State == grant.Pending && g.Requester == "okta|alice" && g.Target == "db"
		}, 0},
		{"limit 2", grant.Filter{Limit: 2}, func(*grant.Grant) bool { return true }, 2},
		{"pending limit 3", grant.Filter{State: &pending, Limit: 3}, func(g *grant.Grant) bool { return g.State == grant.Pending }, 3},
		{"limit above count", grant.Filter{Limit: 100}, func(*grant.Grant) bool { return true }, 0},
		{"negative limit", grant.Filter{Limit: -1}, func(*grant.Grant) bool { return true }, 0},
	}
	for _, tc := range tests {
		got, err := st.List(ctx(t), tc.f)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		want := newestFirst(tc.keep)
		if tc.max > 0 && len(want) > tc.max {
			want = want[:tc.max]
		}
		var ids []string
		for _, g := range got {
			ids = append(ids, g.ID)
			equal(t, tc.name+" element", g, byID[g.ID])
		}
		if fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Errorf("%s: List = %v, want %v", tc.name, ids, want)
		}
	}
}

// less reports whether a sorts after b in newest-first order.
func less(a, b *grant.Grant) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

func (s suite) listFollowsTransitions(t *testing.T) {
	st := s.store(t)
	a, b := newGrant("okta|alice", "db", base), newGrant("okta|alice", "db", base.Add(time.Second))
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	if _, err := st.Update(ctx(t), a.ID, func(g *grant.Grant) error { return g.Transition(grant.Approved, base) }); err != nil {
		t.Fatal(err)
	}
	pending, approved := grant.Pending, grant.Approved
	for _, tc := range []struct {
		state *grant.State
		want  string
	}{{&pending, b.ID}, {&approved, a.ID}} {
		got, err := st.List(ctx(t), grant.Filter{State: tc.state})
		if err != nil || len(got) != 1 || got[0].ID != tc.want || got[0].State != *tc.state {
			t.Errorf("List(%s) = %v, %v; want only %s", tc.state, ids(got), err, tc.want)
		}
	}
	bad := grant.State(99)
	if _, err := st.List(ctx(t), grant.Filter{State: &bad}); err == nil {
		t.Error("List with an invalid state filter succeeded")
	}
}

func ids(gs []*grant.Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.ID+"/"+g.State.String())
	}
	return out
}

// race runs fns concurrently, released together, and returns their errors.
func race(fns ...func() error) []error {
	errs := make([]error, len(fns))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn()
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func (s suite) raceApprove(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	fns := make([]func() error, Racers)
	for i := range fns {
		fns[i] = func() error {
			_, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
				if err := g.Transition(grant.Approved, base); err != nil {
					return err
				}
				g.Approvals = append(g.Approvals, grant.Approval{By: fmt.Sprintf("okta|approver%d", i), At: base, Decision: "approve"})
				return nil
			})
			return err
		}
	}
	wins := 0
	for _, err := range race(fns...) {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, grant.ErrIllegalTransition), errors.Is(err, grant.ErrConflict):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d racing approvals succeeded, want exactly 1", wins, Racers)
	}
	got := mustGet(t, st, g.ID)
	if got.State != grant.Approved || got.Version != 2 || len(got.Approvals) != 1 {
		t.Errorf("after the race: state %s version %d approvals %d; want approved, 2, 1", got.State, got.Version, len(got.Approvals))
	}
}

var errNotPending = errors.New("not pending")

// raceApproveExpire races an approver against the sweeper on many grants. Each
// acts only on a pending grant, so exactly one of them wins each grant.
func (s suite) raceApproveExpire(t *testing.T) {
	st := s.store(t)
	const rounds = 20
	onlyPending := func(to grant.State) func(g *grant.Grant) error {
		return func(g *grant.Grant) error {
			if g.State != grant.Pending {
				return errNotPending
			}
			return g.Transition(to, base)
		}
	}
	outcomes := map[grant.State]int{}
	for r := 0; r < rounds; r++ {
		g := newGrant("okta|alice", "db", base)
		mustCreate(t, st, g)
		errs := race(
			func() error { _, err := st.Update(ctx(t), g.ID, onlyPending(grant.Approved)); return err },
			func() error { _, err := st.Update(ctx(t), g.ID, onlyPending(grant.Expired)); return err },
		)
		var winner grant.State
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = []grant.State{grant.Approved, grant.Expired}[i]
			case errors.Is(err, errNotPending), errors.Is(err, grant.ErrConflict):
			default:
				t.Errorf("round %d: unexpected error %v", r, err)
			}
		}
		got := mustGet(t, st, g.ID)
		if wins != 1 || got.State != winner || got.Version != 2 {
			t.Fatalf("round %d: %d winners, final state %s (winner %s), version %d", r, wins, got.State, winner, got.Version)
		}
		outcomes[winner]++
	}
	t.Logf("outcomes over %d rounds: %v", rounds, outcomes)
}

// noLostUpdates: concurrent approvals from different approvers (quorum > 1) must
// all be kept or fail visibly; none may be silently overwritten.
func (s suite) noLostUpdates(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	g.Quorum = Racers
	mustCreate(t, st, g)
	fns := make([]func() error, Racers)
	for i := range fns {
		fns[i] = func() error {
			_, err := st.Update(ctx(t), g.ID, func(g *grant.Grant) error {
				g.Approvals = append(g.Approvals, grant.Approval{By: fmt.Sprintf("okta|approver%02d", i), At: base, Decision: "approve"})
				return nil
			})
			return err
		}
	}
	var won []string
	for i, err := range race(fns...) {
		switch {
		case err == nil:
			won = append(won, fmt.Sprintf("okta|approver%02d", i))
		case errors.Is(err, grant.ErrConflict):
		default:
			t.Errorf("approver %d: unexpected error %v", i, err)
		}
	}
	got := mustGet(t, st, g.ID)
	have := map[string]bool{}
	for _, a := range got.Approvals {
		if have[a.By] {
			t.Errorf("approval by %s recorded twice", a.By)
		}
		have[a.By] = true
	}
	for _, by := range won {
		if !have[by] {
			t.Errorf("successful approval by %s was lost", by)
		}
	}
	if len(got.Approvals) != len(won) || got.Version != int64(1+len(won)) || len(won) == 0 {
		t.Errorf("%d updates succeeded, grant has %d approvals at version %d", len(won), len(got.Approvals), got.Version)
	}
}

func (s suite) canceled(t *testing.T) {
	st := s.store(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	n := newGrant("okta|alice", "db", base)
	if err := st.Create(c, n); !errors.Is(err, context.Canceled) {
		t.Errorf("Create: %v", err)
	}
	if _, err := st.Get(c, g.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if _, err := st.Update(c, g.ID, func(g *grant.Grant) error { return g.Transition(grant.Approved, base) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update: %v", err)
	}
	if _, err := st.List(c, grant.Filter{}); !errors.Is(err, context.Canceled) {
		t.Errorf("List: %v", err)
	}
	if _, err := st.Get(ctx(t), n.ID); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("Create with a canceled context stored the grant: %v", err)
	}
	equal(t, "grant after canceled Update", mustGet(t, st, g.ID), g)
}

func (s suite) closed(t *testing.T) {
	st := s.open(t)
	g := newGrant("okta|alice", "db", base)
	mustCreate(t, st, g)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := st.Get(ctx(t), g.ID); err == nil {
		t.Error("Get after Close succeeded")
	}
	if err := st.Create(ctx(t), newGrant("okta|alice", "db", base)); err == nil {
		t.Error("Create after Close succeeded")
	}
	if _, err := st.Update(ctx(t), g.ID, func(*grant.Grant) error { return nil }); err == nil {
		t.Error("Update after Close succeeded")
	}
}

func (s suite) reopen(t *testing.T) {
	if s.cfg.reopen == nil {
		t.Skip("storetest: no WithReopen given")
	}
	st := s.open(t)
	a, b := newGrant("okta|alice", "db", base), newGrant("okta|bob", "db", base.Add(time.Minute))
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	want, err := st.Update(ctx(t), a.ID, func(g *grant.Grant) error { return g.Transition(grant.Approved, base) })
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st2 := s.cfg.reopen(t, st)
	t.Cleanup(func() { _ = st2.Close() })
	equal(t, "updated grant after reopen", mustGet(t, st2, a.ID), want)
	equal(t, "created grant after reopen", mustGet(t, st2, b.ID), b)
	approved := grant.Approved
	if got, err := st2.List(ctx(t), grant.Filter{State: &approved}); err != nil || len(got) != 1 || got[0].ID != a.ID {
		t.Errorf("List(approved) after reopen: %v, %v", ids(got), err)
	}
	out, err := st2.Update(ctx(t), a.ID, func(g *grant.Grant) error { return g.Transition(grant.Active, base) })
	if err != nil || out.Version != 3 {
		t.Errorf("Update after reopen: version %v, %v; want 3", out, err)
	}
}
