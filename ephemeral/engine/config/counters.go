package config

import "sync/atomic"

// Reasons a value is masked, as MaskCounts names them besides the masker's
// detector names.
const (
	MaskSecretName  = "secret_name"  // the key's last segment names a secret
	MaskEntropy     = "entropy"      // the value looks random (HighEntropy)
	MaskURLPassword = "url_password" // the password of a URL in the value
)

// counters are the engine's verdict and masking counts for the proxy's
// metrics (ephemeral/session reads them at scrape time).
type counters struct {
	allowed, blocked                 atomic.Uint64
	secretName, entropy, urlPassword atomic.Uint64
}

// Verdicts returns how many reads (Exec operations, one key or one glob each)
// were allowed and refused.
func (e *Engine) Verdicts() (allowed, blocked uint64) {
	return e.counts.allowed.Load(), e.counts.blocked.Load()
}

// MaskCounts returns the values masked so far (by Exec and Value): whole
// values by MaskSecretName or MaskEntropy, URL passwords by MaskURLPassword,
// and detector matches by the masker's detector names. A revealed value
// counts nothing.
func (e *Engine) MaskCounts() map[string]uint64 {
	out := map[string]uint64{}
	if e.cfg.Masker != nil {
		out = e.cfg.Masker.Counts()
		// Counts' "column" is the masker's whole-value redactions, which here
		// are the secret_name and entropy ones below.
		delete(out, "column")
	}
	out[MaskSecretName] = e.counts.secretName.Load()
	out[MaskEntropy] = e.counts.entropy.Load()
	out[MaskURLPassword] = e.counts.urlPassword.Load()
	return out
}
