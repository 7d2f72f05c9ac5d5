package ssh

import "sync/atomic"

// verdictCounts counts the engine's verdicts for the proxy's metrics
// (ephemeral/session reads them at scrape time).
type verdictCounts struct{ allowed, blocked atomic.Uint64 }

func (v *verdictCounts) note(allowed bool) {
	if allowed {
		v.allowed.Add(1)
	} else {
		v.blocked.Add(1)
	}
}

// Verdicts returns how many requests the engine allowed and refused on this
// grant's connections and Exec calls: every recorded verdict counts once
// (exec commands, shells, subsystems, pty-req; refused env, forwarding, agent
// and X11 requests, global requests and channel types count as blocked).
func (e *Engine) Verdicts() (allowed, blocked uint64) {
	return e.verdicts.allowed.Load(), e.verdicts.blocked.Load()
}

// MaskCounts returns the values masked so far in command output (streamed
// and Exec), by detector name; nil when the grant masks nothing. Each secret
// sent counts once however the output was split (mask.Stream).
func (e *Engine) MaskCounts() map[string]uint64 {
	if e.cfg.Masker == nil {
		return nil
	}
	out := e.cfg.Masker.Counts()
	delete(out, "column") // no column rules on a byte stream
	return out
}
