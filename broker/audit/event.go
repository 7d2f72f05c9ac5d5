// Package audit is the broker's tamper-evident audit log: one JSON line per
// decision and lifecycle step of a grant (requested, decided, approved or
// denied, credential issued with its lease id, command allowed or blocked,
// session ended, credential revoked, recording stored), each line hash-chained to
// the one before it. It sits at the end of every step of the broker's flow:
// whatever the broker decides or does to a grant is appended here.
//
// # Chain
//
// Every line is exactly the canonical JSON of its Event (what encoding/json
// produces for it) followed by "\n". Hash is the lowercase hex SHA-256 of that
// canonical JSON with the hash field left out; Prev is the Hash of the previous
// line ("" on the first); Seq counts from 1 without gaps. Because a line must be
// byte-for-byte canonical, the hash covers every byte of the line except the
// hash itself: whitespace, key order, duplicate or unknown keys are edits too.
//
// Verify detects an edited, removed, inserted or reordered line and names the
// first bad one. It cannot detect removal of the newest lines, nor a log that
// someone rewrote from some line on with freshly computed hashes: anchor the
// chain outside the file by storing Log.Head somewhere the writer of the file
// cannot change, and check it with VerifyHead.
//
// # Use
//
//	l, err := audit.Open(filepath.Join(dataDir, "audit.jsonl"), audit.Options{})
//	if err != nil { ... }
//	defer l.Close()
//	ev, err := l.Append(ctx, audit.Event{Type: audit.GrantRequested, GrantID: g.ID, Actor: g.Requester, Target: g.Target})
//	if err != nil { ... } // refuse the operation: an unaudited decision is not taken
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Type names what an event records. It is a closed set; Append refuses others.
type Type string

const (
	GrantRequested         Type = "grant.requested"
	GrantDecided           Type = "grant.decided"
	GrantNotified          Type = "grant.notified"
	GrantApproved          Type = "grant.approved"
	GrantDenied            Type = "grant.denied"
	GrantExpired           Type = "grant.expired"
	GrantRevoked           Type = "grant.revoked"
	GrantFailed            Type = "grant.failed"
	CredentialIssued       Type = "credential.issued"
	CredentialRevoked      Type = "credential.revoked"
	CredentialRevokeFailed Type = "credential.revoke_failed"
	SessionStarted         Type = "session.started"
	SessionEnded           Type = "session.ended"
	CommandAllowed         Type = "command.allowed"
	CommandBlocked         Type = "command.blocked"
	RecordingStored        Type = "recording.stored"
)

// Types lists every valid event type.
func Types() []Type {
	return []Type{
		GrantRequested, GrantDecided, GrantNotified, GrantApproved, GrantDenied, GrantExpired, GrantRevoked, GrantFailed,
		CredentialIssued, CredentialRevoked, CredentialRevokeFailed,
		SessionStarted, SessionEnded, CommandAllowed, CommandBlocked, RecordingStored,
	}
}

// Valid reports whether t is one of Types.
func (t Type) Valid() bool {
	for _, v := range Types() {
		if t == v {
			return true
		}
	}
	return false
}

func (t Type) String() string { return string(t) }

// Event is one audit line. Append sets Seq, Time, Prev and Hash; the caller sets
// the rest.
type Event struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Type    Type      `json:"type"`
	GrantID string    `json:"grant_id,omitempty"`
	// Actor is the identity key of whoever caused the event (requester, approver,
	// the broker itself for expiry).
	Actor     string   `json:"actor,omitempty"`
	Target    string   `json:"target,omitempty"`
	Rule      string   `json:"rule,omitempty"`
	Reasons   []string `json:"reasons,omitempty"`
	LeaseID   string   `json:"lease_id,omitempty"`
	Statement string   `json:"statement,omitempty"`
	Detail    string   `json:"detail,omitempty"`
	// StageMillis holds per-stage timings (token, policy, credential, launch, run,
	// revoke) in milliseconds.
	StageMillis map[string]float64 `json:"stage_ms,omitempty"`
	// Prev is the Hash of the previous line ("" for the first).
	Prev string `json:"prev,omitempty"`
	// Hash is the hex SHA-256 of this event's canonical JSON without Hash.
	Hash string `json:"hash,omitempty"`
}

// seal computes ev.Hash and returns the line to write (without the newline).
func seal(ev *Event) ([]byte, error) {
	ev.Hash = ""
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	ev.Hash = hashOf(body)
	return json.Marshal(ev)
}

func hashOf(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// MaxLineBytes bounds one line. Append refuses a larger event (a statement of
// several hundred KiB is refused, not truncated: the log never alters evidence);
// Verify reports a longer line as an error.
const MaxLineBytes = 1 << 20

// VerifyError names the first line of a log that does not verify. Line is
// 1-based; for a truncated log it is the line after the last one.
type VerifyError struct {
	Line   int
	Reason string
}

func (e *VerifyError) Error() string { return fmt.Sprintf("audit: line %d: %s", e.Line, e.Reason) }
