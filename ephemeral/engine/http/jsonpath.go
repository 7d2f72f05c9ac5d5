package http

import (
	"fmt"
	"strconv"
	"strings"
)

// A JSON field pattern names values inside a JSON body that are redacted
// whole:
//
//	password              a member "password" at any depth (same as $..password)
//	$.users[*].email      member "email" of every element of the top-level "users"
//	$.data.token          one nested member
//	$..secret             member "secret" at any depth below the root
//	$.items[0].key        an array index
//	$.config.*            every member of "config"
//	$['odd.name']         a member whose name needs quoting
//
// Member names match ASCII case-insensitively, which can only over-mask.

type stepKind uint8

const (
	stepKey      stepKind = iota // .name
	stepAnyKey                   // .*
	stepAnyIndex                 // [*]
	stepIndex                    // [N]
	stepDescend                  // ..  (zero or more levels; followed by a key step)
)

type step struct {
	kind stepKind
	key  string
	idx  int
}

type jsonPattern struct {
	text  string
	steps []step
}

// pathElem is one level of the current position in a JSON document.
type pathElem struct {
	obj bool
	key []byte // member name (objects)
	idx int    // element index (arrays)
}

func compileJSONPattern(s string) (jsonPattern, error) {
	p := jsonPattern{text: s}
	s = strings.TrimSpace(s)
	if s == "" {
		return p, fmt.Errorf("empty JSON field pattern")
	}
	if !strings.HasPrefix(s, "$") {
		if strings.ContainsAny(s, ".[]$'\"") {
			return p, fmt.Errorf("JSON field pattern %q: a bare name cannot contain . [ ] $ or quotes (write $.a.b)", s)
		}
		p.steps = []step{{kind: stepDescend}, {kind: stepKey, key: s}}
		return p, nil
	}
	rest := s[1:]
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, ".."):
			rest = rest[2:]
			p.steps = append(p.steps, step{kind: stepDescend})
			name, r, err := readName(rest)
			if err != nil {
				return p, fmt.Errorf("JSON field pattern %q: %v", s, err)
			}
			if name == "*" {
				p.steps = append(p.steps, step{kind: stepAnyKey})
			} else {
				p.steps = append(p.steps, step{kind: stepKey, key: name})
			}
			rest = r
		case rest[0] == '.':
			name, r, err := readName(rest[1:])
			if err != nil {
				return p, fmt.Errorf("JSON field pattern %q: %v", s, err)
			}
			if name == "*" {
				p.steps = append(p.steps, step{kind: stepAnyKey})
			} else {
				p.steps = append(p.steps, step{kind: stepKey, key: name})
			}
			rest = r
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return p, fmt.Errorf("JSON field pattern %q: unclosed [", s)
			}
			in := rest[1:end]
			switch {
			case in == "*":
				p.steps = append(p.steps, step{kind: stepAnyIndex})
			case len(in) >= 2 && (in[0] == '\'' && in[len(in)-1] == '\'' || in[0] == '"' && in[len(in)-1] == '"'):
				name := in[1 : len(in)-1]
				if name == "" || strings.ContainsAny(name, "'\"") {
					return p, fmt.Errorf("JSON field pattern %q: bad quoted name", s)
				}
				p.steps = append(p.steps, step{kind: stepKey, key: name})
			default:
				n, err := strconv.Atoi(in)
				if err != nil || n < 0 {
					return p, fmt.Errorf("JSON field pattern %q: [%s] is not *, an index or a quoted name", s, in)
				}
				p.steps = append(p.steps, step{kind: stepIndex, idx: n})
			}
			rest = rest[end+1:]
		default:
			return p, fmt.Errorf("JSON field pattern %q: unexpected %q", s, rest[:1])
		}
	}
	if len(p.steps) == 0 {
		return p, fmt.Errorf("JSON field pattern %q names the whole document", s)
	}
	return p, nil
}

func readName(s string) (name, rest string, err error) {
	i := 0
	for i < len(s) && s[i] != '.' && s[i] != '[' {
		if s[i] == ']' || s[i] == '\'' || s[i] == '"' || s[i] == '$' {
			return "", "", fmt.Errorf("unexpected %q in a member name", s[i])
		}
		i++
	}
	if i == 0 {
		return "", "", fmt.Errorf("empty member name")
	}
	return s[:i], s[i:], nil
}

// match reports whether the position path matches the pattern exactly.
func (p *jsonPattern) match(path []pathElem) bool {
	return matchSteps(p.steps, path)
}

func matchSteps(steps []step, path []pathElem) bool {
	for len(steps) > 0 {
		st := steps[0]
		if st.kind == stepDescend {
			for skip := 0; skip <= len(path); skip++ {
				if matchSteps(steps[1:], path[skip:]) {
					return true
				}
			}
			return false
		}
		if len(path) == 0 {
			return false
		}
		e := path[0]
		switch st.kind {
		case stepKey:
			if !e.obj || !asciiEqualFold(e.key, st.key) {
				return false
			}
		case stepAnyKey:
			if !e.obj {
				return false
			}
		case stepAnyIndex:
			if e.obj {
				return false
			}
		case stepIndex:
			if e.obj || e.idx != st.idx {
				return false
			}
		}
		steps, path = steps[1:], path[1:]
	}
	return len(path) == 0
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
