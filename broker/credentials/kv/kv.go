// Package kv is the credential source for HTTP targets: it reads an API token
// for a grant from HashiCorp Vault's KV v2 secrets engine (<mount>/data/<path>,
// one field) or, for local use, from an embedded static store given in the
// configuration. It implements credentials.Source in the broker's flow
// grant → credentials → launch; the token travels to the ephemeral proxy in
// spec.Credential.Token and is injected upstream by ephemeral/engine/http, so
// the agent never sees it.
//
//	src, _ := kv.New(kv.Config{Client: vaultClient, Mount: "secret",
//		Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: "config-api/reader", Field: "token"}}})
//	cred, _ := src.Issue(ctx, credentials.Request{GrantID: id, Access: spec.Read, Expires: end})
//	// cred.Token is the token, cred.LeaseID "kv:secret/config-api/reader#3"
//
// # Static secrets are not revoked
//
// A KV secret is a standing token, not a dynamic credential: Vault does not
// lease it and cannot revoke it, and neither can this package. Revoke is
// therefore a no-op (it only checks that the lease id is one of this
// source's). What still holds: only the proxy ever holds the token, every
// request is guarded, masked and recorded, and the grant ends at its
// deadline. What does not: the token keeps working after the grant until
// someone rotates it in Vault. Rotate such tokens on a schedule, scope them
// as narrowly as the target allows, and prefer a dynamic source where the
// target has one. Credential.Expires is the grant's expiry, not the token's.
//
// The lease id "kv:<mount>/<path>#<version>" names the exact version read, for
// the audit trail; the static store reports version 0 (unversioned).
package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/internal/vaultlease"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

var segPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// leases maps Vault errors: 403 → ErrDenied; 404 → ErrNoRole; 412, 429, 5xx
// and transport failures → ErrUnavailable.
var leases = vaultlease.Mapper{Prefix: "kv"}

// LeasePrefix starts every lease id this package hands out.
const LeasePrefix = "kv:"

// Ref names one field of one KV secret.
type Ref struct {
	// Path is the secret's path under the mount ("config-api/reader"), without
	// "data/".
	Path string `json:"path" yaml:"path"`
	// Field is the key inside the secret whose value is the token.
	Field string `json:"field" yaml:"field"`
}

// Config configures a KV source. Exactly one of Client and Static is set.
type Config struct {
	// Client reads from Vault: address, TLS and a token with read on
	// <Mount>/data/<path> for every Ref. It MUST NOT have a wrapping lookup
	// function that wraps these reads.
	Client *api.Client
	// Static is the embedded store for local use: path → field → value. Its
	// values live in the broker's configuration; use it for development only.
	Static map[string]map[string]string
	// Mount is the KV v2 mount; default "secret".
	Mount string
	// Secrets maps an access level to the secret whose token it gets. A level
	// without an entry cannot be issued (credentials.ErrNoRole).
	Secrets map[spec.Access]Ref
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func validPath(p string) bool {
	if p == "" {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if !segPattern.MatchString(seg) || strings.Trim(seg, ".") == "" {
			return false
		}
	}
	return true
}

func (c *Config) validate() error {
	switch {
	case c.Client == nil && c.Static == nil:
		return fmt.Errorf("kv: set Client (Vault) or Static (embedded store)")
	case c.Client != nil && c.Static != nil:
		return fmt.Errorf("kv: set only one of Client and Static")
	}
	c.Mount = strings.Trim(c.Mount, "/")
	if c.Mount == "" {
		c.Mount = "secret"
	}
	if !validPath(c.Mount) {
		return fmt.Errorf("kv: Mount %q must be a path of [A-Za-z0-9_.-] segments", c.Mount)
	}
	if len(c.Secrets) == 0 {
		return fmt.Errorf("kv: Secrets is empty: map at least one access level to a secret")
	}
	for a, r := range c.Secrets {
		if a == spec.AccessNone || a.String() == "none" {
			return fmt.Errorf("kv: Secrets has an entry for access level %d, which is not read, write or admin", int(a))
		}
		if !validPath(r.Path) {
			return fmt.Errorf("kv: secret path %q for %s access must be [A-Za-z0-9_.-] segments", r.Path, a)
		}
		if r.Field == "" {
			return fmt.Errorf("kv: secret %q for %s access has no field", r.Path, a)
		}
	}
	for p := range c.Static {
		if !validPath(p) {
			return fmt.Errorf("kv: static path %q must be [A-Za-z0-9_.-] segments", p)
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Source issues API tokens from KV. It is safe for concurrent use as long as
// the caller does not reconfigure the client concurrently.
type Source struct {
	cfg     Config
	secrets map[spec.Access]Ref
	static  map[string]map[string]string
}

var _ credentials.Source = (*Source)(nil)

// New checks cfg and returns a Source. It does not contact Vault.
func New(cfg Config) (*Source, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, secrets: make(map[spec.Access]Ref, len(cfg.Secrets))}
	for a, r := range cfg.Secrets {
		s.secrets[a] = r
	}
	if cfg.Static != nil {
		s.static = make(map[string]map[string]string, len(cfg.Static))
		for p, fields := range cfg.Static {
			cp := make(map[string]string, len(fields))
			for k, v := range fields {
				cp[k] = v
			}
			s.static[p] = cp
		}
	}
	s.cfg.Secrets, s.cfg.Static = nil, nil
	return s, nil
}

// String describes the source without any secret value or client token.
func (s *Source) String() string {
	names := make([]string, 0, len(s.secrets))
	for a, r := range s.secrets {
		names = append(names, a.String()+"="+r.Path+"#"+r.Field)
	}
	sort.Strings(names)
	where := "static"
	if s.cfg.Client != nil {
		where = strconv.Quote(s.cfg.Client.Address())
	}
	return fmt.Sprintf("kv.Source{store=%s mount=%q secrets=[%s]}", where, s.cfg.Mount, strings.Join(names, " "))
}

// GoString is String, for %#v.
func (s *Source) GoString() string { return s.String() }

// Format makes every verb print String.
func (s *Source) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// Entry is one version of one KV secret, its values redacting themselves.
type Entry struct {
	Path string
	// Version is the KV v2 version read; 0 for the static store.
	Version int
	// Data holds every field; values that are not JSON strings are their JSON text.
	Data map[string]spec.Secret
}

// Read returns the latest version of the secret at path (for configuration
// targets that serve several keys). A path Vault does not have, or whose
// latest version is deleted or destroyed, wraps credentials.ErrNoRole.
func (s *Source) Read(ctx context.Context, path string) (Entry, error) {
	if !validPath(path) {
		return Entry{}, fmt.Errorf("kv: read: path %q must be [A-Za-z0-9_.-] segments", path)
	}
	if s.static != nil {
		fields, ok := s.static[path]
		if !ok {
			return Entry{}, fmt.Errorf("kv: read %s: %w: the static store has no such secret", path, credentials.ErrNoRole)
		}
		e := Entry{Path: path, Data: make(map[string]spec.Secret, len(fields))}
		for k, v := range fields {
			e.Data[k] = spec.NewSecret(v)
		}
		return e, nil
	}
	full := s.cfg.Mount + "/data/" + path
	sec, err := s.cfg.Client.KVv2(s.cfg.Mount).Get(ctx, path)
	if err != nil {
		if errors.Is(err, api.ErrSecretNotFound) {
			return Entry{}, fmt.Errorf("kv: read %s: %w: Vault has nothing at this path (404)", full, credentials.ErrNoRole)
		}
		return Entry{}, leases.Map("read "+full, err)
	}
	if sec.Raw != nil && sec.Raw.WrapInfo != nil {
		return Entry{}, fmt.Errorf("kv: read %s: the response came back wrapped (the client has a wrapping lookup function); Source needs an unwrapped client", full)
	}
	version := 0
	if sec.VersionMetadata != nil {
		version = sec.VersionMetadata.Version
		if sec.VersionMetadata.Destroyed || !sec.VersionMetadata.DeletionTime.IsZero() {
			return Entry{}, fmt.Errorf("kv: read %s: %w: version %d is deleted or destroyed", full, credentials.ErrNoRole, version)
		}
	}
	if sec.Data == nil {
		return Entry{}, fmt.Errorf("kv: read %s: %w: version %d has no data (deleted or destroyed)", full, credentials.ErrNoRole, version)
	}
	if version < 1 {
		return Entry{}, fmt.Errorf("kv: read %s: response has no version metadata; is %s a KV v2 mount?", full, s.cfg.Mount)
	}
	e := Entry{Path: path, Version: version, Data: make(map[string]spec.Secret, len(sec.Data))}
	for k, v := range sec.Data {
		switch x := v.(type) {
		case string:
			e.Data[k] = spec.NewSecret(x)
		default:
			b, err := json.Marshal(x)
			if err != nil {
				return Entry{}, fmt.Errorf("kv: read %s: field %q: %w", full, k, err)
			}
			e.Data[k] = spec.NewSecret(string(b))
		}
	}
	return e, nil
}

// Issue reads the token configured for the request's access level.
func (s *Source) Issue(ctx context.Context, req credentials.Request) (spec.Credential, error) {
	if err := req.Validate(s.cfg.Now()); err != nil {
		return spec.Credential{}, fmt.Errorf("kv: issue: %w", err)
	}
	ref, ok := s.secrets[req.Access]
	if !ok {
		return spec.Credential{}, fmt.Errorf("kv: issue grant %s: %w: no secret is configured for %s access", req.GrantID, credentials.ErrNoRole, req.Access)
	}
	e, err := s.Read(ctx, ref.Path)
	if err != nil {
		return spec.Credential{}, fmt.Errorf("kv: issue grant %s: %w", req.GrantID, err)
	}
	tok, ok := e.Data[ref.Field]
	if !ok || tok.IsZero() {
		return spec.Credential{}, fmt.Errorf("kv: issue grant %s: %w: secret %s/%s (version %d) has no field %q, or it is empty",
			req.GrantID, credentials.ErrNoRole, s.cfg.Mount, ref.Path, e.Version, ref.Field)
	}
	return spec.Credential{
		Token:   tok.Wire(),
		LeaseID: LeaseID(s.cfg.Mount, ref.Path, e.Version),
		Expires: req.Expires,
	}, nil
}

// LeaseID is "kv:<mount>/<path>#<version>".
func LeaseID(mount, path string, version int) string {
	return LeasePrefix + mount + "/" + path + "#" + strconv.Itoa(version)
}

// Revoke does nothing but check the lease id: a KV secret is a standing
// token that neither Vault nor this source can revoke (see the package
// documentation). It is idempotent.
func (s *Source) Revoke(_ context.Context, cred spec.Credential) error {
	if !strings.HasPrefix(cred.LeaseID, LeasePrefix+s.cfg.Mount+"/") {
		return fmt.Errorf("kv: revoke: lease %q is not a KV lease under mount %q", cred.LeaseID, s.cfg.Mount)
	}
	return nil
}
