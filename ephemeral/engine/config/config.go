// Package config is the configuration engine of the ephemeral proxy
// (engine → guard → mask → record) for targets of kind "config": it answers
// one exec grant's read of configuration keys held in Vault KV v2 or the
// broker's embedded store, masking every value that looks secret.
//
//	eng, err := config.New(config.Config{Grant: g, Masker: m, Recorder: rec})
//	res, err := eng.Exec(ctx, "flags/*")   // rows of key, masked value; "KEYS 3" in res.Tag
//
// # Keys
//
// A key is "<secret path>/<field>" below the target's KV prefix: "flags/db_url"
// is field db_url of the secret at <prefix>/flags. The broker reads the
// secrets of the keys the target exposes (Guard.Config.Keys) when it issues
// the grant's credential, and hands them to the proxy in Credential.Values
// over the private broker → proxy channel; the agent never holds them.
//
// The operation is one key or one glob over the last segment ("flags/*",
// "flags/db_?"). Segments are [A-Za-z0-9_.-], never "." or ".." or empty;
// glob characters (* ? and [...] classes) only in the last segment. What is
// shown is the intersection of the operation and the target's key globs: a
// key outside them is refused (exact key) or never listed (glob). Anything
// that does not parse is refused.
//
// # Masking
//
// A value is shown as is only when its key matches Guard.Config.Reveal.
// Otherwise it is redacted whole (in the masker's style) when its key's last
// segment names a secret (password, passwd, secret, token, key, credential,
// private, auth, cert, salt, dsn) or the value looks random (16 or more
// characters without spaces, not a URL, at least three character classes and
// 3.5 bits of entropy per character, as keys and tokens do), and it goes through the
// grant's detectors in any case, so a card number under an innocent name is
// still masked. A URL with a password in it ("postgres://app:pw@db/app")
// has the password masked.
//
// # Recording
//
// Every read is recorded: the operation as a "query" event, the verdict, the
// keys shown with their masked values as "rows" (Columns ["key", "value"]),
// and a "result" (Tag "KEYS n"). Unmasked values are never recorded.
//
// # Metrics
//
// Verdicts counts the reads allowed and refused; MaskCounts the values
// masked by reason: "secret_name", "entropy", "url_password", and the
// masker's detector names. A config grant runs in exec mode only, where the
// proxy has no metrics listener (ephemeral/session serves one for sessions),
// so nothing scrapes them yet.
//
// Session mode is not offered: a config grant is one read.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Config is what the config engine needs for one grant.
type Config struct {
	// Grant is the one grant served. Required: ID, Guard.Config.Keys and
	// Credential.Values (the values of the keys the target exposes).
	Grant *spec.Grant
	// Masker runs its detectors over every value not revealed, and styles
	// whole redactions. Nil means no detectors; name and entropy rules still
	// apply, redacting to "********".
	Masker *mask.Masker
	// Recorder receives every read. Required: a read that cannot be
	// recorded is refused.
	Recorder *record.Recorder
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
}

// ErrBlocked is session.ErrBlocked, wrapped by Exec's refusals.
var ErrBlocked = session.ErrBlocked

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("config: invalid config")

// Engine serves one config grant.
type Engine struct {
	cfg    Config
	g      *spec.Grant
	log    *slog.Logger
	keys   []Key
	reveal []Key
	counts counters
}

// New validates cfg and compiles the grant's key globs.
func New(cfg Config) (*Engine, error) {
	g := cfg.Grant
	switch {
	case g == nil:
		return nil, fmt.Errorf("%w: no grant", ErrConfig)
	case g.ID == "":
		return nil, fmt.Errorf("%w: grant has no id", ErrConfig)
	case g.Target.Protocol != spec.Config && g.Target.Protocol != spec.ProtocolUnknown:
		return nil, fmt.Errorf("%w: grant %s is for protocol %s, not config", ErrConfig, g.ID, g.Target.Protocol)
	case len(g.Guard.Config.Keys) == 0:
		return nil, fmt.Errorf("%w: grant %s exposes no keys", ErrConfig, g.ID)
	case cfg.Recorder == nil:
		return nil, fmt.Errorf("%w: no recorder", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, g: g, log: cfg.Logger.With("engine", "config")}
	for _, s := range g.Guard.Config.Keys {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("%w: grant %s: keys: %v", ErrConfig, g.ID, err)
		}
		e.keys = append(e.keys, k)
	}
	for _, s := range g.Guard.Config.Reveal {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("%w: grant %s: reveal: %v", ErrConfig, g.ID, err)
		}
		e.reveal = append(e.reveal, k)
	}
	return e, nil
}

// Serve refuses: a config grant is one read, not a session.
func (e *Engine) Serve(ctx context.Context, client net.Conn) error {
	_, _ = client.Write([]byte("jitgate: config targets have no session mode; use jitgate exec --key\n"))
	_ = client.Close()
	_ = e.cfg.Recorder.Write(record.Event{Type: record.Error, Tag: "session", Error: "config targets have no session mode"})
	return fmt.Errorf("config: %w: config targets have no session mode", ErrBlocked)
}

// Exec reads the keys the operation names (one key or a glob over its last
// segment) within the target's key globs, and returns them masked as rows of
// key and value, sorted by key. A refusal wraps ErrBlocked.
func (e *Engine) Exec(ctx context.Context, operation string) (*spec.Result, error) {
	op := strings.TrimSpace(operation)
	if err := e.rec(record.Event{Type: record.Query, Statement: clip(op), Tag: "config"}); err != nil {
		return nil, err
	}
	keys, reason := e.Select(op)
	allowed := reason == ""
	if allowed {
		e.counts.allowed.Add(1)
	} else {
		e.counts.blocked.Add(1)
	}
	if err := e.rec(record.Event{Type: record.Verdict, Statement: clip(op), Allowed: &allowed, Reason: reason}); err != nil {
		return nil, err
	}
	if !allowed {
		e.log.Info("read refused", "operation", clip(op), "reason", reason)
		return nil, fmt.Errorf("config: %w: %s", ErrBlocked, reason)
	}
	res := &spec.Result{Columns: []string{"key", "value"}}
	masked := 0
	for _, k := range keys {
		v, wasMasked := e.Value(k, e.g.Credential.Values[k].Secret().Reveal())
		if wasMasked {
			masked++
		}
		key, val := k, v
		res.Rows = append(res.Rows, []*string{&key, &val})
	}
	res.Tag = "KEYS " + strconv.Itoa(len(keys))
	if masked > 0 {
		res.Notices = []string{fmt.Sprintf("%d of %d values masked", masked, len(keys))}
	}
	if len(res.Rows) > 0 {
		if err := e.rec(record.Event{Type: record.Rows, Tag: "config", Columns: res.Columns, Rows: res.Rows, RowCount: int64(len(res.Rows))}); err != nil {
			return nil, err
		}
	}
	if err := e.rec(record.Event{Type: record.Result, Statement: clip(op), Tag: res.Tag, Reason: strings.Join(res.Notices, "; ")}); err != nil {
		return nil, err
	}
	return res, nil
}

// Select returns the keys the operation reads, sorted, or the reason it is
// refused: it does not parse, it is an exact key outside the target's globs
// or that the store does not hold, or a glob that matches nothing the target
// exposes.
func (e *Engine) Select(op string) ([]string, string) {
	q, err := ParseKey(op)
	if err != nil {
		return nil, err.Error()
	}
	if !q.Glob() {
		if !e.exposed(q.String()) {
			return nil, fmt.Sprintf("key %q is not one this target exposes (%s)", q, e.exposedList())
		}
		if _, ok := e.g.Credential.Values[q.String()]; !ok {
			return nil, fmt.Sprintf("key %q does not exist in the store", q)
		}
		return []string{q.String()}, ""
	}
	if !slices.ContainsFunc(e.keys, func(k Key) bool { return k.Dir == q.Dir }) {
		return nil, fmt.Sprintf("glob %q is not under a path this target exposes (%s)", q, e.exposedList())
	}
	var out []string
	for k := range e.g.Credential.Values {
		if q.Match(k) && e.exposed(k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("glob %q matches no key this target exposes", q)
	}
	slices.Sort(out)
	return out, ""
}

func (e *Engine) exposed(key string) bool {
	return slices.ContainsFunc(e.keys, func(k Key) bool { return k.Match(key) })
}

func (e *Engine) exposedList() string {
	s := make([]string, len(e.keys))
	for i, k := range e.keys {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// Value returns the value as shown for key, and whether it was masked. What
// it masks counts in MaskCounts.
func (e *Engine) Value(key, v string) (string, bool) {
	if slices.ContainsFunc(e.reveal, func(k Key) bool { return k.Match(key) }) {
		return v, false
	}
	if name := SecretName(key); name || HighEntropy(v) {
		if name {
			e.counts.secretName.Add(1)
		} else {
			e.counts.entropy.Add(1)
		}
		if e.cfg.Masker != nil {
			return string(e.cfg.Masker.Value(nil, 0, []byte(v))), true
		}
		return "********", true
	}
	out, n := maskURLPassword(v)
	e.counts.urlPassword.Add(uint64(n))
	if e.cfg.Masker != nil {
		out = string(e.cfg.Masker.Text([]byte(out)))
	}
	return out, out != v
}

// maskURLPassword redacts the password of every URL with user information
// in v ("scheme://user:password@host..."), and returns how many it redacted.
func maskURLPassword(v string) (string, int) {
	var b strings.Builder
	rest := v
	n := 0
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), n
		}
		b.WriteString(rest[:i+3])
		rest = rest[i+3:]
		end := strings.IndexAny(rest, "/?# \t\r\n\"'")
		if end < 0 {
			end = len(rest)
		}
		auth := rest[:end]
		at := strings.LastIndexByte(auth, '@')
		if at < 0 {
			continue
		}
		if c := strings.IndexByte(auth[:at], ':'); c >= 0 {
			b.WriteString(auth[:c+1])
			b.WriteString("********")
			b.WriteString(auth[at:])
			rest = rest[end:]
			n++
		}
	}
}

func (e *Engine) rec(ev record.Event) error {
	if err := e.cfg.Recorder.Write(ev); err != nil {
		return fmt.Errorf("config: record: %w", err)
	}
	return nil
}

// Close releases nothing; it is there for symmetry with the other engines.
func (e *Engine) Close() error { return nil }

// secretWords are key-name fragments that mark a value as secret.
var secretWords = []string{"password", "passwd", "pwd", "secret", "token", "key", "credential", "private", "auth", "cert", "salt", "dsn"}

// SecretName reports whether the key's last segment names a secret.
func SecretName(key string) bool {
	name := strings.ToLower(path.Base(key))
	return slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(name, w) })
}

// HighEntropy reports whether v looks like a random key or token: at least
// 16 characters without whitespace, at least three of lower case, upper
// case, digits and symbols, and at least 3.5 bits of entropy per character.
func HighEntropy(v string) bool {
	if len(v) < 16 || strings.ContainsAny(v, " \t\r\n") || strings.Contains(v, "://") {
		return false // URLs are judged by their password (maskURLPassword)
	}
	var lower, upper, digit, other int
	counts := map[rune]int{}
	n := 0
	for _, r := range v {
		n++
		counts[r]++
		switch {
		case 'a' <= r && r <= 'z':
			lower = 1
		case 'A' <= r && r <= 'Z':
			upper = 1
		case '0' <= r && r <= '9':
			digit = 1
		default:
			other = 1
		}
	}
	if lower+upper+digit+other < 3 {
		return false
	}
	h := 0.0
	for _, c := range counts {
		p := float64(c) / float64(n)
		h -= p * math.Log2(p)
	}
	return h >= 3.5
}

func clip(s string) string {
	if len(s) > 256 {
		return s[:256] + "…"
	}
	return s
}
