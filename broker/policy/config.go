package policy

import (
	"strings"

	"gopkg.in/yaml.v3"

	configengine "github.com/jitgate/jitgate/ephemeral/engine/config"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// ConfigTarget is the configuration part of a config target: which keys of
// its KV store grants may read, and which are shown unmasked.
//
//	targets:
//	  - name: app-config
//	    kind: config
//	    keys: ["flags/*", "db/url"]       # <secret path>/<field>; globs in the field only
//	    reveal: ["flags/beta"]            # shown unmasked; everything else secret-looking is masked
//	    credentials: {source: local, store: file:config-store.json}   # embedded store: {"<path>": {"<field>": "value"}}
//	    # or: {source: vault, vault_mount: secret, kv_path: app}      # KV v2 secrets under secret/data/app/...
//	    masking: {detectors: [credit_card, aws_access_key]}
//
// Config targets have no address (the store is the target) and exec mode
// only; a read is judged by the same key parser the proxy enforces with
// (ephemeral/engine/config).
type ConfigTarget struct {
	// Keys are the key globs the target exposes.
	Keys []string
	// Reveal are key globs whose values are shown unmasked.
	Reveal []string
}

// configKeys are the target keys only config targets take.
var configKeys = []string{"keys", "reveal"}

// configTarget reads the config-only keys of a target (and refuses them on
// other kinds).
func (l *loader) configTarget(n *yaml.Node, f *fields, what string, t *Target) {
	if t.Protocol != spec.Config {
		for _, k := range configKeys {
			if f.has(k) {
				l.errAt(f.vals[k], "%s: %s is only for config targets", what, k)
			}
		}
		return
	}
	for _, key := range configKeys {
		globs, _ := l.strList(f, key, what)
		for i, g := range globs {
			if _, err := configengine.ParseKey(g); err != nil {
				l.errAt(f.vals[key].Content[i], "%s: %s entry %q: %v", what, key, g, strings.TrimPrefix(err.Error(), "config: "))
			}
		}
		if key == "keys" {
			t.Config.Keys = globs
		} else {
			t.Config.Reveal = globs
		}
	}
	if len(t.Config.Keys) == 0 {
		l.errAt(n, "%s: keys is required for a config target (the key globs grants may read, e.g. [\"flags/*\"])", what)
	}
	if !f.has("credentials") {
		l.errAt(n, "%s: credentials are required for a config target (source local with store: file:PATH, or source vault with vault_mount and kv_path)", what)
	}
	if t.Address == "" {
		t.Address = "kv:" + t.Name
	}
}

// configCredentials checks a config target's credentials block.
func (l *loader) configCredentials(n *yaml.Node, w string, c TargetCredentials) {
	switch {
	case c.Token != "" || c.KVField != "":
		l.errAt(n, "%s: token and kv_field are for http targets; a config target reads whole secrets (store or kv_path)", w)
	case c.Source == SourceLocal && c.Store == "":
		l.errAt(n, "%s: store (file:PATH or env:NAME, a JSON object of path → field → value) is required for a config target with source local", w)
	case c.Source == SourceLocal && !strings.HasPrefix(c.Store, "env:") && !strings.HasPrefix(c.Store, "file:"):
		l.errAt(n, "%s: store must be a reference (file:PATH or env:NAME), not the values themselves", w)
	case c.Source == SourceVault && c.KVPath == "":
		l.errAt(n, "%s: kv_path (the KV v2 path prefix the keys are under) is required for a config target with source vault", w)
	case c.Source == SourceVault && c.Store != "":
		l.errAt(n, "%s: store is for source local", w)
	}
}

// SpecConfig is the grant's key scope.
func (c ConfigTarget) SpecConfig() spec.ConfigScope {
	return spec.ConfigScope{Keys: append([]string(nil), c.Keys...), Reveal: append([]string(nil), c.Reveal...)}
}
