package targetsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/kv"
	"github.com/jitgate/jitgate/broker/policy"
	configengine "github.com/jitgate/jitgate/ephemeral/engine/config"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// configValues issues a config grant's credential: the values of the keys
// the target exposes, read from Vault KV v2 or the embedded store when the
// grant is issued, for the proxy's config engine to filter, mask and record.
// Like every KV credential these are standing values: Revoke has nothing to
// revoke (see broker/credentials/kv), and the grant's deadline bounds the
// proxy that holds them.
type configValues struct {
	kv     *kv.Source
	mount  string
	prefix string // KV path the keys are under ("" for the embedded store)
	keys   []configengine.Key
	now    func() time.Time
}

// configSource builds a config target's source from its credentials:
// source local reads the embedded store (store: file:PATH or env:NAME, a
// JSON object {"<path>": {"<field>": "value"}}); source vault reads
// <vault_mount>/data/<kv_path>/<path> with the Vault client's environment.
func configSource(t *policy.Target, env Env) (credentials.Source, error) {
	c := t.Credentials
	s := &configValues{now: time.Now}
	for _, k := range t.Config.Keys {
		key, err := configengine.ParseKey(k)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, key)
	}
	// kv.Source wants one secret per access level for Issue; the config
	// source only calls Read, so this entry names the prefix and is unused.
	cfg := kv.Config{Secrets: map[spec.Access]kv.Ref{spec.Read: {Path: t.Name, Field: "-"}}}
	switch c.Source {
	case policy.SourceLocal:
		raw, err := env.Resolve(c.Store)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		var store map[string]map[string]string
		if err := json.Unmarshal([]byte(raw), &store); err != nil {
			return nil, fmt.Errorf("store %s: want a JSON object {\"<path>\": {\"<field>\": \"value\"}}: %w", c.Store, err)
		}
		if store == nil {
			store = map[string]map[string]string{}
		}
		cfg.Static = store
		s.mount = "store"
	case policy.SourceVault:
		client, err := env.vault()
		if err != nil {
			return nil, err
		}
		cfg.Client, cfg.Mount = client, c.VaultMount
		s.mount, s.prefix = strings.Trim(c.VaultMount, "/"), strings.Trim(c.KVPath, "/")
	default:
		return nil, fmt.Errorf("unknown credential source %v", c.Source)
	}
	src, err := kv.New(cfg)
	if err != nil {
		return nil, err
	}
	s.kv = src
	return s, nil
}

// Issue reads every secret path the target's keys name and keeps the fields
// they match. A path the store does not have contributes no keys.
func (s *configValues) Issue(ctx context.Context, req credentials.Request) (spec.Credential, error) {
	if err := req.Validate(s.now()); err != nil {
		return spec.Credential{}, fmt.Errorf("config: issue: %w", err)
	}
	var dirs []string
	for _, k := range s.keys {
		if !slices.Contains(dirs, k.Dir) {
			dirs = append(dirs, k.Dir)
		}
	}
	vals := map[string]spec.WireSecret{}
	for _, dir := range dirs {
		p := dir
		if s.prefix != "" {
			p = path.Join(s.prefix, dir)
		}
		e, err := s.kv.Read(ctx, p)
		if errors.Is(err, credentials.ErrNoRole) {
			continue
		}
		if err != nil {
			return spec.Credential{}, fmt.Errorf("config: issue grant %s: %w", req.GrantID, err)
		}
		for field, v := range e.Data {
			key := dir + "/" + field
			if slices.ContainsFunc(s.keys, func(k configengine.Key) bool { return k.Match(key) }) {
				vals[key] = v.Wire()
			}
		}
	}
	return spec.Credential{Values: vals, LeaseID: kv.LeaseID(s.mount, s.leasePath(), 0), Expires: req.Expires}, nil
}

func (s *configValues) leasePath() string {
	if s.prefix != "" {
		return s.prefix
	}
	return "config"
}

// Revoke checks the lease id only: KV values are standing secrets.
func (s *configValues) Revoke(_ context.Context, cred spec.Credential) error {
	if !strings.HasPrefix(cred.LeaseID, kv.LeasePrefix+s.mount+"/") {
		return fmt.Errorf("config: revoke: lease %q is not one of this source's", cred.LeaseID)
	}
	return nil
}
