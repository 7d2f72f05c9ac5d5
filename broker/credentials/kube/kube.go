// Package kube is the credential source for Kubernetes targets: the bearer
// token the ephemeral proxy (ephemeral/engine/kube) presents to the API server.
// It implements credentials.Source in the broker's flow
// grant → credentials → launch; the token travels to the proxy in
// spec.Credential.Token, so the agent never sees it (it holds only the grant
// secret, which the proxy accepts as its bearer token).
//
// Two sources:
//
//   - Vault's Kubernetes secrets engine: Issue writes <mount>/creds/<role> with
//     the target's namespace (kubernetes_namespace) and a ttl that ends with the
//     grant; Vault creates a service account token and a lease, and Revoke
//     revokes the lease (sys/leases/revoke), which deletes the token's objects.
//
//   - A configured token (Static): a standing service account token from the
//     broker's configuration. It is handed out as it is, with lease id
//     "static:<target>", and Revoke is a no-op: such a token keeps working
//     after the grant until someone rotates it. Prefer Vault where you can;
//     scope a static token's RBAC to the one namespace and to pods get/list and
//     pods/exec.
//
//     src, _ := kube.New(kube.Config{Client: vaultClient, Mount: "kubernetes",
//     Roles: map[spec.Access]string{spec.Read: "shop-exec"}, Namespace: "shop", Target: "shop-k8s"})
//     cred, _ := src.Issue(ctx, credentials.Request{GrantID: id, Access: spec.Read, Expires: end})
//     defer src.Revoke(ctx, cred) // cred.LeaseID "kubernetes/creds/shop-exec/…"
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/internal/vaultlease"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// StaticLeasePrefix starts the lease id of a configured token.
const StaticLeasePrefix = "static:"

var (
	namePattern = vaultlease.NamePattern
	nsPattern   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

	// leases maps Vault errors: 403 → ErrDenied; 404, an unknown role or a
	// namespace the role does not allow → ErrNoRole; 412, 429, 5xx and
	// transport failures → ErrUnavailable.
	leases = vaultlease.Mapper{Prefix: "kube", NoRole: func(msg string) bool {
		return strings.Contains(msg, "does not exist") || strings.Contains(msg, "allowed_kubernetes_namespaces")
	}}
)

// Config configures a Kubernetes token source. Set exactly one of Client
// (Vault) and Static (a configured token).
type Config struct {
	// Target is the policy target's name; it names static leases.
	Target string
	// Namespace is the target's namespace, sent to Vault as
	// kubernetes_namespace. Required with Client.
	Namespace string

	// Client reaches Vault: address, TLS and a token with update on
	// <Mount>/creds/<role> and on sys/leases/revoke. It MUST NOT have a
	// wrapping lookup function that wraps creds writes.
	Client *api.Client
	// Mount is the Kubernetes secrets engine's mount; default "kubernetes".
	Mount string
	// Roles maps an access level to a Vault role under Mount. A level
	// without a role cannot be issued (credentials.ErrNoRole).
	Roles map[spec.Access]string

	// Static is a configured service account token (already resolved from
	// its env:/file: reference by the caller). It MUST NOT be set together
	// with Client.
	Static spec.Secret

	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives a warning when Vault's lease outlives the grant;
	// default discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil && c.Static.IsZero():
		return fmt.Errorf("kube: set Client (Vault) or Static (a configured token)")
	case c.Client != nil && !c.Static.IsZero():
		return fmt.Errorf("kube: set only one of Client and Static")
	case !namePattern.MatchString(c.Target):
		return fmt.Errorf("kube: Target %q must match %s", c.Target, namePattern)
	}
	if c.Client != nil {
		var err error
		if c.Mount, err = leases.CheckMount(c.Mount, "kubernetes"); err != nil {
			return err
		}
		if !nsPattern.MatchString(c.Namespace) {
			return fmt.Errorf("kube: Namespace %q is not a Kubernetes namespace name", c.Namespace)
		}
		if err := leases.CheckRoles(c.Roles); err != nil {
			return err
		}
	} else if strings.ContainsAny(c.Static.Reveal(), " \t\r\n") {
		return fmt.Errorf("kube: the configured token contains white space")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Source issues Kubernetes bearer tokens. It is safe for concurrent use as
// long as the caller does not reconfigure the Vault client concurrently.
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

// String describes the source without any token.
func (s *Source) String() string {
	if s.cfg.Client == nil {
		return fmt.Sprintf("kube.Source{target=%q static}", s.cfg.Target)
	}
	return fmt.Sprintf("kube.Source{target=%q address=%q mount=%q namespace=%q}", s.cfg.Target, s.cfg.Client.Address(), s.cfg.Mount, s.cfg.Namespace)
}

// GoString is String, for %#v.
func (s *Source) GoString() string { return s.String() }

// Format makes every verb print String.
func (s *Source) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

func (s *Source) staticLease() string { return StaticLeasePrefix + s.cfg.Target }

// Issue returns the token for one grant: the configured one, or a new
// service account token from Vault that expires with the grant.
func (s *Source) Issue(ctx context.Context, req credentials.Request) (spec.Credential, error) {
	now := s.cfg.Now()
	if err := req.Validate(now); err != nil {
		return spec.Credential{}, fmt.Errorf("kube: issue: %w", err)
	}
	if s.cfg.Client == nil {
		return spec.Credential{Token: s.cfg.Static.Wire(), LeaseID: s.staticLease(), Expires: req.Expires}, nil
	}
	role, ok := s.roles[req.Access]
	if !ok {
		return spec.Credential{}, fmt.Errorf("kube: issue grant %s: %w: no Vault role is configured for %s access", req.GrantID, credentials.ErrNoRole, req.Access)
	}
	path := s.cfg.Mount + "/creds/" + role
	ttl := int64(req.Expires.Sub(now).Round(time.Second) / time.Second)
	secret, err := s.cfg.Client.Logical().WriteWithContext(ctx, path, map[string]any{
		"kubernetes_namespace": s.cfg.Namespace,
		"ttl":                  fmt.Sprintf("%ds", max(ttl, 1)),
	})
	if err != nil {
		return spec.Credential{}, leases.Map("issue grant "+req.GrantID+": write "+path, err)
	}
	if secret == nil {
		return spec.Credential{}, fmt.Errorf("kube: issue grant %s: write %s: %w: Vault returned no secret", req.GrantID, path, credentials.ErrNoRole)
	}
	if err := leases.CheckLease("issue grant "+req.GrantID+": write "+path, secret, "token"); err != nil {
		return spec.Credential{}, err
	}
	token, _ := secret.Data["service_account_token"].(string)
	if token == "" {
		err := fmt.Errorf("kube: issue grant %s: write %s: response has no service_account_token", req.GrantID, path)
		return spec.Credential{}, errors.Join(err, leases.Cleanup(ctx, s.cfg.Client, secret.LeaseID))
	}
	user, _ := secret.Data["service_account_name"].(string)
	if ns, _ := secret.Data["service_account_namespace"].(string); ns != "" && user != "" {
		user = "system:serviceaccount:" + ns + ":" + user
	}
	expires := vaultlease.Expires(ctx, s.cfg.Logger, "vault kubernetes lease outlives its grant; the broker revokes it at grant end", now, secret, req)
	return spec.Credential{Username: user, Token: spec.NewSecret(token).Wire(), LeaseID: secret.LeaseID, Expires: expires}, nil
}

// Revoke revokes a Vault lease (PUT sys/leases/revoke; Vault answers success
// for a lease it no longer knows, so revoking twice is nil). A configured
// token cannot be revoked: Revoke checks that the lease is this source's and
// returns nil.
func (s *Source) Revoke(ctx context.Context, cred spec.Credential) error {
	switch {
	case cred.LeaseID == "":
		return fmt.Errorf("kube: revoke: credential has no lease id")
	case s.cfg.Client == nil && cred.LeaseID == s.staticLease():
		return nil
	case s.cfg.Client == nil:
		return fmt.Errorf("kube: revoke: lease %q is not this source's (%s)", cred.LeaseID, s.staticLease())
	case !strings.HasPrefix(cred.LeaseID, s.cfg.Mount+"/creds/"):
		return fmt.Errorf("kube: revoke: lease %q is not under mount %q", cred.LeaseID, s.cfg.Mount)
	}
	return leases.Revoke(ctx, s.cfg.Client, cred.LeaseID)
}
