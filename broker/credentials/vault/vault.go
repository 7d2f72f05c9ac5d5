// Package vault is the production credential source: HashiCorp Vault's database
// secrets engine issues a PostgreSQL login per grant and revokes it through its
// lease. It implements credentials.Source in the broker's flow
// grant → credentials → launch, and offers response wrapping (Wrap, Unwrap) so a
// remote launcher can deliver a spec.Grant to an ephemeral task as a single-use
// token instead of plain text.
//
// Vault's dynamic roles decide what a credential may do. For the guarantees the
// broker relies on (the credential stops working at expiry; Revoke also ends live
// sessions), configure each role like this (PostgreSQL plugin):
//
//	vault write database/roles/shop_read db_name=shop default_ttl=1h max_ttl=1h \
//	  creation_statements='CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '"'"'{{password}}'"'"' VALID UNTIL '"'"'{{expiration}}'"'"' INHERIT IN ROLE shop_read; ALTER ROLE "{{name}}" SET default_transaction_read_only = on;' \
//	  revocation_statements='ALTER ROLE "{{name}}" NOLOGIN; SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = '"'"'{{name}}'"'"'; REASSIGN OWNED BY "{{name}}" TO shop_read; DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}";'
//
// Vault's creds endpoint takes no TTL, so the lease lasts the role's default_ttl.
// Keep default_ttl at or below the longest grant: when a lease outlives the
// grant, Issue reports the grant's expiry (the broker revokes then) and logs
// that the database login itself would have lived longer.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

var (
	// ErrWrapToken is returned by Unwrap when Vault says the wrapping token is not
	// valid: it expired, or it was already unwrapped, possibly by someone who
	// intercepted it. Treat the latter as a security event.
	ErrWrapToken = errors.New("vault: wrapping token is not valid or does not exist (expired, or already used)")

	namePattern  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	mountPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
)

// Config configures a Vault database-credentials source.
type Config struct {
	// Client is configured by the caller: address, TLS, and a token (or an auth
	// method's login) with read on <Mount>/creds/<role> and update on
	// sys/leases/revoke. It MUST NOT have a wrapping lookup function that wraps
	// creds reads: Issue needs the plain response.
	Client *api.Client
	// Mount is the database secrets engine mount; default "database".
	Mount string
	// Roles maps an access level to a Vault role name under Mount. A level
	// without a role cannot be issued (credentials.ErrNoRole).
	Roles map[spec.Access]string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives a warning when a lease outlives its grant; default discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Client == nil {
		return fmt.Errorf("vault: Client is required")
	}
	c.Mount = strings.Trim(c.Mount, "/")
	if c.Mount == "" {
		c.Mount = "database"
	}
	if !mountPattern.MatchString(c.Mount) || hasDotSegment(c.Mount) {
		return fmt.Errorf("vault: Mount %q must be a path of [A-Za-z0-9_.-] segments", c.Mount)
	}
	if len(c.Roles) == 0 {
		return fmt.Errorf("vault: Roles is empty: map at least one access level to a Vault role")
	}
	for a, r := range c.Roles {
		if a == spec.AccessNone || a.String() == "none" {
			return fmt.Errorf("vault: Roles has a role for access level %d, which is not read, write or admin", int(a))
		}
		if !namePattern.MatchString(r) || hasDotSegment(r) {
			return fmt.Errorf("vault: role %q for %s access must match %s", r, a, namePattern)
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// hasDotSegment reports a "." or ".." path segment, which would move a request
// off its mount.
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// Source issues database credentials from Vault. It is safe for concurrent use
// as long as the caller does not reconfigure the client concurrently.
type Source struct {
	cfg   Config
	roles map[spec.Access]string
}

var _ credentials.Source = (*Source)(nil)

// New checks cfg and returns a Source. It does not contact Vault.
func New(cfg Config) (*Source, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	roles := make(map[spec.Access]string, len(cfg.Roles))
	for a, r := range cfg.Roles {
		roles[a] = r
	}
	cfg.Roles = roles
	return &Source{cfg: cfg, roles: roles}, nil
}

// String describes the source without its client's token.
func (s *Source) String() string {
	names := make([]string, 0, len(s.roles))
	for a, r := range s.roles {
		names = append(names, a.String()+"="+r)
	}
	sort.Strings(names)
	return fmt.Sprintf("vault.Source{address=%q mount=%q roles=[%s]}", s.cfg.Client.Address(), s.cfg.Mount, strings.Join(names, " "))
}

// GoString is String, for %#v.
func (s *Source) GoString() string { return s.String() }

// Format makes every verb print String.
func (s *Source) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// Issue reads <mount>/creds/<role> for the request's access level.
func (s *Source) Issue(ctx context.Context, req credentials.Request) (spec.Credential, error) {
	now := s.cfg.Now()
	if err := req.Validate(now); err != nil {
		return spec.Credential{}, fmt.Errorf("vault: issue: %w", err)
	}
	role, ok := s.roles[req.Access]
	if !ok {
		return spec.Credential{}, fmt.Errorf("vault: issue grant %s: %w: no Vault role is configured for %s access", req.GrantID, credentials.ErrNoRole, req.Access)
	}
	path := s.cfg.Mount + "/creds/" + role
	secret, err := s.cfg.Client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return spec.Credential{}, mapError("issue grant "+req.GrantID+": read "+path, err)
	}
	if secret == nil {
		// The client turns a 404 into (nil, nil): no such mount or role.
		return spec.Credential{}, fmt.Errorf("vault: issue grant %s: read %s: %w: Vault has nothing at this path (404)", req.GrantID, path, credentials.ErrNoRole)
	}
	if secret.WrapInfo != nil {
		// We cannot revoke what we cannot see; the wrapped lease expires by its TTL.
		return spec.Credential{}, fmt.Errorf("vault: issue grant %s: read %s: the response came back wrapped (the client has a wrapping lookup function); Source needs an unwrapped client", req.GrantID, path)
	}
	username, _ := secret.Data["username"].(string)
	password, _ := secret.Data["password"].(string)
	if secret.LeaseID == "" {
		return spec.Credential{}, fmt.Errorf("vault: issue grant %s: read %s: response has no lease id; refusing a credential that cannot be revoked", req.GrantID, path)
	}
	if username == "" || password == "" {
		err := fmt.Errorf("vault: issue grant %s: read %s: response has no username or password", req.GrantID, path)
		return spec.Credential{}, errors.Join(err, s.cleanup(ctx, secret.LeaseID))
	}
	expires := req.Expires
	lease := time.Duration(secret.LeaseDuration) * time.Second
	if leaseEnd := now.Add(lease); secret.LeaseDuration > 0 && !leaseEnd.After(req.Expires) {
		expires = leaseEnd
	} else {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "vault lease outlives its grant; the broker revokes it at grant end",
			slog.String("grant", req.GrantID), slog.String("lease_id", secret.LeaseID),
			slog.Duration("lease_duration", lease), slog.Time("grant_expires", req.Expires))
	}
	return spec.Credential{
		Username: username,
		Password: spec.NewSecret(password).Wire(),
		LeaseID:  secret.LeaseID,
		Expires:  expires,
	}, nil
}

// cleanup revokes a lease Issue will not hand out, so nothing is left behind.
func (s *Source) cleanup(ctx context.Context, leaseID string) error {
	if err := s.cfg.Client.Sys().RevokeWithContext(context.WithoutCancel(ctx), leaseID); err != nil {
		return mapError("revoke unusable lease "+leaseID, err)
	}
	return nil
}

// Revoke revokes the credential's lease (PUT sys/leases/revoke). Vault answers
// success for a lease it no longer knows, so revoking twice is nil.
func (s *Source) Revoke(ctx context.Context, cred spec.Credential) error {
	if cred.LeaseID == "" {
		return fmt.Errorf("vault: revoke: credential %q has no lease id", cred.Username)
	}
	if !strings.HasPrefix(cred.LeaseID, s.cfg.Mount+"/") {
		return fmt.Errorf("vault: revoke: lease %q is not under mount %q", cred.LeaseID, s.cfg.Mount)
	}
	if err := s.cfg.Client.Sys().RevokeWithContext(ctx, cred.LeaseID); err != nil {
		return mapError("revoke "+cred.LeaseID, err)
	}
	return nil
}

// mapError is the one place Vault API errors become credentials errors:
// 403 → ErrDenied; 404 and "unknown role" → ErrNoRole; 412, 429, 5xx and
// transport failures → ErrUnavailable.
func mapError(op string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		switch {
		case re.StatusCode == http.StatusForbidden:
			return fmt.Errorf("vault: %s: %w: %s", op, credentials.ErrDenied, msg)
		case re.StatusCode == http.StatusNotFound,
			re.StatusCode == http.StatusBadRequest && strings.Contains(msg, "unknown role"):
			return fmt.Errorf("vault: %s: %w: %d %s", op, credentials.ErrNoRole, re.StatusCode, msg)
		case re.StatusCode == http.StatusPreconditionFailed, re.StatusCode == http.StatusTooManyRequests, re.StatusCode >= 500:
			return fmt.Errorf("vault: %s: %w: %d %s", op, credentials.ErrUnavailable, re.StatusCode, msg)
		}
		return fmt.Errorf("vault: %s: %d %s", op, re.StatusCode, msg)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("vault: %s: %w", op, err)
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("vault: %s: %w: %w", op, credentials.ErrUnavailable, err)
	}
	return fmt.Errorf("vault: %s: %w", op, err)
}

// Wrap stores data in Vault's cubbyhole behind a single-use wrapping token that
// expires after ttl (POST sys/wrapping/wrap with X-Vault-Wrap-TTL). Hand the
// token, not the data, to the remote task; it calls Unwrap once.
func Wrap(ctx context.Context, client *api.Client, data map[string]any, ttl time.Duration) (string, error) {
	if client == nil {
		return "", fmt.Errorf("vault: wrap: client is nil")
	}
	secs := int64(ttl / time.Second)
	if secs < 1 {
		return "", fmt.Errorf("vault: wrap: ttl %s is below Vault's one-second minimum", ttl)
	}
	if len(data) == 0 {
		return "", fmt.Errorf("vault: wrap: nothing to wrap")
	}
	hdr := http.Header{"X-Vault-Wrap-TTL": []string{fmt.Sprintf("%ds", secs)}}
	secret, err := client.Logical().WriteWithRequest(ctx, api.NewLogicalWriteRequest("sys/wrapping/wrap", data, hdr))
	if err != nil {
		return "", mapError("wrap", err)
	}
	if secret == nil || secret.WrapInfo == nil || secret.WrapInfo.Token == "" {
		return "", fmt.Errorf("vault: wrap: response has no wrap_info token")
	}
	return secret.WrapInfo.Token, nil
}

// Unwrap exchanges a wrapping token for the data it wraps (PUT
// sys/wrapping/unwrap, authenticated by the wrapping token itself, so the caller
// needs no other Vault token). A token can be unwrapped once: a second attempt,
// or an expired token, returns ErrWrapToken. client supplies address, TLS and
// namespace; its own token, if any, is not used and not changed.
func Unwrap(ctx context.Context, client *api.Client, token string) (map[string]any, error) {
	if client == nil {
		return nil, fmt.Errorf("vault: unwrap: client is nil")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, fmt.Errorf("vault: unwrap: empty wrapping token")
	}
	c, err := client.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("vault: unwrap: clone client: %w", err)
	}
	c.SetToken(token)
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	secret, err := c.Logical().UnwrapWithContext(ctx, token)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest && strings.Contains(strings.Join(re.Errors, " "), "wrapping token is not valid") {
			return nil, ErrWrapToken
		}
		return nil, mapError("unwrap", err)
	}
	if secret == nil {
		return nil, ErrWrapToken
	}
	return secret.Data, nil
}
