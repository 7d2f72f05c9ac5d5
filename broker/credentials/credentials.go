// Package credentials is the broker's contract with credential sources: one
// credential per grant, issued when the grant becomes active and revoked when it
// ends. It sits between the grant and the launcher in the broker's flow
// (grant → credentials → launch): the broker asks a Source for a credential, hands
// it to the ephemeral proxy inside spec.Grant, and revokes it after the proxy exits.
//
// Implementations live in sub-packages: local (an embedded minter that creates a
// PostgreSQL role per grant) and vault (HashiCorp Vault's database secrets engine).
// Every implementation must pass the contract suite in credtest.
//
// The agent never sees a credential. A credential's secret values are
// spec.WireSecret, which is meant for the private broker → proxy channel only;
// wrap a credential in Redacted before logging or auditing it.
package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Request asks a Source for the credential of one grant.
type Request struct {
	// GrantID identifies the grant; sources may derive names from it.
	GrantID string
	// Access selects the role the credential gets (read, write or admin).
	Access spec.Access
	// Expires is the hard expiry: the credential must stop working by itself at
	// this time even if Revoke is never called.
	Expires time.Time
}

// Validate checks that the request is complete and not already expired at now.
func (r Request) Validate(now time.Time) error {
	switch {
	case r.GrantID == "":
		return fmt.Errorf("credentials: request has no grant id")
	case r.Access == spec.AccessNone:
		return fmt.Errorf("credentials: grant %s: %w", r.GrantID, ErrNoRole)
	case r.Expires.IsZero():
		return fmt.Errorf("credentials: grant %s: request has no expiry", r.GrantID)
	case !r.Expires.After(now):
		return fmt.Errorf("credentials: grant %s: expiry %s is not in the future", r.GrantID, r.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// Source issues and revokes per-grant credentials.
//
// Implementations must be safe for concurrent use.
type Source interface {
	// Issue creates a credential for one grant. On error nothing is left behind:
	// no role, no lease.
	Issue(ctx context.Context, req Request) (spec.Credential, error)
	// Revoke invalidates the credential and ends every session that uses it. It is
	// idempotent: revoking twice, or revoking a credential that is already gone,
	// returns nil.
	Revoke(ctx context.Context, cred spec.Credential) error
}

var (
	// ErrUnavailable is wrapped by every error caused by the source being
	// unreachable or temporarily unable to answer (connection refused, timeout,
	// a sealed or overloaded server). Such errors may succeed when retried.
	ErrUnavailable = errors.New("credentials: source unavailable")
	// ErrNoRole is wrapped when no role is configured for the requested access
	// level, or the source does not know the configured role.
	ErrNoRole = errors.New("credentials: no role for this access level")
	// ErrDenied is wrapped when the source refuses the broker's own credentials
	// (a Vault 403, a PostgreSQL insufficient_privilege on CREATE ROLE).
	ErrDenied = errors.New("credentials: permission denied at the source")
)

// RevokeWithRetry calls s.Revoke up to attempts times, waiting base, 2·base,
// 4·base, … (capped at one minute) between attempts, and stops early when ctx
// ends. It returns nil on the first success, otherwise the last error (joined
// with ctx's error when ctx ended first). Callers audit a non-nil result: the
// credential may still be live until its hard expiry.
func RevokeWithRetry(ctx context.Context, s Source, cred spec.Credential, attempts int, base time.Duration) error {
	if attempts < 1 {
		attempts = 1
	}
	const maxWait = time.Minute
	wait := base
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("credentials: revoke %s: gave up after %d attempt(s): %w", cred.LeaseID, i, errors.Join(last, ctx.Err()))
			case <-t.C:
			}
			wait = min(wait*2, maxWait)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("credentials: revoke %s: gave up after %d attempt(s): %w", cred.LeaseID, i, errors.Join(last, err))
		}
		last = s.Revoke(ctx, cred)
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("credentials: revoke %s: %d attempt(s) failed: %w", cred.LeaseID, attempts, last)
}

// Redacted is a credential as it may appear in logs, audit events and errors:
// it prints, marshals and logs the username, lease id and expiry, never the
// password, private key or token.
//
//	logger.Info("credential issued", "credential", credentials.Redacted(cred))
type Redacted spec.Credential

type redactedView struct {
	Username string    `json:"username"`
	LeaseID  string    `json:"lease_id"`
	Expires  time.Time `json:"expires"`
}

func (r Redacted) view() redactedView {
	return redactedView{Username: r.Username, LeaseID: r.LeaseID, Expires: r.Expires}
}

func (r Redacted) String() string {
	return fmt.Sprintf("credential{username=%q lease=%q expires=%s}", r.Username, r.LeaseID, r.Expires.UTC().Format(time.RFC3339))
}

// GoString keeps %#v from printing the secret fields.
func (r Redacted) GoString() string { return "credentials.Redacted" + r.String()[len("credential"):] }

// Format makes every fmt verb use String (or GoString for %#v).
func (r Redacted) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(r.GoString()))
		return
	}
	_, _ = f.Write([]byte(r.String()))
}

// MarshalJSON writes username, lease_id and expires only.
func (r Redacted) MarshalJSON() ([]byte, error) { return json.Marshal(r.view()) }

// LogValue writes username, lease_id and expires only.
func (r Redacted) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("username", r.Username),
		slog.String("lease_id", r.LeaseID),
		slog.Time("expires", r.Expires),
	)
}
