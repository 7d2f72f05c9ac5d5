package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/policy"
	configengine "github.com/jitgate/jitgate/ephemeral/engine/config"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// evaluateConfig classifies a config target's read: one key or a glob over
// its last segment, judged with the key parser the proxy's config engine
// enforces with. A key outside the target's globs, or a glob under a secret
// path the target does not expose, is denied here; the proxy intersects a
// glob with the target's globs again when it reads.
func evaluateConfig(ev *Evaluation, deny *[]string, tgt *policy.Target, in RequestInput) error {
	if in.Mode != spec.Exec {
		return fmt.Errorf("%w: config targets have exec mode only (jitgate exec --key)", ErrBadRequest)
	}
	op := strings.TrimSpace(in.Operation)
	if op == "" {
		return fmt.Errorf("%w: exec mode needs a key (e.g. flags/db_url or flags/*)", ErrBadRequest)
	}
	ev.Access = spec.Read
	ev.Statements = append(ev.Statements, grant.StatementInfo{SQL: op, Kind: "read", Class: spec.Read.String()})
	q, err := configengine.ParseKey(op)
	if err != nil {
		*deny = append(*deny, "key refused: "+strings.TrimPrefix(err.Error(), "config: "))
		return nil
	}
	var exposed []configengine.Key
	for _, s := range tgt.Config.Keys {
		k, err := configengine.ParseKey(s)
		if err != nil {
			return fmt.Errorf("broker: config keys of %s: %w", tgt.Name, err)
		}
		exposed = append(exposed, k)
	}
	switch {
	case !q.Glob() && !slices.ContainsFunc(exposed, func(k configengine.Key) bool { return k.Match(op) }):
		*deny = append(*deny, fmt.Sprintf("key refused: %q is not one target %s exposes (%s)", op, tgt.Name, strings.Join(tgt.Config.Keys, ", ")))
	case q.Glob() && !slices.ContainsFunc(exposed, func(k configengine.Key) bool { return k.Dir == q.Dir }):
		*deny = append(*deny, fmt.Sprintf("key refused: glob %q is not under a path target %s exposes (%s)", op, tgt.Name, strings.Join(tgt.Config.Keys, ", ")))
	}
	return nil
}
