package postgres

import "sync/atomic"

// verdictCounts counts the guard's verdicts on one engine, for the proxy's
// metrics (ephemeral/session reads them at scrape time).
type verdictCounts struct{ allowed, blocked atomic.Uint64 }

func (v *verdictCounts) note(allowed bool) {
	if allowed {
		v.allowed.Add(1)
	} else {
		v.blocked.Add(1)
	}
}

// Verdicts returns how many statements the guard allowed and blocked on this
// engine's connections (each recorded verdict counts once).
func (e *Engine) Verdicts() (allowed, blocked uint64) {
	return e.verdicts.allowed.Load(), e.verdicts.blocked.Load()
}

// MaskCounts returns the values masked so far by detector name, plus "column"
// for whole values redacted by column rules (mask.Masker.Counts); nil when the
// grant masks nothing.
func (e *Engine) MaskCounts() map[string]uint64 {
	if e.cfg.Masker == nil {
		return nil
	}
	return e.cfg.Masker.Counts()
}
