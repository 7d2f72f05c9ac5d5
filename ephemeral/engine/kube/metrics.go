package kube

// Verdicts returns how many agent requests were allowed and refused so far
// (every classified request, authentication failures excepted: they never
// reach a verdict); the proxy's metrics read it (ephemeral/session).
func (e *Engine) Verdicts() (allowed, blocked uint64) {
	return e.allowed.Load(), e.blocked.Load()
}

// MaskCounts returns the values masked so far by detector name
// (mask.Masker.Counts): exec and attach output, pod objects and the request
// targets written to the recording. Nil when the grant masks nothing.
// Port-forward payloads are not masked and not counted.
func (e *Engine) MaskCounts() map[string]uint64 {
	if e.cfg.Masker == nil {
		return nil
	}
	return e.cfg.Masker.Counts()
}

func (e *Engine) countVerdict(allowed bool) {
	if allowed {
		e.allowed.Add(1)
	} else {
		e.blocked.Add(1)
	}
}
