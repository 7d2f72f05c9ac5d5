package grant_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestCanTransitionIsExactlyTheDocumentedGraph(t *testing.T) {
	t.Parallel()
	legal := map[[2]grant.State]bool{
		{grant.Pending, grant.Approved}: true, {grant.Pending, grant.Denied}: true,
		{grant.Pending, grant.Expired}: true, {grant.Pending, grant.Revoked}: true,
		{grant.Approved, grant.Active}: true, {grant.Approved, grant.Expired}: true,
		{grant.Approved, grant.Revoked}: true, {grant.Approved, grant.Failed}: true,
		{grant.Active, grant.Ended}: true, {grant.Active, grant.Expired}: true,
		{grant.Active, grant.Revoked}: true, {grant.Active, grant.Failed}: true,
	}
	all := append([]grant.State{grant.StateUnknown, grant.State(99), grant.State(-1)}, grant.States()...)
	n := 0
	for _, from := range all {
		for _, to := range all {
			got := grant.CanTransition(from, to)
			if got != legal[[2]grant.State{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
			if got {
				n++
			}
		}
	}
	if n != len(legal) {
		t.Errorf("%d legal edges, want %d", n, len(legal))
	}
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	want := map[grant.State]bool{grant.Ended: true, grant.Denied: true, grant.Expired: true, grant.Revoked: true, grant.Failed: true}
	for _, s := range append(grant.States(), grant.StateUnknown) {
		if s.Terminal() != want[s] {
			t.Errorf("%s.Terminal() = %v", s, s.Terminal())
		}
		// A terminal state has no way out.
		if s.Terminal() {
			for _, to := range grant.States() {
				if grant.CanTransition(s, to) {
					t.Errorf("terminal %s → %s allowed", s, to)
				}
			}
		}
	}
}

func TestStateText(t *testing.T) {
	t.Parallel()
	for _, s := range grant.States() {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatalf("%d: %v", s, err)
		}
		if string(b) != s.String() {
			t.Errorf("MarshalText %q != String %q", b, s)
		}
		var back grant.State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("round trip %s: got %s, %v", s, back, err)
		}
	}
	for _, bad := range []grant.State{grant.StateUnknown, grant.State(42), grant.State(-3)} {
		if _, err := bad.MarshalText(); err == nil {
			t.Errorf("MarshalText(%s) succeeded; an invalid state must never be stored", bad)
		}
	}
	for _, bad := range []string{"", "unknown", "Pending", "pending ", "requested", "state(1)"} {
		var s grant.State
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = %s, want error", bad, s)
		}
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^g_[a-z2-7]{26}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := grant.NewID()
		if !re.MatchString(id) {
			t.Fatalf("NewID() = %q, want %s", id, re)
		}
		if !grant.ValidID(id) {
			t.Fatalf("ValidID(%q) = false", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"g_abc": true, "A-Z_09": true, strings.Repeat("a", grant.MaxIDLen): true,
		"": false, strings.Repeat("a", grant.MaxIDLen+1): false,
		"../etc/passwd": false, "a/b": false, "a b": false, "a\x00": false, "a%2f": false, "é": false, "a.b": false,
	} {
		if got := grant.ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestTransition(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		from, to grant.State
		wantErr  string
	}{
		{grant.Pending, grant.Approved, ""},
		{grant.Approved, grant.Active, ""},
		{grant.Active, grant.Ended, ""},
		{grant.Pending, grant.Active, "g_x: pending → active: illegal state transition"},
		{grant.Denied, grant.Approved, "g_x: denied → approved: illegal state transition"},
		{grant.Ended, grant.Active, "g_x: ended → active: illegal state transition"},
		{grant.Approved, grant.Approved, "g_x: approved → approved: illegal state transition"},
		{grant.Expired, grant.Revoked, "g_x: expired → revoked: illegal state transition"},
	}
	for _, tc := range tests {
		g := &grant.Grant{ID: "g_x", State: tc.from}
		err := g.Transition(tc.to, now)
		if tc.wantErr == "" {
			if err != nil || g.State != tc.to || !g.UpdatedAt.Equal(now) {
				t.Errorf("%s → %s: state %s, updated %v, err %v", tc.from, tc.to, g.State, g.UpdatedAt, err)
			}
			continue
		}
		if !errors.Is(err, grant.ErrIllegalTransition) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s → %s: err %v, want %q wrapping ErrIllegalTransition", tc.from, tc.to, err, tc.wantErr)
		}
		if g.State != tc.from || !g.UpdatedAt.IsZero() {
			t.Errorf("%s → %s: refused transition changed the grant: %s %v", tc.from, tc.to, g.State, g.UpdatedAt)
		}
	}
}

func full() *grant.Grant {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)
	op := "UPDATE accounts SET plan = 'pro' WHERE id = 7"
	return &grant.Grant{
		ID: grant.NewID(), Requester: "https://token.actions.githubusercontent.com|repo:acme/api:pull_request",
		RequesterName: "ci", Groups: []string{"ci", "deploy"},
		Claims: map[string]any{"repository": "acme/api", "pr": float64(42), "nested": map[string]any{"a": []any{"b", true}}},
		Target: "prod-db", Protocol: spec.Postgres, Mode: spec.Exec, Access: spec.Write,
		Operation: op, OperationHash: grant.HashOperation(op),
		Statements: []grant.StatementInfo{{SQL: op, Kind: "UPDATE", Class: "write"}},
		Reason:     "fix plan", Rule: "ci-writes", Reasons: []string{"write needs approval"}, Effect: "approve",
		State: grant.Pending, ApproversGroups: []string{"dba"}, ApproversUsers: []string{"okta|bob"}, Quorum: 2,
		Approvals: []grant.Approval{{By: "okta|bob", Name: "Bob", At: at, Decision: "approve", Reason: "ok"}},
		CreatedAt: at, UpdatedAt: at, PendingUntil: at.Add(time.Hour), TTL: 5 * time.Minute, ExpiresAt: at.Add(2 * time.Hour),
		LeaseID: "database/creds/rw/abc", CredentialRevoked: true, RevokeError: "x", SecretHash: "ab", ProxyAddr: "127.0.0.1:5",
		RecordingPath: "/r/x", Error: "boom",
	}
}

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	g := full()
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var back grant.Grant
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, &back) {
		t.Errorf("round trip differs:\n%+v\n%+v", g, &back)
	}
	for _, want := range []string{`"state":"pending"`, `"protocol":"postgres"`, `"mode":"exec"`, `"access":"write"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	// A denied request that named no usable target round-trips too.
	d := &grant.Grant{ID: "g_d", Requester: "r", State: grant.Denied}
	b, err = json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var dback grant.Grant
	if err := json.Unmarshal(b, &dback); err != nil || dback.Protocol != spec.ProtocolUnknown || dback.Mode != spec.ModeUnknown {
		t.Errorf("denied grant without protocol: %s → %+v, %v", b, dback, err)
	}
	// A zero-state grant cannot be marshalled: it never reaches a store.
	if _, err := json.Marshal(&grant.Grant{ID: "g_1"}); err == nil {
		t.Error("marshalling a grant in StateUnknown succeeded")
	}
}

func TestCloneIsDeep(t *testing.T) {
	t.Parallel()
	g := full()
	c := g.Clone()
	if !reflect.DeepEqual(g, c) {
		t.Fatal("clone differs")
	}
	c.Groups[0] = "x"
	c.Reasons[0] = "x"
	c.ApproversGroups[0] = "x"
	c.ApproversUsers[0] = "x"
	c.Statements[0].SQL = "x"
	c.Approvals[0].By = "x"
	c.Claims["repository"] = "x"
	c.Claims["nested"].(map[string]any)["a"].([]any)[0] = "x"
	if !reflect.DeepEqual(g, full2(g)) {
		t.Fatalf("mutating the clone changed the original: %+v", g)
	}
	if (*grant.Grant)(nil).Clone() != nil {
		t.Error("nil clone")
	}
}

// full2 rebuilds full() with g's random id and so is equal to an untouched g.
func full2(g *grant.Grant) *grant.Grant {
	f := full()
	f.ID = g.ID
	return f
}

func TestValidateNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(g *grant.Grant)
		want string // "" = valid
	}{
		{"full", func(g *grant.Grant) {}, ""},
		{"approved", func(g *grant.Grant) { g.State = grant.Approved }, ""},
		{"session no operation", func(g *grant.Grant) { g.Mode, g.Operation, g.OperationHash, g.Statements = spec.Session, "", "", nil }, ""},
		{"denied needs no target", func(g *grant.Grant) {
			g.State, g.Target, g.Protocol, g.Mode = grant.Denied, "", spec.ProtocolUnknown, spec.ModeUnknown
		}, ""},
		{"no id", func(g *grant.Grant) { g.ID = "" }, "invalid id"},
		{"path id", func(g *grant.Grant) { g.ID = "../../x" }, "invalid id"},
		{"unknown state", func(g *grant.Grant) { g.State = grant.StateUnknown }, "cannot be created in state unknown"},
		{"active", func(g *grant.Grant) { g.State = grant.Active }, "cannot be created in state active"},
		{"ended", func(g *grant.Grant) { g.State = grant.Ended }, "cannot be created in state ended"},
		{"no requester", func(g *grant.Grant) { g.Requester = "" }, "no requester"},
		{"version set", func(g *grant.Grant) { g.Version = 3 }, "new grant has version 3"},
		{"hash mismatch", func(g *grant.Grant) { g.Operation = "DROP TABLE accounts" }, "operation hash does not match"},
		{"hash missing", func(g *grant.Grant) { g.OperationHash = "" }, "operation hash does not match"},
		{"hash without op", func(g *grant.Grant) { g.Operation = "" }, "operation hash without an operation"},
		{"no target", func(g *grant.Grant) { g.Target = "" }, "no target"},
		{"no protocol", func(g *grant.Grant) { g.Protocol = spec.ProtocolUnknown }, "no protocol"},
		{"no mode", func(g *grant.Grant) { g.Mode = spec.ModeUnknown }, "no mode"},
	}
	for _, tc := range tests {
		g := full()
		tc.mod(g)
		err := g.ValidateNew()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := (*grant.Grant)(nil).ValidateNew(); err == nil {
		t.Error("nil grant validated")
	}
}

func TestCheckUpdate(t *testing.T) {
	t.Parallel()
	later := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		mod  func(g *grant.Grant)
		want string
	}{
		{"no change", func(g *grant.Grant) {}, ""},
		{"legal transition", func(g *grant.Grant) { g.State = grant.Approved }, ""},
		{"mutable fields", func(g *grant.Grant) {
			g.LeaseID, g.ExpiresAt, g.ProxyAddr, g.Access, g.Error = "l2", later, "x", spec.Read, "e"
		}, ""},
		{"add approval", func(g *grant.Grant) {
			g.Approvals = append(g.Approvals, grant.Approval{By: "okta|carol", At: later, Decision: "approve"})
		}, ""},
		{"illegal transition", func(g *grant.Grant) { g.State = grant.Active }, "pending → active: illegal state transition"},
		{"to unknown", func(g *grant.Grant) { g.State = grant.StateUnknown }, "pending → unknown: illegal"},
		{"id", func(g *grant.Grant) { g.ID = "g_other" }, "changed the id"},
		{"version", func(g *grant.Grant) { g.Version++ }, "changed the version"},
		{"operation swap", func(g *grant.Grant) {
			g.Operation = "DROP TABLE accounts"
			g.OperationHash = grant.HashOperation(g.Operation)
		}, "operation is immutable"},
		{"hash swap", func(g *grant.Grant) { g.OperationHash = grant.HashOperation("x") }, "operation_hash is immutable"},
		{"requester", func(g *grant.Grant) { g.Requester = "okta|mallory" }, "requester is immutable"},
		{"target", func(g *grant.Grant) { g.Target = "other-db" }, "target is immutable"},
		{"protocol", func(g *grant.Grant) { g.Protocol = spec.SSH }, "protocol is immutable"},
		{"mode", func(g *grant.Grant) { g.Mode = spec.Session }, "mode is immutable"},
		{"claims", func(g *grant.Grant) { g.Claims = map[string]any{"repository": "evil/repo"} }, "claims is immutable"},
		{"groups", func(g *grant.Grant) { g.Groups = append(g.Groups, "admins") }, "groups is immutable"},
		{"statements", func(g *grant.Grant) { g.Statements = nil }, "statements is immutable"},
		{"reason", func(g *grant.Grant) { g.Reason = "" }, "reason is immutable"},
		{"created", func(g *grant.Grant) { g.CreatedAt = later }, "created_at is immutable"},
		{"drop approval", func(g *grant.Grant) { g.Approvals = nil }, "approvals can only be added"},
		{"forge approval", func(g *grant.Grant) { g.Approvals[0].Decision = "deny" }, "approval 0 was changed"},
	}
	for _, tc := range tests {
		prev := full()
		prev.Version = 4
		next := prev.Clone()
		tc.mod(next)
		err := grant.CheckUpdate(prev, next)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// A JSON round trip turns an empty slice or map into nil: not a change.
	prev := full()
	prev.Groups, prev.Claims = nil, nil
	next := prev.Clone()
	next.Groups, next.Claims = []string{}, map[string]any{}
	if err := grant.CheckUpdate(prev, next); err != nil {
		t.Errorf("nil vs empty: %v", err)
	}
	if err := grant.CheckUpdate(full(), nil); err == nil {
		t.Error("nil next accepted")
	}
}

func TestFilterMatch(t *testing.T) {
	t.Parallel()
	g := &grant.Grant{State: grant.Active, Requester: "r", Target: "t"}
	active, pending := grant.Active, grant.Pending
	for i, tc := range []struct {
		f    grant.Filter
		want bool
	}{
		{grant.Filter{}, true},
		{grant.Filter{State: &active, Requester: "r", Target: "t", Limit: 1}, true},
		{grant.Filter{State: &pending}, false},
		{grant.Filter{Requester: "x"}, false},
		{grant.Filter{Target: "x"}, false},
	} {
		if got := tc.f.Match(g); got != tc.want {
			t.Errorf("%d: Match = %v", i, got)
		}
	}
}

func TestHashOperation(t *testing.T) {
	t.Parallel()
	if got := grant.HashOperation(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("HashOperation(\"\") = %s", got)
	}
	if grant.HashOperation("SELECT 1") == grant.HashOperation("SELECT 1 ") {
		t.Error("hash ignores whitespace; approval must bind to the exact text")
	}
}

func FuzzStateUnmarshalText(f *testing.F) {
	for _, s := range grant.States() {
		f.Add(s.String())
	}
	f.Add("")
	f.Add("unknown")
	f.Fuzz(func(t *testing.T, in string) {
		var s grant.State
		if err := s.UnmarshalText([]byte(in)); err != nil {
			return
		}
		if !s.Valid() || s.String() != in {
			t.Fatalf("UnmarshalText(%q) = %s", in, s)
		}
	})
}
