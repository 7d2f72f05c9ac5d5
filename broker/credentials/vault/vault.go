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
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/internal/vaultlease"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

var (
	// ErrWrapToken is returned by Unwrap when Vault says the wrapping token is not
	// valid: it expired, or it was already unwrapped, possibly by someone who
	// intercepted it. Treat the latter as a security event.
	ErrWrapToken = errors.New("vault: wrapping token is not valid or does not exist (expired, or already used)")

	// leases maps Vault errors: 403 → ErrDenied; 404 and "unknown role" →
	// ErrNoRole; 412, 429, 5xx and transport failures → ErrUnavailable.
	leases = vaultlease.Mapper{Prefix: "vault", NoRole: func(msg string) bool { return strings.Contains(msg, "unknown role") }}
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
	var err error
	if c.Mount, err = leases.CheckMount(c.Mount, "database"); err != nil {
		return err
	}
	if err := leases.CheckRoles(c.Roles); err != nil {
		return err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
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
	roles := vaultlease.CopyRoles(cfg.Roles)
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
		return spec.Credential{}, leases.Map("issue grant "+req.GrantID+": read "+path, err)
	}
	if secret == nil {
		// The client turns a 404 into (nil, nil): no such mount or role.
		return spec.Credential{}, fmt.Errorf("vault: issue grant %s: read %s: %w: Vault has nothing at this path (404)", req.GrantID, path, credentials.ErrNoRole)
	}
	if err := leases.CheckLease("issue grant "+req.GrantID+": read "+path, secret, "credential"); err != nil {
		return spec.Credential{}, err
	}
	username, _ := secret.Data["username"].(string)
	password, _ := secret.Data["password"].(string)
	if username == "" || password == "" {
		err := fmt.Errorf("vault: issue grant %s: read %s: response has no username or password", req.GrantID, path)
		return spec.Credential{}, errors.Join(err, leases.Cleanup(ctx, s.cfg.Client, secret.LeaseID))
	}
	expires := vaultlease.Expires(ctx, s.cfg.Logger, "vault lease outlives its grant; the broker revokes it at grant end", now, secret, req)
	return spec.Credential{
		Username: username,
		Password: spec.NewSecret(password).Wire(),
		LeaseID:  secret.LeaseID,
		Expires:  expires,
	}, nil
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
	return leases.Revoke(ctx, s.cfg.Client, cred.LeaseID)
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
		return "", leases.Map("wrap", err)
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
		return nil, leases.Map("unwrap", err)
	}
	if secret == nil {
		return nil, ErrWrapToken
	}
	return secret.Data, nil
}
