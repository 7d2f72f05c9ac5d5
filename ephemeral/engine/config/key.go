package config

import (
	"fmt"
	"path"
	"strings"
)

// MaxKeyBytes bounds a key or glob.
const MaxKeyBytes = 512

// Key is a parsed key or key glob: Dir is the secret path (literal), Field
// the last segment (literal, or a glob for Glob keys).
type Key struct {
	Dir   string
	Field string
	glob  bool
}

// ParseKey parses "<secret path>/<field>". Every segment is [A-Za-z0-9_.-]
// and neither "." nor ".."; the secret path is literal; the field may be a
// glob (* ? [...]) that never crosses a "/". A leading or trailing "/", an
// empty segment, a backslash or any other byte is refused.
func ParseKey(s string) (Key, error) {
	if s == "" {
		return Key{}, fmt.Errorf("config: empty key")
	}
	if len(s) > MaxKeyBytes {
		return Key{}, fmt.Errorf("config: key is longer than %d bytes", MaxKeyBytes)
	}
	i := strings.LastIndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return Key{}, fmt.Errorf("config: key %q: want <secret path>/<field>, e.g. flags/db_url", clip(s))
	}
	k := Key{Dir: s[:i], Field: s[i+1:]}
	for _, seg := range strings.Split(k.Dir, "/") {
		if err := segment(seg, false); err != nil {
			return Key{}, fmt.Errorf("config: key %q: %v", clip(s), err)
		}
	}
	if err := segment(k.Field, true); err != nil {
		return Key{}, fmt.Errorf("config: key %q: %v", clip(s), err)
	}
	k.glob = strings.ContainsAny(k.Field, "*?[")
	if k.glob {
		if _, err := path.Match(k.Field, ""); err != nil {
			return Key{}, fmt.Errorf("config: key %q: bad glob: %v", clip(s), err)
		}
	}
	return k, nil
}

func segment(seg string, field bool) error {
	switch seg {
	case "":
		return fmt.Errorf("empty path segment")
	case ".", "..":
		return fmt.Errorf("path segment %q is not allowed", seg)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		case field && (c == '*' || c == '?' || c == '[' || c == ']' || c == '!' || c == '^'):
		default:
			if field {
				return fmt.Errorf("byte %q is not allowed (want [A-Za-z0-9_.-], and * ? [...] in the field)", c)
			}
			return fmt.Errorf("byte %q is not allowed in the secret path (want [A-Za-z0-9_.-]; globs only in the field)", c)
		}
	}
	return nil
}

// Glob reports whether the field is a glob.
func (k Key) Glob() bool { return k.glob }

// String is the key as written.
func (k Key) String() string { return k.Dir + "/" + k.Field }

// Match reports whether the concrete key s is k or matches its glob.
func (k Key) Match(s string) bool {
	i := strings.LastIndexByte(s, '/')
	if i < 0 || s[:i] != k.Dir {
		return false
	}
	if !k.glob {
		return s[i+1:] == k.Field
	}
	ok, err := path.Match(k.Field, s[i+1:])
	return err == nil && ok
}
