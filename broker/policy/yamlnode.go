package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a policy file, at a position.
type Error struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg) }

// loader walks a yaml.v3 node tree strictly: unknown and duplicate keys,
// aliases, custom tags and wrong kinds are all errors with a position.
type loader struct {
	file  string
	lines []string
	errs  []error
}

func (l *loader) errAt(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil {
		line, col = n.Line, n.Column
	}
	l.errAtPos(line, col, format, args...)
}

func (l *loader) errAtPos(line, col int, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

// fields is a checked mapping node.
type fields struct {
	node *yaml.Node
	vals map[string]*yaml.Node
	keys map[string]*yaml.Node
}

func (f *fields) has(k string) bool { return f.vals[k] != nil }

// mapping checks that n is a mapping whose keys are all in known (each once).
// what names the mapping in messages ("target", "rule \"x\"").
func (l *loader) mapping(n *yaml.Node, what string, known ...string) *fields {
	if !l.plain(n, what) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, "%s must be a mapping, got %s", what, kindName(n))
		return nil
	}
	// Unknown and duplicate keys are reported, and the rest of the mapping is
	// still read, so that one typo does not cascade into "unknown target".
	f := &fields{node: n, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || !l.plain(k, what+" key") {
			l.errAt(k, "%s: keys must be plain strings", what)
			continue
		}
		if !slices.Contains(known, k.Value) {
			l.errAt(k, "unknown field %q in %s (known: %s)", k.Value, what, strings.Join(known, ", "))
			continue
		}
		if prev := f.keys[k.Value]; prev != nil {
			l.errAt(k, "duplicate field %q in %s (first at line %d)", k.Value, what, prev.Line)
			continue
		}
		f.keys[k.Value], f.vals[k.Value] = k, v
	}
	return f
}

// plain refuses aliases and custom tags.
func (l *loader) plain(n *yaml.Node, what string) bool {
	if n.Kind == yaml.AliasNode {
		l.errAt(n, "%s: YAML aliases are not supported", what)
		return false
	}
	if n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") {
		l.errAt(n, "%s: unsupported YAML tag %s", what, n.Tag)
		return false
	}
	return true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// str reads a non-empty scalar as text. Absent fields give "", true.
func (l *loader) str(f *fields, key, what string) (string, bool) {
	n := f.vals[key]
	if n == nil {
		return "", true
	}
	if !l.plain(n, what+": "+key) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errAt(n, "%s: %s must be a string, got %s", what, key, kindName(n))
		return "", false
	}
	return n.Value, true
}

// required reads a string that must be present and not blank.
func (l *loader) required(f *fields, key, what string) (string, bool) {
	s, ok := l.str(f, key, what)
	if ok && strings.TrimSpace(s) == "" {
		at := f.vals[key]
		if at == nil {
			at = f.node
		}
		l.errAt(at, "%s: %s is required", what, key)
		return "", false
	}
	return s, ok
}

func (l *loader) strList(f *fields, key, what string) ([]string, bool) {
	n := f.vals[key]
	if n == nil {
		return nil, true
	}
	if !l.plain(n, what+": "+key) {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "%s: %s must be a list of strings, got %s", what, key, kindName(n))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, e := range n.Content {
		if !l.plain(e, what+": "+key) {
			ok = false
			continue
		}
		if e.Kind != yaml.ScalarNode || e.Tag == "!!null" || strings.TrimSpace(e.Value) == "" {
			l.errAt(e, "%s: %s entries must be non-empty strings, got %s", what, key, kindName(e))
			ok = false
			continue
		}
		out = append(out, e.Value)
	}
	return out, ok
}

func (l *loader) boolean(f *fields, key, what string) (bool, bool) {
	n := f.vals[key]
	if n == nil {
		return false, true
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		l.errAt(n, "%s: %s must be true or false, got %s", what, key, kindName(n))
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		l.errAt(n, "%s: %s must be true or false, got %q", what, key, n.Value)
		return false, false
	}
	return b, true
}

func (l *loader) integer(f *fields, key, what string) (int, bool) {
	n := f.vals[key]
	if n == nil {
		return 0, true
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		l.errAt(n, "%s: %s must be an integer, got %s", what, key, kindName(n))
		return 0, false
	}
	i, err := strconv.Atoi(n.Value)
	if err != nil {
		l.errAt(n, "%s: %s must be a decimal integer, got %q", what, key, n.Value)
		return 0, false
	}
	return i, true
}

// duration reads a Go duration ("90s", "10m", "1h30m"); bare numbers are
// refused so that "max_ttl: 10" is not silently 10ns.
func (l *loader) duration(f *fields, key, what string) (time.Duration, bool) {
	n := f.vals[key]
	if n == nil {
		return 0, true
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errAt(n, "%s: %s must be a duration like 10m, got %s", what, key, kindName(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		l.errAt(n, "%s: bad duration %q for %s (want e.g. 90s, 10m, 1h)", what, n.Value, key)
		return 0, false
	}
	if d <= 0 {
		l.errAt(n, "%s: %s must be positive, got %s", what, key, n.Value)
		return 0, false
	}
	return d, true
}

func (l *loader) seq(n *yaml.Node, what string) []*yaml.Node {
	if n == nil || !l.plain(n, what) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "%s must be a list, got %s", what, kindName(n))
		return nil
	}
	return n.Content
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (l *loader) name(f *fields, what string) (string, bool) {
	s, ok := l.required(f, "name", what)
	if !ok {
		return "", false
	}
	if !nameRE.MatchString(s) {
		l.errAt(f.vals["name"], "%s: name %q: want letters, digits, '.', '_' or '-' (at most 128)", what, s)
		return "", false
	}
	return s, true
}

// celPos maps a position inside a CEL expression (line 1-based, column
// 0-based) held by scalar node n to a file position. It is exact for plain
// and quoted single-line scalars and for literal (|) block scalars, and
// approximate for multi-line flow scalars and folded (>) blocks.
func (l *loader) celPos(n *yaml.Node, line, col int) (int, int) {
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		first := n.Line + 1
		for first <= len(l.lines) && strings.TrimSpace(l.lines[first-1]) == "" {
			first++
		}
		indent := 0
		if first <= len(l.lines) {
			s := l.lines[first-1]
			indent = len(s) - len(strings.TrimLeft(s, " "))
		}
		if n.Style == yaml.FoldedStyle && line == 1 {
			// Folded lines were joined with single spaces: walk them.
			for ln := first; ln <= len(l.lines); ln++ {
				text := strings.TrimSpace(l.lines[ln-1])
				if col <= len(text) || ln == len(l.lines) {
					return ln, indent + 1 + col
				}
				col -= len(text) + 1
			}
		}
		return first + line - 1, indent + 1 + col
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if line == 1 && n.Line <= len(l.lines) {
			return n.Line, n.Column + 1 + l.sourceOffset(n, col)
		}
		return n.Line + line - 1, 1 + col
	default:
		if line == 1 {
			return n.Line, n.Column + col
		}
		return n.Line + line - 1, 1 + col
	}
}

// sourceOffset converts a column in the decoded value of a quoted scalar to
// the number of source characters after the opening quote, skipping over
// escapes (a doubled quote in single quotes, backslash escapes in double quotes).
func (l *loader) sourceOffset(n *yaml.Node, col int) int {
	src := []rune(l.lines[n.Line-1])
	i := n.Column // index just after the opening quote (Column is 1-based)
	off := 0
	for decoded := 0; decoded < col && i < len(src); decoded++ {
		step := 1
		switch {
		case n.Style == yaml.SingleQuotedStyle && src[i] == '\'' && i+1 < len(src) && src[i+1] == '\'':
			step = 2
		case n.Style == yaml.DoubleQuotedStyle && src[i] == '\\' && i+1 < len(src):
			switch src[i+1] {
			case 'x':
				step = 4
			case 'u':
				step = 6
			case 'U':
				step = 10
			default:
				step = 2
			}
		}
		i += step
		off += step
	}
	return off
}
