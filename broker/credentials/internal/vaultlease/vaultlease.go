// Package vaultlease is the Vault plumbing that the Vault-backed credential
// sources share, in the broker's flow grant → credentials → launch:
// broker/credentials/vault (database logins), broker/credentials/kube
// (service account tokens) and broker/credentials/kv (API tokens). It checks
// mounts and role maps, checks a creds response before it becomes a
// credential, ends a lease's credential with its grant, revokes leases, and is
// the one place Vault API errors become credentials errors.
//
// Every error starts with the calling package's prefix ("vault", "kube",
// "kv"), so messages read as they would from the package itself.
//
//	m := vaultlease.Mapper{Prefix: "kube", NoRole: func(msg string) bool { return strings.Contains(msg, "does not exist") }}
//	secret, err := client.Logical().WriteWithContext(ctx, path, data)
//	if err != nil {
//		return m.Map("issue grant "+id+": write "+path, err)
//	}
//	if err := m.CheckLease("issue grant "+id+": write "+path, secret, "token"); err != nil { ... }
//	expires := vaultlease.Expires(ctx, logger, "vault kubernetes lease outlives its grant; …", now, secret, req)
//	defer m.Revoke(ctx, client, secret.LeaseID)
package vaultlease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

var (
	// NamePattern is what a Vault role name (and a target name) may be.
	NamePattern  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	mountPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
)

// Mapper maps Vault errors and checks Vault responses for one source package.
type Mapper struct {
	// Prefix starts every error: the package name ("vault", "kube").
	Prefix string
	// NoRole reports whether the message of a 400 means the role (or what it
	// is asked for) does not exist, which maps to credentials.ErrNoRole; nil:
	// no 400 does.
	NoRole func(msg string) bool
}

// Map is the one place Vault API errors become credentials errors:
// 403 → ErrDenied; 404 and a 400 that NoRole accepts → ErrNoRole; 412, 429,
// 5xx and transport failures → ErrUnavailable. op says what was attempted.
func (m Mapper) Map(op string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		switch {
		case re.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%s: %s: %w: %s", m.Prefix, op, credentials.ErrDenied, msg)
		case re.StatusCode == http.StatusNotFound,
			re.StatusCode == http.StatusBadRequest && m.NoRole != nil && m.NoRole(msg):
			return fmt.Errorf("%s: %s: %w: %d %s", m.Prefix, op, credentials.ErrNoRole, re.StatusCode, msg)
		case re.StatusCode == http.StatusPreconditionFailed, re.StatusCode == http.StatusTooManyRequests, re.StatusCode >= 500:
			return fmt.Errorf("%s: %s: %w: %d %s", m.Prefix, op, credentials.ErrUnavailable, re.StatusCode, msg)
		}
		return fmt.Errorf("%s: %s: %d %s", m.Prefix, op, re.StatusCode, msg)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %s: %w", m.Prefix, op, err)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", m.Prefix, op, credentials.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %s: %w", m.Prefix, op, err)
}

// CheckMount trims slashes from mount, defaults an empty one to def, and
// refuses one that is not [A-Za-z0-9_.-] segments or has a "." or ".."
// segment (which would move a request off its mount).
func (m Mapper) CheckMount(mount, def string) (string, error) {
	mount = strings.Trim(mount, "/")
	if mount == "" {
		mount = def
	}
	if !mountPattern.MatchString(mount) || HasDotSegment(mount) {
		return mount, fmt.Errorf("%s: Mount %q must be a path of [A-Za-z0-9_.-] segments", m.Prefix, mount)
	}
	return mount, nil
}

// CheckRoles refuses an empty role map, a role for a level that is not read,
// write or admin, and a role name that is not NamePattern or is a dot segment.
func (m Mapper) CheckRoles(roles map[spec.Access]string) error {
	if len(roles) == 0 {
		return fmt.Errorf("%s: Roles is empty: map at least one access level to a Vault role", m.Prefix)
	}
	for a, r := range roles {
		if a == spec.AccessNone || a.String() == "none" {
			return fmt.Errorf("%s: Roles has a role for access level %d, which is not read, write or admin", m.Prefix, int(a))
		}
		if !NamePattern.MatchString(r) || HasDotSegment(r) {
			return fmt.Errorf("%s: role %q for %s access must match %s", m.Prefix, r, a, NamePattern)
		}
	}
	return nil
}

// CopyRoles returns a copy of roles, so a caller's later change does not
// reach a source.
func CopyRoles(roles map[spec.Access]string) map[spec.Access]string {
	cp := make(map[spec.Access]string, len(roles))
	for a, r := range roles {
		cp[a] = r
	}
	return cp
}

// HasDotSegment reports a "." or ".." path segment.
func HasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// CheckLease refuses a non-nil creds response that cannot become a revocable
// credential: one that came back wrapped (its lease cannot be seen, so it
// cannot be revoked; it expires by its TTL) or one without a lease id. what
// names the credential in the message ("credential", "token").
func (m Mapper) CheckLease(op string, secret *api.Secret, what string) error {
	if secret.WrapInfo != nil {
		return fmt.Errorf("%s: %s: the response came back wrapped (the client has a wrapping lookup function); Source needs an unwrapped client", m.Prefix, op)
	}
	if secret.LeaseID == "" {
		return fmt.Errorf("%s: %s: response has no lease id; refusing a %s that cannot be revoked", m.Prefix, op, what)
	}
	return nil
}

// Expires is when a lease's credential stops working for the broker: the
// lease's end if it ends by the grant's expiry, otherwise the grant's expiry,
// logging msg as a warning because the login itself outlives the grant (the
// broker revokes it at grant end).
func Expires(ctx context.Context, logger *slog.Logger, msg string, now time.Time, secret *api.Secret, req credentials.Request) time.Time {
	lease := time.Duration(secret.LeaseDuration) * time.Second
	if leaseEnd := now.Add(lease); secret.LeaseDuration > 0 && !leaseEnd.After(req.Expires) {
		return leaseEnd
	}
	logger.LogAttrs(ctx, slog.LevelWarn, msg,
		slog.String("grant", req.GrantID), slog.String("lease_id", secret.LeaseID),
		slog.Duration("lease_duration", lease), slog.Time("grant_expires", req.Expires))
	return req.Expires
}

// Revoke revokes a lease (PUT sys/leases/revoke). Vault answers success for a
// lease it no longer knows, so revoking twice is nil.
func (m Mapper) Revoke(ctx context.Context, client *api.Client, leaseID string) error {
	if err := client.Sys().RevokeWithContext(ctx, leaseID); err != nil {
		return m.Map("revoke "+leaseID, err)
	}
	return nil
}

// Cleanup revokes a lease that Issue will not hand out, so nothing is left
// behind, even when ctx is already cancelled.
func (m Mapper) Cleanup(ctx context.Context, client *api.Client, leaseID string) error {
	if err := client.Sys().RevokeWithContext(context.WithoutCancel(ctx), leaseID); err != nil {
		return m.Map("revoke unusable lease "+leaseID, err)
	}
	return nil
}
