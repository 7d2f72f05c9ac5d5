package httprule

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxPathBytes bounds the request target (path and query) the guard accepts.
const MaxPathBytes = 8 << 10

// Target is a request target the guard accepted: the decoded path segments and
// the raw query, which is forwarded unchanged.
type Target struct {
	// Segments are the decoded path segments; the root path has none.
	Segments []string
	// TrailingSlash says the path ended in "/" (ignored for matching).
	TrailingSlash bool
	// RawQuery is the query without "?", as sent.
	RawQuery string
}

// Path is the decoded path, "/" joined.
func (t Target) Path() string {
	if len(t.Segments) == 0 {
		return "/"
	}
	return "/" + strings.Join(t.Segments, "/")
}

// ParseTarget checks an origin-form request target ("/v1/items/42?x=1") and
// decodes its path. Whatever two HTTP stacks could read differently is an
// error saying why (see the package documentation).
func ParseTarget(raw string) (Target, error) {
	var t Target
	switch {
	case raw == "":
		return t, fmt.Errorf("empty request target")
	case len(raw) > MaxPathBytes:
		return t, fmt.Errorf("request target is longer than %d bytes", MaxPathBytes)
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == 0:
			return t, fmt.Errorf("NUL byte in the request target")
		case c < 0x21 || c >= 0x7f:
			return t, fmt.Errorf("raw byte 0x%02x in the request target (controls, spaces and non-ASCII must be percent-encoded)", c)
		case c == '\\':
			return t, fmt.Errorf("backslash in the request target")
		case c == '#':
			return t, fmt.Errorf("fragment (#) in the request target")
		}
	}
	path, query, hasQuery := strings.Cut(raw, "?")
	if hasQuery {
		if err := checkQuery(query); err != nil {
			return t, err
		}
		t.RawQuery = query
	}
	if path == "" || path[0] != '/' {
		return t, fmt.Errorf("path %q does not start with /", clip(path))
	}
	if path == "/" {
		return t, nil
	}
	rest := path[1:]
	if strings.HasSuffix(rest, "/") {
		t.TrailingSlash = true
		rest = rest[:len(rest)-1]
	}
	n := strings.Count(rest, "/") + 1
	t.Segments = make([]string, 0, n)
	for seg := range strings.SplitSeq(rest, "/") {
		d, err := decodeSegment(seg)
		if err != nil {
			return Target{}, err
		}
		t.Segments = append(t.Segments, d)
	}
	return t, nil
}

// decodeSegment percent-decodes one path segment, refusing every ambiguity.
func decodeSegment(seg string) (string, error) {
	if seg == "" {
		return "", fmt.Errorf("empty path segment (//)")
	}
	if strings.IndexByte(seg, ';') >= 0 {
		return "", fmt.Errorf("path parameter (;) in segment %q", clip(seg))
	}
	if strings.IndexByte(seg, '%') < 0 {
		if strings.Trim(seg, ".") == "" {
			return "", fmt.Errorf("dot segment %q", clip(seg))
		}
		return seg, nil
	}
	b := make([]byte, 0, len(seg))
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
			return "", fmt.Errorf("malformed percent-escape in segment %q", clip(seg))
		}
		d := unhex(seg[i+1])<<4 | unhex(seg[i+2])
		switch {
		case d == '/':
			return "", fmt.Errorf("encoded slash (%%2F) in segment %q", clip(seg))
		case d == '\\':
			return "", fmt.Errorf("encoded backslash (%%5C) in segment %q", clip(seg))
		case d == '.':
			return "", fmt.Errorf("encoded dot (%%2E) in segment %q", clip(seg))
		case d == '%':
			return "", fmt.Errorf("encoded percent sign (%%25, double encoding) in segment %q", clip(seg))
		case d == ';':
			return "", fmt.Errorf("encoded path parameter (%%3B) in segment %q", clip(seg))
		case d == 0:
			return "", fmt.Errorf("encoded NUL (%%00) in segment %q", clip(seg))
		case d < 0x20 || d == 0x7f:
			return "", fmt.Errorf("encoded control byte 0x%02x in segment %q", d, clip(seg))
		}
		b = append(b, d)
		i += 2
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("segment %q does not decode to valid UTF-8 (overlong or malformed escape sequence)", clip(seg))
	}
	if strings.Trim(string(b), ".") == "" {
		return "", fmt.Errorf("dot segment %q", clip(seg))
	}
	return string(b), nil
}

// checkQuery refuses malformed escapes, encoded NULs and method-override
// parameters. Bytes were checked by the caller.
func checkQuery(q string) error {
	for i := 0; i < len(q); i++ {
		if q[i] != '%' {
			continue
		}
		if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
			return fmt.Errorf("malformed percent-escape in the query")
		}
		if unhex(q[i+1]) == 0 && unhex(q[i+2]) == 0 {
			return fmt.Errorf("encoded NUL (%%00) in the query")
		}
		i += 2
	}
	for _, part := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
		name, _, _ := strings.Cut(part, "=")
		name = strings.ToLower(strings.ReplaceAll(name, "+", " "))
		if strings.Contains(name, "%") {
			name = queryUnescape(name)
		}
		if strings.HasPrefix(strings.TrimSpace(name), "_method") {
			return fmt.Errorf("method override parameter %q in the query", clip(name))
		}
	}
	return nil
}

// queryUnescape decodes escapes already known to be well formed.
func queryUnescape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return strings.ToLower(string(b))
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// clip shortens s for a reason text.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
