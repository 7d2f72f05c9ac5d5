package engines

import (
	"testing"

	configengine "github.com/jitgate/jitgate/ephemeral/engine/config"
	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
)

// counting is what ephemeral/session's metrics read from an engine.
type counting interface {
	Verdicts() (allowed, blocked uint64)
	MaskCounts() map[string]uint64
}

// The engines this table builds for postgres, ssh, http and config report
// their verdicts and masked values; a wrapper that dropped the methods would
// silently leave a proxy's statement and masking series empty.
func TestEnginesCount(t *testing.T) {
	for name, e := range map[string]any{
		"postgres": pgEngine{},
		"ssh":      sshEngine{},
		"http":     (*httpengine.Engine)(nil),
		"config":   (*configengine.Engine)(nil),
	} {
		if _, ok := e.(counting); !ok {
			t.Errorf("%s engine does not report Verdicts and MaskCounts", name)
		}
	}
}
