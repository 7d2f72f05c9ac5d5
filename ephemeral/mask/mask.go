package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// ColumnRef names a source column. In a [ColumnLineage] an empty Schema or Table means
// "unknown" and an empty (or "*") Column means "any column of that relation"; both
// match rules conservatively.
type ColumnRef struct{ Schema, Table, Column string }

// String returns "schema.table.column", with "?" for unknown parts.
func (r ColumnRef) String() string {
	p := func(s string) string {
		if s == "" {
			return "?"
		}
		return s
	}
	return p(r.Schema) + "." + p(r.Table) + "." + p(r.Column)
}

// Style is how a masked value is rewritten.
type Style int

const (
	// StyleFull replaces a redacted column value with a fixed marker and every letter
	// and digit of a detected secret with '*' (separators are kept, so the shape stays
	// readable and the length of text values is unchanged).
	StyleFull Style = iota
	// StylePartial keeps the last 4 digits of a card number and the domain of an email
	// address; everything else is masked as with StyleFull.
	StylePartial
	// StyleToken replaces a value or a detected secret with "tok_<hex12>", the first 12
	// hex digits of HMAC-SHA256(TokenKey, value): equal inputs give equal tokens, so
	// joins and counts still work without revealing the value.
	StyleToken
)

func (s Style) String() string {
	switch s {
	case StyleFull:
		return "full"
	case StylePartial:
		return "partial"
	case StyleToken:
		return "token"
	}
	return fmt.Sprintf("style(%d)", int(s))
}

// ParseStyle parses "full" (or ""), "partial" or "token".
func ParseStyle(s string) (Style, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "full":
		return StyleFull, nil
	case "partial":
		return StylePartial, nil
	case "token":
		return StyleToken, nil
	}
	return StyleFull, fmt.Errorf("mask: unknown style %q (want full, partial or token)", s)
}

// Config is what a grant asks the masker to do (spec.Mask, parsed).
type Config struct {
	// Columns are source column patterns: "schema.table.column" or "table.column"
	// (any schema); "*" matches any one part ("*.email", "public.*.ssn",
	// "public.users.*"). Matching is case-insensitive, which can only over-mask.
	Columns []string
	// Detectors are content detector names (see [DetectorNames]); "all" enables every one.
	Detectors []string
	// Style is how masked values are rewritten. StyleFull is the default.
	Style Style
	// TokenKey keys the HMAC of StyleToken; required (>= 16 bytes) for it. It MUST be
	// secret and per deployment: whoever holds it can confirm guesses of masked values.
	TokenKey []byte
}

// ErrConfig is wrapped by every configuration error from [New].
var ErrConfig = errors.New("mask: invalid config")

type pattern struct{ schema, table, column string } // "*" = any

// Masker applies one grant's masking settings. It is safe for concurrent use.
type Masker struct {
	rules     []pattern
	detectors []*detector
	style     Style
	key       []byte
	columnCnt atomic.Uint64
}

// New validates cfg and builds a Masker. An unknown detector, a malformed column
// pattern, an unknown style or a missing token key is an error naming it.
func New(cfg Config) (*Masker, error) {
	m := &Masker{style: cfg.Style}
	for _, c := range cfg.Columns {
		p, err := parsePattern(c)
		if err != nil {
			return nil, err
		}
		m.rules = append(m.rules, p)
	}
	seen := map[string]bool{}
	for _, name := range cfg.Detectors {
		n := strings.ToLower(strings.TrimSpace(name))
		if n == "all" {
			for _, d := range newDetectors() {
				if !seen[d.name] {
					seen[d.name] = true
					m.detectors = append(m.detectors, d)
				}
			}
			continue
		}
		d := detectorByName(n)
		if d == nil {
			return nil, fmt.Errorf("%w: unknown detector %q (known: %s, all)", ErrConfig, name, strings.Join(DetectorNames(), ", "))
		}
		if !seen[d.name] {
			seen[d.name] = true
			m.detectors = append(m.detectors, d)
		}
	}
	switch cfg.Style {
	case StyleFull, StylePartial:
	case StyleToken:
		if len(cfg.TokenKey) < 16 {
			return nil, fmt.Errorf("%w: style token needs a token key of at least 16 bytes", ErrConfig)
		}
		m.key = append([]byte(nil), cfg.TokenKey...)
	default:
		return nil, fmt.Errorf("%w: unknown style %d", ErrConfig, int(cfg.Style))
	}
	return m, nil
}

func parsePattern(s string) (pattern, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t\"") {
			return pattern{}, fmt.Errorf("%w: column pattern %q: want schema.table.column or table.column", ErrConfig, s)
		}
	}
	switch len(parts) {
	case 2:
		return pattern{"*", parts[0], parts[1]}, nil
	case 3:
		return pattern{parts[0], parts[1], parts[2]}, nil
	}
	return pattern{}, fmt.Errorf("%w: column pattern %q: want schema.table.column or table.column", ErrConfig, s)
}

// Enabled reports whether any column rule or detector is configured.
func (m *Masker) Enabled() bool { return len(m.rules) > 0 || len(m.detectors) > 0 }

// HasColumnRules reports whether any column rule is configured.
func (m *Masker) HasColumnRules() bool { return len(m.rules) > 0 }

// ColumnMasked reports whether a rule covers ref. Unknown (empty) parts of ref match
// any rule part, so an unqualified reference matches every rule on that column name.
func (m *Masker) ColumnMasked(ref ColumnRef) bool {
	for _, p := range m.rules {
		if partMatch(p.schema, ref.Schema) && partMatch(p.table, ref.Table) && partMatch(p.column, ref.Column) {
			return true
		}
	}
	return false
}

func partMatch(rule, v string) bool {
	return rule == "*" || v == "" || v == "*" || strings.EqualFold(rule, v)
}

// Counts returns how many values were masked, by detector name, plus "column" for
// whole values redacted by a column rule or an unknown lineage and for texts replaced
// by TextFor.
func (m *Masker) Counts() map[string]uint64 {
	out := map[string]uint64{"column": m.columnCnt.Load()}
	for _, d := range m.detectors {
		out[d.name] = d.count.Load()
	}
	return out
}

// redactedMarker replaces a whole value in StyleFull. It is fixed, so it reveals
// neither the value nor its length.
const redactedMarker = "********"

// Value returns the masked form of v, one value of column col under plan p. It returns
// v itself when nothing changed. A nil v (SQL NULL) stays nil. A column outside the
// plan is redacted.
func (m *Masker) Value(p *Plan, col int, v []byte) []byte {
	if v == nil {
		return nil
	}
	switch p.Action(col) {
	case ActionPass:
		return v
	case ActionScan:
		return m.Text(v)
	}
	m.columnCnt.Add(1)
	return m.redactWhole(v)
}

func (m *Masker) redactWhole(v []byte) []byte {
	switch m.style {
	case StyleToken:
		return m.token(v)
	case StylePartial:
		if s, e, ok := findCard(v, 0); ok && s == 0 && e == len(v) {
			out := []byte(redactedMarker)
			return append(out, lastDigits(v, 4)...)
		}
		if s, e, ok := findEmail(v, 0); ok && s == 0 && e == len(v) {
			at := strings.LastIndexByte(string(v), '@')
			return append([]byte(redactedMarker), v[at:]...)
		}
	}
	return []byte(redactedMarker)
}

func lastDigits(v []byte, n int) []byte {
	out := make([]byte, 0, n)
	for i := len(v) - 1; i >= 0 && len(out) < n; i-- {
		if isDigit(v[i]) {
			out = append(out, v[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (m *Masker) token(v []byte) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write(v)
	sum := h.Sum(nil)
	out := make([]byte, 4, 16)
	copy(out, "tok_")
	return hex.AppendEncode(out, sum[:6])
}
