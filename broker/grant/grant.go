// Package grant holds the Grant record the broker keeps for every request and the
// state machine it moves through. It sits between the broker's decision (policy,
// approval) and the credential and launch steps: a Grant is created already
// decided, then Approved → Active → Ended (or Denied, Expired, Revoked, Failed).
//
// The package does no I/O. Store is the consumer-side contract the broker uses;
// broker/store/bolt implements it and broker/store/storetest is the suite every
// implementation must pass.
package grant

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// StatementInfo describes one statement of an exec grant for approvers.
type StatementInfo struct {
	SQL   string `json:"sql"`
	Kind  string `json:"kind,omitempty"`
	Class string `json:"class,omitempty"`
}

// Approval is one approver's decision on a pending grant.
type Approval struct {
	// By is the approver's identity key ("issuer|subject").
	By   string    `json:"by"`
	Name string    `json:"name,omitempty"`
	At   time.Time `json:"at"`
	// Decision is "approve" or "deny".
	Decision string `json:"decision"`
	Reason   string `json:"reason,omitempty"`
}

// Grant is the broker's record of one request, from decision to revocation.
type Grant struct {
	// ID is random and URL-safe ("g_" + 26 base32 characters, 128 bits); see NewID.
	ID string `json:"id"`
	// Requester is the requester's identity key "issuer|subject".
	Requester     string   `json:"requester"`
	RequesterName string   `json:"requester_name,omitempty"`
	Groups        []string `json:"groups,omitempty"`
	// Claims is the subset of token claims shown to approvers (repository, ref,
	// sha, actor, run_id, event_name, pr).
	Claims map[string]any `json:"claims,omitempty"`

	Target string `json:"target"`
	// Protocol and Mode are omitted when unknown (a denied request may name no
	// usable target): spec's text codecs write "unknown" but refuse to read it.
	Protocol spec.Protocol `json:"protocol,omitzero"`
	Mode     spec.Mode     `json:"mode,omitzero"`
	Access   spec.Access   `json:"access"`
	// Operation is the one operation of an exec grant (the SQL); "" for sessions.
	Operation string `json:"operation,omitempty"`
	// OperationHash is HashOperation(Operation); an approval binds to it.
	OperationHash string          `json:"operation_hash,omitempty"`
	Statements    []StatementInfo `json:"statements,omitempty"`
	// Reason is the requester's stated reason.
	Reason string `json:"reason,omitempty"`

	// Rule, Reasons and Effect are the policy decision that created the grant.
	Rule    string   `json:"rule,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
	Effect  string   `json:"effect,omitempty"`

	State State `json:"state"`

	ApproversGroups []string   `json:"approvers_groups,omitempty"`
	ApproversUsers  []string   `json:"approvers_users,omitempty"`
	Quorum          int        `json:"quorum,omitempty"`
	Approvals       []Approval `json:"approvals,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// PendingUntil is when a pending grant expires unapproved.
	PendingUntil time.Time `json:"pending_until,omitzero"`
	// TTL is the granted lifetime; ExpiresAt, set on activation, is the deadline of
	// the proxy and the credential.
	TTL       time.Duration `json:"ttl,omitempty"`
	ExpiresAt time.Time     `json:"expires_at,omitzero"`

	LeaseID           string `json:"lease_id,omitempty"`
	CredentialRevoked bool   `json:"credential_revoked,omitempty"`
	RevokeError       string `json:"revoke_error,omitempty"`
	// SecretHash is the SHA-256 of the client grant secret. The secret itself is
	// never stored.
	SecretHash string `json:"secret_hash,omitempty"`
	// ProxyAddr is where the agent connects (session mode).
	ProxyAddr     string `json:"proxy_addr,omitempty"`
	RecordingPath string `json:"recording_path,omitempty"`
	// Error is the failure reason of a Failed grant.
	Error string `json:"error,omitempty"`

	// Version is set by the store: 1 on Create, +1 on every write. Update compares
	// it (compare-and-swap); callers must not change it.
	Version int64 `json:"version"`
	// CoveredBy names the approved grant whose approval (covers_next) also
	// covers this identical operation; empty when approved on its own.
	CoveredBy string `json:"covered_by,omitempty"`
	// CoversNext is how many later identical operations this grant's approval
	// covers; CoverUses counts those used (a conditional write each).
	CoversNext int `json:"covers_next,omitempty"`
	CoverUses  int `json:"cover_uses,omitempty"`
	// EstimatedRows is PostgreSQL's row estimate for an SQL write, shown to
	// approvers when the rule asks for it; -1 when unknown.
	EstimatedRows float64 `json:"estimated_rows,omitempty"`
}

const idPrefix = "g_"

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a fresh random grant id: "g_" followed by 128 random bits in
// lowercase unpadded base32.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (Go ≥ 1.24)
	return idPrefix + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// MaxIDLen bounds grant ids accepted by ValidID.
const MaxIDLen = 128

// ValidID reports whether id is safe to use as a store key, in a URL and in a file
// name: 1 to MaxIDLen characters from [A-Za-z0-9_-]. Every NewID is valid.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// HashOperation returns the lowercase hex SHA-256 of an operation: the value an
// approval binds to.
func HashOperation(op string) string {
	sum := sha256.Sum256([]byte(op))
	return hex.EncodeToString(sum[:])
}

// Transition moves g to state to at time now. An edge that is not in the state
// machine is refused with an error wrapping ErrIllegalTransition that names both
// states; g is then unchanged.
func (g *Grant) Transition(to State, now time.Time) error {
	if !CanTransition(g.State, to) {
		return illegal(g.ID, g.State, to)
	}
	g.State = to
	g.UpdatedAt = now
	return nil
}

// Clone returns a deep copy of g: no slice or map is shared with g.
func (g *Grant) Clone() *Grant {
	if g == nil {
		return nil
	}
	c := *g
	c.Groups = cloneStrings(g.Groups)
	c.Reasons = cloneStrings(g.Reasons)
	c.ApproversGroups = cloneStrings(g.ApproversGroups)
	c.ApproversUsers = cloneStrings(g.ApproversUsers)
	if g.Statements != nil {
		c.Statements = append([]StatementInfo(nil), g.Statements...)
	}
	if g.Approvals != nil {
		c.Approvals = append([]Approval(nil), g.Approvals...)
	}
	if g.Claims != nil {
		c.Claims = cloneValue(g.Claims).(map[string]any)
	}
	return &c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

// cloneValue deep-copies the JSON-shaped values claims hold.
func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = cloneValue(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = cloneValue(e)
		}
		return s
	case []string:
		return append([]string(nil), t...)
	}
	return v
}

// ValidateNew checks that g may be created: a valid id, an initial state (Pending,
// Approved or Denied), a requester, an operation hash that matches the operation,
// no version yet, and (unless the grant is Denied, which is stored for audit even
// when the request named nothing usable) a target, protocol and mode.
// Every Store calls it in Create.
func (g *Grant) ValidateNew() error {
	switch {
	case g == nil:
		return fmt.Errorf("grant: nil grant")
	case !ValidID(g.ID):
		return fmt.Errorf("grant: invalid id %q (want 1-%d characters of [A-Za-z0-9_-])", g.ID, MaxIDLen)
	case !InitialState(g.State):
		return fmt.Errorf("grant: %s: cannot be created in state %s (want pending, approved or denied)", g.ID, g.State)
	case g.Requester == "":
		return fmt.Errorf("grant: %s: no requester", g.ID)
	case g.Version != 0:
		return fmt.Errorf("grant: %s: new grant has version %d (the store sets it)", g.ID, g.Version)
	}
	if err := checkOperationHash(g); err != nil {
		return err
	}
	if g.State == Denied {
		return nil
	}
	switch {
	case g.Target == "":
		return fmt.Errorf("grant: %s: no target", g.ID)
	case g.Protocol == spec.ProtocolUnknown:
		return fmt.Errorf("grant: %s: no protocol", g.ID)
	case g.Mode == spec.ModeUnknown:
		return fmt.Errorf("grant: %s: no mode", g.ID)
	}
	return nil
}

func checkOperationHash(g *Grant) error {
	if g.Operation == "" {
		if g.OperationHash != "" {
			return fmt.Errorf("grant: %s: operation hash without an operation", g.ID)
		}
		return nil
	}
	if g.OperationHash != HashOperation(g.Operation) {
		return fmt.Errorf("grant: %s: operation hash does not match the operation", g.ID)
	}
	return nil
}

// CheckUpdate checks that next is an acceptable successor of the stored grant
// prev. Every Store calls it in Update, after fn and before writing, so the rules
// hold whatever fn did:
//   - ID and Version are unchanged (the store, not fn, bumps Version);
//   - a state change is an edge of the state machine;
//   - what was requested and by whom is immutable: Requester, RequesterName,
//     Groups, Claims, Target, Protocol, Mode, Operation, OperationHash,
//     Statements, Reason and CreatedAt — an approval can never be moved to a
//     different operation;
//   - Approvals only grow: earlier approvals are kept unchanged.
func CheckUpdate(prev, next *Grant) error {
	if next == nil {
		return fmt.Errorf("grant: %s: update produced no grant", prev.ID)
	}
	if next.ID != prev.ID {
		return fmt.Errorf("grant: %s: update changed the id to %q", prev.ID, next.ID)
	}
	if next.Version != prev.Version {
		return fmt.Errorf("grant: %s: update changed the version (%d → %d); only the store sets it", prev.ID, prev.Version, next.Version)
	}
	if next.State != prev.State && !CanTransition(prev.State, next.State) {
		return illegal(prev.ID, prev.State, next.State)
	}
	immutable := []struct {
		name       string
		prev, next any
	}{
		{"requester", prev.Requester, next.Requester},
		{"requester_name", prev.RequesterName, next.RequesterName},
		{"groups", prev.Groups, next.Groups},
		{"claims", prev.Claims, next.Claims},
		{"target", prev.Target, next.Target},
		{"protocol", prev.Protocol, next.Protocol},
		{"mode", prev.Mode, next.Mode},
		{"operation", prev.Operation, next.Operation},
		{"operation_hash", prev.OperationHash, next.OperationHash},
		{"statements", prev.Statements, next.Statements},
		{"reason", prev.Reason, next.Reason},
	}
	for _, f := range immutable {
		if !sameValue(f.prev, f.next) {
			return fmt.Errorf("grant: %s: %s is immutable", prev.ID, f.name)
		}
	}
	if !prev.CreatedAt.Equal(next.CreatedAt) {
		return fmt.Errorf("grant: %s: created_at is immutable", prev.ID)
	}
	if len(next.Approvals) < len(prev.Approvals) {
		return fmt.Errorf("grant: %s: approvals can only be added", prev.ID)
	}
	for i, a := range prev.Approvals {
		b := next.Approvals[i]
		if a.By != b.By || a.Name != b.Name || !a.At.Equal(b.At) || a.Decision != b.Decision || a.Reason != b.Reason {
			return fmt.Errorf("grant: %s: approval %d was changed; approvals can only be added", prev.ID, i)
		}
	}
	return nil
}

// sameValue is reflect.DeepEqual, except that a nil and an empty slice or map
// are the same (a JSON round trip with omitempty turns one into the other).
func sameValue(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Kind() == vb.Kind() && (va.Kind() == reflect.Slice || va.Kind() == reflect.Map) && va.Len() == 0 && vb.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
