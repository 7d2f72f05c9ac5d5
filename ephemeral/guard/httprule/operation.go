package httprule

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// MaxOperationBytes bounds an exec operation's text.
const MaxOperationBytes = 1 << 20

// Operation is one HTTP request written as the operation of an exec grant:
// a request line "METHOD SP TARGET", optional header lines, and an optional
// body after a blank line.
//
//	POST /v1/items
//	Content-Type: application/json
//
//	{"name":"widget"}
type Operation struct {
	Method string
	// Target is the origin-form request target ("/v1/flags?env=prod").
	Target string
	Header http.Header
	Body   []byte
}

// String is the request line.
func (o Operation) String() string { return o.Method + " " + o.Target }

// ParseOperation parses an exec operation. Lines end in "\n" or "\r\n"; a
// trailing " HTTP/1.1" on the request line is accepted and dropped.
func ParseOperation(s string) (Operation, error) {
	var op Operation
	if len(s) > MaxOperationBytes {
		return op, fmt.Errorf("httprule: operation is longer than %d bytes", MaxOperationBytes)
	}
	head, body, hasBody := cutBlankLine(s)
	lines := strings.Split(head, "\n")
	first := strings.TrimSuffix(lines[0], "\r")
	f := strings.Split(first, " ")
	if len(f) == 3 && f[2] == "HTTP/1.1" {
		f = f[:2]
	}
	if len(f) != 2 || f[0] == "" || f[1] == "" {
		return op, fmt.Errorf("httprule: operation %q: want \"METHOD /path\" on the first line", clip(first))
	}
	op.Method, op.Target = f[0], f[1]
	if reason := methodProblem(op.Method); reason != "" {
		return op, fmt.Errorf("httprule: operation method %q: %s", clip(op.Method), reason)
	}
	if !strings.HasPrefix(op.Target, "/") {
		return op, fmt.Errorf("httprule: operation target %q: want an origin-form path starting with /", clip(op.Target))
	}
	op.Header = http.Header{}
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || !validHeaderName(name) {
			return op, fmt.Errorf("httprule: operation header line %q: want \"Name: value\"", clip(l))
		}
		value = strings.TrimSpace(value)
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return op, fmt.Errorf("httprule: operation header %s: control byte in the value", name)
			}
		}
		op.Header.Add(textproto.CanonicalMIMEHeaderKey(name), value)
	}
	if hasBody && body != "" {
		op.Body = []byte(body)
	}
	return op, nil
}

// cutBlankLine splits s at its first empty line.
func cutBlankLine(s string) (head, body string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] != '\n' {
			continue
		}
		j := i + 1
		if j < len(s) && s[j] == '\r' {
			j++
		}
		if j < len(s) && s[j] == '\n' {
			return strings.TrimSuffix(s[:i], "\r"), s[j+1:], true
		}
		if j == len(s) {
			return strings.TrimSuffix(s[:i], "\r"), "", true
		}
	}
	return strings.TrimRight(s, "\r\n"), "", false
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// CheckOperation judges an exec operation: its method and target (Check),
// its headers (CheckHeader) and its body size.
func (g *Guard) CheckOperation(op Operation) Verdict {
	if v := g.CheckHeader(op.Header); !v.Allowed {
		return v
	}
	v := g.Check(op.Method, op.Target)
	if v.Allowed && g.maxBody > 0 && int64(len(op.Body)) > g.maxBody {
		return Verdict{Target: v.Target, Reason: fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", len(op.Body), g.maxBody)}
	}
	return v
}
