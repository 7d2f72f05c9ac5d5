// Package targetsource turns a policy target's `credentials:` block into the
// credential source the broker issues per-grant credentials from. It is the
// one place that does so: the local stack (cmd/jitgate) and the AWS
// functions (functions/internal/deploy) both call New, so every target kind
// is served the same way wherever the broker runs.
//
//	policy target → targetsource.New → credentials.Source → broker (issue/revoke per grant)
//
// References in the policy ("env:NAME", "file:PATH") are resolved by the
// caller's Env.Resolve; this package reads no environment and no files.
package targetsource

import (
	"errors"
	"fmt"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/kube"
	"github.com/jitgate/jitgate/broker/credentials/kv"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/broker/credentials/sshca"
	"github.com/jitgate/jitgate/broker/credentials/vault"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Env is what building a source may need from its process.
type Env struct {
	// Resolve reads a reference ("env:NAME", "file:PATH", or a literal).
	Resolve func(ref string) (string, error)
	// Vault returns the process's Vault client; nil or an error when Vault
	// is not configured.
	Vault func() (*vaultapi.Client, error)
	// PostgresConnectionLimit is the CONNECTION LIMIT of per-grant roles the
	// embedded minter creates (0: PostgreSQL's default, unlimited).
	PostgresConnectionLimit int
}

// New builds target t's credential source.
func New(t *policy.Target, env Env) (credentials.Source, error) {
	if env.Resolve == nil {
		return nil, errors.New("targetsource: Env.Resolve is required")
	}
	switch t.Protocol {
	case spec.Postgres:
		return postgresSource(t, env)
	case spec.SSH:
		return sshSource(t, env)
	case spec.HTTP:
		return httpSource(t, env)
	case spec.Kube:
		return kubeSource(t, env)
	case spec.Config:
		return configSource(t, env)
	}
	return nil, fmt.Errorf("targetsource: target %s: no credential source for %s targets", t.Name, t.Protocol)
}

func (e Env) vault() (*vaultapi.Client, error) {
	if e.Vault == nil {
		return nil, errors.New("source vault needs a Vault client (VAULT_ADDR and a token)")
	}
	c, err := e.Vault()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, errors.New("source vault needs a Vault client (VAULT_ADDR and a token)")
	}
	return c, nil
}

func roles(c policy.TargetCredentials) map[spec.Access]string {
	out := map[spec.Access]string{}
	for _, a := range []spec.Access{spec.Read, spec.Write, spec.Admin} {
		if r := c.Role(a); r != "" {
			out[a] = r
		}
	}
	return out
}

// postgresSource is the embedded minter (per-grant roles through an admin
// DSN) or Vault's database secrets engine.
func postgresSource(t *policy.Target, env Env) (credentials.Source, error) {
	c := t.Credentials
	switch c.Source {
	case policy.SourceLocal:
		dsn, err := env.Resolve(c.AdminDSN)
		if err != nil {
			return nil, fmt.Errorf("admin_dsn: %w", err)
		}
		return local.NewPostgres(local.PostgresConfig{AdminDSN: dsn, Database: t.Database, Roles: roles(c), ConnectionLimit: env.PostgresConnectionLimit})
	case policy.SourceVault:
		client, err := env.vault()
		if err != nil {
			return nil, err
		}
		return vault.New(vault.Config{Client: client, Mount: c.VaultMount, Roles: roles(c)})
	}
	return nil, fmt.Errorf("unknown credential source %v (want local or vault)", c.Source)
}

// sshSource is the embedded SSH CA: per-grant certificates for the target's
// login user, valid until the grant ends.
func sshSource(t *policy.Target, env Env) (credentials.Source, error) {
	if t.Credentials.Source != policy.SourceLocal {
		return nil, errors.New("ssh targets support source local (the embedded SSH CA) for now")
	}
	pemText, err := env.Resolve(t.Credentials.CAKey)
	if err != nil {
		return nil, fmt.Errorf("ca_key: %w", err)
	}
	ca, err := sshca.LoadCA([]byte(pemText))
	if err != nil {
		return nil, fmt.Errorf("ca_key: %w", err)
	}
	return sshca.New(sshca.Config{
		CA:          ca,
		Principals:  map[spec.Access]string{spec.Read: t.User, spec.Write: t.User, spec.Admin: t.User},
		Permissions: sshca.Permissions{PTY: t.Commands.Interactive, PortForwarding: t.Commands.PortForwarding},
	})
}

// httpSource is where an http target's API token comes from: a reference
// (env:NAME, file:PATH) or Vault KV v2. The proxy injects it; the agent never
// sees it.
func httpSource(t *policy.Target, env Env) (credentials.Source, error) {
	c := t.Credentials
	ref := kv.Ref{Path: t.Name, Field: "token"}
	cfg := kv.Config{Secrets: map[spec.Access]kv.Ref{}}
	switch c.Source {
	case policy.SourceLocal:
		tok, err := env.Resolve(c.Token)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		cfg.Static = map[string]map[string]string{t.Name: {"token": tok}}
	case policy.SourceVault:
		client, err := env.vault()
		if err != nil {
			return nil, err
		}
		cfg.Client, cfg.Mount = client, c.VaultMount
		ref = kv.Ref{Path: c.KVPath, Field: c.KVField}
	default:
		return nil, fmt.Errorf("unknown credential source %v (want local or vault)", c.Source)
	}
	for _, a := range []spec.Access{spec.Read, spec.Write, spec.Admin} {
		cfg.Secrets[a] = ref
	}
	return kv.New(cfg)
}

// kubeSource is where a kube target's bearer token comes from: a configured
// token (env:NAME or file:PATH) or Vault's Kubernetes secrets engine. The
// proxy presents it upstream; the agent never sees it.
func kubeSource(t *policy.Target, env Env) (credentials.Source, error) {
	c := t.Credentials
	switch c.Source {
	case policy.SourceLocal:
		tok, err := env.Resolve(c.Token)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		return kube.New(kube.Config{Target: t.Name, Static: spec.NewSecret(tok)})
	case policy.SourceVault:
		client, err := env.vault()
		if err != nil {
			return nil, err
		}
		return kube.New(kube.Config{Target: t.Name, Namespace: t.Kube.Scope.Namespace, Client: client, Mount: c.VaultMount, Roles: roles(c)})
	}
	return nil, fmt.Errorf("unknown credential source %v (want local or vault)", c.Source)
}
