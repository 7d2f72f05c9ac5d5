package httprule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Effect is what a matching rule does.
type Effect int

const (
	EffectUnknown Effect = iota
	Allow
	Deny
)

func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "unknown"
}

// ParseEffect parses "allow" or "deny".
func ParseEffect(s string) (Effect, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return EffectUnknown, fmt.Errorf("%w: unknown effect %q (want allow or deny)", ErrConfig, s)
}

// Rule is one method and path rule, as policy writes it.
type Rule struct {
	// Methods are upper-case method names; "*" is any method. Required.
	Methods []string `json:"methods" yaml:"methods"`
	// Path is a pattern: literal segments, "*" or "{name}" for one segment,
	// "**" as the last segment for the rest of the path.
	Path string `json:"path" yaml:"path"`
	// Effect is "allow" or "deny".
	Effect string `json:"effect" yaml:"effect"`
}

// Config is one grant's HTTP request policy.
type Config struct {
	// Rules are judged all together: deny wins, and a request no allow rule
	// matches is refused. No rules refuse everything.
	Rules []Rule
	// MaxBodyBytes caps request bodies; 0 leaves the engine's default.
	MaxBodyBytes int64
	// Access caps the methods: Read passes only GET, HEAD and OPTIONS;
	// Write and Admin leave it to the rules. AccessNone (unset) adds no cap.
	Access spec.Access
}

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("httprule: invalid config")

// Guard judges HTTP requests. It is immutable after New and safe for
// concurrent use.
type Guard struct {
	rules   []rule
	maxBody int64
	access  spec.Access
}

type segKind uint8

const (
	segLit  segKind = iota
	segOne          // * or {name}
	segRest         // ** (last only)
)

type patSeg struct {
	kind segKind
	lit  string
}

type rule struct {
	effect  Effect
	methods map[string]bool // nil: any
	pat     []patSeg
	text    string
}

// New validates cfg and compiles its patterns.
func New(cfg Config) (*Guard, error) {
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("%w: MaxBodyBytes is negative", ErrConfig)
	}
	g := &Guard{maxBody: cfg.MaxBodyBytes, access: cfg.Access}
	for i, r := range cfg.Rules {
		cr, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d: %v", ErrConfig, i+1, err)
		}
		g.rules = append(g.rules, cr)
	}
	return g, nil
}

func compile(r Rule) (rule, error) {
	eff, err := ParseEffect(r.Effect)
	if err != nil {
		return rule{}, fmt.Errorf("unknown effect %q (want allow or deny)", r.Effect)
	}
	cr := rule{effect: eff}
	if len(r.Methods) == 0 {
		return rule{}, errors.New(`no methods (use "*" for any)`)
	}
	for _, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "*" {
			cr.methods = nil
			break
		}
		if reason := methodProblem(m); reason != "" {
			return rule{}, fmt.Errorf("method %q: %s", m, reason)
		}
		if cr.methods == nil {
			cr.methods = map[string]bool{}
		}
		cr.methods[m] = true
	}
	if !strings.HasPrefix(r.Path, "/") {
		return rule{}, fmt.Errorf("path %q does not start with /", r.Path)
	}
	if p := strings.TrimSuffix(r.Path[1:], "/"); p != "" {
		parts := strings.Split(p, "/")
		for i, s := range parts {
			switch {
			case s == "**":
				if i != len(parts)-1 {
					return rule{}, fmt.Errorf("path %q: ** must be the last segment", r.Path)
				}
				cr.pat = append(cr.pat, patSeg{kind: segRest})
			case s == "*":
				cr.pat = append(cr.pat, patSeg{kind: segOne})
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
				if !isIdent(s[1 : len(s)-1]) {
					return rule{}, fmt.Errorf("path %q: parameter %q must be {name} with letters, digits and _", r.Path, s)
				}
				cr.pat = append(cr.pat, patSeg{kind: segOne})
			case s == "":
				return rule{}, fmt.Errorf("path %q has an empty segment", r.Path)
			case strings.Trim(s, ".") == "":
				return rule{}, fmt.Errorf("path %q has a dot segment", r.Path)
			case strings.ContainsAny(s, "*{}%?#;\\"):
				return rule{}, fmt.Errorf("path %q: segment %q mixes literal text with *, {}, %%, ?, #, ; or \\ (write whole-segment wildcards only)", r.Path, s)
			default:
				for j := 0; j < len(s); j++ {
					if s[j] < 0x21 || s[j] == 0x7f {
						return rule{}, fmt.Errorf("path %q has a control or space byte", r.Path)
					}
				}
				cr.pat = append(cr.pat, patSeg{kind: segLit, lit: s})
			}
		}
	}
	ms := "*"
	if cr.methods != nil {
		ms = strings.Join(upperMethods(r.Methods), ",")
	}
	cr.text = eff.String() + " " + ms + " " + r.Path
	return cr, nil
}

func upperMethods(ms []string) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = strings.ToUpper(strings.TrimSpace(m))
	}
	return out
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// methodProblem says what is wrong with a request method, "" when nothing.
func methodProblem(m string) string {
	if m == "" {
		return "empty method"
	}
	if len(m) > 32 {
		return "method longer than 32 bytes"
	}
	lower := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', c == '-', c == '_':
		case 'a' <= c && c <= 'z':
			lower = true
		default:
			return "method is not a token of A-Z, - and _"
		}
	}
	if lower {
		return "method is not upper case (mixed-case methods are refused)"
	}
	return ""
}

// MaxBodyBytes is the request body cap of the policy; 0 when unset.
func (g *Guard) MaxBodyBytes() int64 { return g.maxBody }

// Verdict is the guard's decision on one request.
type Verdict struct {
	Allowed bool
	// Reason says why the request was refused, or which rule allowed it.
	Reason string
	// Rule is the deciding rule ("deny * /v1/admin/**"); empty when none matched.
	Rule string
	// Target is the parsed request target; zero when it was refused unparsed.
	Target Target
}

func (v Verdict) String() string {
	if v.Allowed {
		return "allowed"
	}
	return "blocked: " + v.Reason
}

var readMethods = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true}

// Check judges method and rawPath, the origin-form request target as sent
// ("/v1/users/42?fields=name").
func (g *Guard) Check(method, rawPath string) Verdict {
	if reason := methodProblem(method); reason != "" {
		return Verdict{Reason: fmt.Sprintf("method %q: %s", clip(method), reason)}
	}
	switch method {
	case http.MethodTrace:
		return Verdict{Reason: "TRACE is always refused: it echoes the request, injected credential included"}
	case http.MethodConnect:
		return Verdict{Reason: "CONNECT is always refused: the proxy does not open tunnels"}
	}
	t, err := ParseTarget(rawPath)
	if err != nil {
		return Verdict{Reason: "request target refused: " + err.Error()}
	}
	if g.access == spec.Read && !readMethods[method] {
		return Verdict{Target: t, Reason: fmt.Sprintf("%s is not allowed on a read grant (GET, HEAD and OPTIONS only)", method)}
	}
	var allow *rule
	for i := range g.rules {
		r := &g.rules[i]
		if r.methods != nil && !r.methods[method] {
			continue
		}
		if !match(r.pat, t.Segments, r.effect == Deny) {
			continue
		}
		if r.effect == Deny {
			return Verdict{Target: t, Rule: r.text, Reason: fmt.Sprintf("%s %s matches rule %q", method, t.Path(), r.text)}
		}
		if allow == nil {
			allow = r
		}
	}
	if allow == nil {
		return Verdict{Target: t, Reason: fmt.Sprintf("no allow rule matches %s %s", method, t.Path())}
	}
	return Verdict{Allowed: true, Target: t, Rule: allow.text, Reason: fmt.Sprintf("allowed by rule %q", allow.text)}
}

// match reports whether the decoded segments match the pattern; fold matches
// literals ASCII case-insensitively.
func match(pat []patSeg, segs []string, fold bool) bool {
	for i, p := range pat {
		switch p.kind {
		case segRest:
			return true
		case segOne:
			if i >= len(segs) {
				return false
			}
		case segLit:
			if i >= len(segs) {
				return false
			}
			if fold {
				if !strings.EqualFold(p.lit, segs[i]) {
					return false
				}
			} else if p.lit != segs[i] {
				return false
			}
		}
	}
	return len(pat) == len(segs)
}

// OverrideHeaders are request headers some frameworks read as the real method.
var OverrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// CheckHeader refuses requests carrying a method-override header, whatever
// its case or value.
func (g *Guard) CheckHeader(h http.Header) Verdict {
	for name := range h {
		for _, o := range OverrideHeaders {
			if strings.EqualFold(name, o) {
				return Verdict{Reason: fmt.Sprintf("method override header %s is refused", o)}
			}
		}
	}
	return Verdict{Allowed: true}
}
