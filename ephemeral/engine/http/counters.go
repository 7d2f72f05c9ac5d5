package http

import (
	"sync/atomic"

	"github.com/jitgate/jitgate/ephemeral/record"
)

// DetectJSONField is the MaskCounts name of values redacted whole because
// their JSON field path matches Config.MaskJSONFields. Field paths are not
// metric labels: they come from the upstream's data and are unbounded.
const DetectJSONField = "json_field"

// counters are the engine's verdict and masking counts for the proxy's
// metrics (ephemeral/session reads them at scrape time).
type counters struct {
	allowed, blocked atomic.Uint64
	jsonFields       atomic.Uint64
}

// verdict counts and records one verdict on a request.
func (e *Engine) verdict(conn int, line string, allowed bool, reason, rule string) error {
	if allowed {
		e.counts.allowed.Add(1)
	} else {
		e.counts.blocked.Add(1)
	}
	return e.rec(record.Event{Type: record.Verdict, Conn: conn, Statement: line, Allowed: &allowed, Reason: reason, Tag: rule})
}

// Verdicts returns how many requests were allowed and refused by the rules
// (and the proxy's own refusals: CONNECT, upgrades, a foreign host, an Exec
// operation that does not parse); every recorded verdict counts once. A
// request refused later (body too large, a binary response) was allowed by
// the rules and counts as allowed.
func (e *Engine) Verdicts() (allowed, blocked uint64) {
	return e.counts.allowed.Load(), e.counts.blocked.Load()
}

// MaskCounts returns the values masked so far, by detector name (matches in
// bodies, JSON strings, response headers, error messages and the recorded
// request line and body), plus DetectJSONField for values redacted whole by
// a JSON field pattern. Nil when the grant masks nothing.
func (e *Engine) MaskCounts() map[string]uint64 {
	if !e.masking && len(e.patterns) == 0 {
		return nil
	}
	out := map[string]uint64{}
	if e.masking {
		out = e.cfg.Masker.Counts()
		// Counts' "column" is the masker's whole-value redactions, which here
		// are the JSON field redactions counted below.
		delete(out, "column")
	}
	if len(e.patterns) > 0 {
		out[DetectJSONField] = e.counts.jsonFields.Load()
	}
	return out
}
