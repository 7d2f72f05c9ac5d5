package shell

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Config is the command policy of one grant (spec.Commands.Allow and Deny).
type Config struct {
	// Allow lists the commands that may run. Empty means any command the deny
	// lists do not refuse. Non-empty means every command anywhere in the line
	// (wrapped commands included) must match an entry. A plain name that is also
	// on the default deny list (say "rm") lifts that default entry; the
	// structural rules (non-literal names, code piped into interpreters, inline
	// interpreter code, eval, ...) are never lifted.
	Allow []string
	// Deny lists commands refused wherever they appear, on top of the default
	// deny list. Deny wins over Allow.
	Deny []string
}

// Entries of Allow and Deny are either a command name or a glob over the base
// name ("rm", "mkfs*", "python3.?"), matched against the base name of the
// command as written ("/bin/rm" is "rm"), or, when they contain a "/", a glob
// over the path as written ("/usr/local/bin/*").

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("shell: invalid config")

// Guard classifies shell command lines. It is immutable after New and safe for
// concurrent use.
type Guard struct {
	allow       []matcher
	deny        []matcher
	defaultDeny map[string]string // name → reason; entries lifted by Allow removed
	denyGlobs   []matcher         // default deny globs (mkfs.*, ...)
}

type matcher struct {
	pat  string
	path bool
}

func (m matcher) match(written, base string) bool {
	if m.path {
		ok, _ := path.Match(m.pat, written)
		return ok
	}
	ok, _ := path.Match(m.pat, base)
	return ok
}

func newMatcher(s string) (matcher, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return matcher{}, fmt.Errorf("%w: empty command pattern", ErrConfig)
	}
	if _, err := path.Match(s, ""); err != nil {
		return matcher{}, fmt.Errorf("%w: command pattern %q: %v", ErrConfig, s, err)
	}
	return matcher{pat: s, path: strings.Contains(s, "/")}, nil
}

// New builds a Guard from cfg merged with the default deny list (see the
// package documentation).
func New(cfg Config) (*Guard, error) {
	g := &Guard{defaultDeny: make(map[string]string, len(defaultDeny))}
	for name, reason := range defaultDeny {
		g.defaultDeny[name] = reason
	}
	for _, p := range defaultDenyGlobs {
		g.denyGlobs = append(g.denyGlobs, matcher{pat: p})
	}
	for _, s := range cfg.Allow {
		m, err := newMatcher(s)
		if err != nil {
			return nil, err
		}
		g.allow = append(g.allow, m)
		if !m.path && !strings.ContainsAny(m.pat, `*?[\`) {
			delete(g.defaultDeny, m.pat)
		}
	}
	for _, s := range cfg.Deny {
		m, err := newMatcher(s)
		if err != nil {
			return nil, err
		}
		g.deny = append(g.deny, m)
	}
	return g, nil
}

// Command is one simple command found in a line: Name is the base name of the
// command as written, Args its words (literal values after quote removal, or
// the source text of words that expand at run time). Wrappers and the commands
// they run are listed separately ("sudo rm x" gives sudo and rm).
type Command struct {
	Name string
	Args []string
}

// Verdict is the guard's decision on one command line. Reason says why a line
// was refused (the first refusal found); Commands lists every simple command
// seen, also for refused lines, so an approver sees what the line does.
type Verdict struct {
	Allowed  bool
	Reason   string
	Commands []Command
}

func (v Verdict) String() string {
	if v.Allowed {
		return "allowed"
	}
	return "blocked: " + v.Reason
}

// MaxLength bounds the command lines Check parses; longer ones are refused.
const MaxLength = 64 << 10

// maxDepth bounds nested shell strings (bash -c "sh -c '...'").
const maxDepth = 8

// Check classifies cmdline. Every simple command anywhere in it is checked:
// pipelines, lists, subshells, command and process substitutions, function
// bodies, here-documents fed to shells, and the strings given to sh -c and its
// kind, parsed recursively. Anything that cannot be parsed or decided is
// refused.
func (g *Guard) Check(cmdline string) Verdict {
	c := &checker{g: g}
	if len(cmdline) > MaxLength {
		c.deny("command line is longer than %d bytes", MaxLength)
	} else if strings.IndexByte(cmdline, 0) >= 0 {
		c.deny("command line contains a NUL byte")
	} else if strings.TrimSpace(cmdline) == "" {
		c.deny("empty command line")
	} else {
		c.script(cmdline, langBash, 0)
	}
	return Verdict{Allowed: c.reason == "", Reason: c.reason, Commands: c.cmds}
}

// nameVerdict applies the allow and deny lists to one command name. It
// returns "" when the name may run.
func (g *Guard) nameVerdict(written, base string) string {
	for _, m := range g.deny {
		if m.match(written, base) {
			return fmt.Sprintf("%s is on the grant's deny list", base)
		}
	}
	if r, ok := g.defaultDeny[base]; ok {
		return fmt.Sprintf("%s is denied by default: %s", base, r)
	}
	for _, m := range g.denyGlobs {
		if m.match(written, base) && !g.lifted(base) {
			return fmt.Sprintf("%s is denied by default: %s", base, "formats or wipes a device")
		}
	}
	if len(g.allow) > 0 {
		for _, m := range g.allow {
			if m.match(written, base) {
				return ""
			}
		}
		return fmt.Sprintf("%s is not on the grant's allow list", base)
	}
	return ""
}

// lifted reports whether an exact allow entry names base.
func (g *Guard) lifted(base string) bool {
	for _, m := range g.allow {
		if !m.path && m.pat == base {
			return true
		}
	}
	return false
}

// Denied reports whether a command with this base name would be refused by
// name alone (allow and deny lists), with the reason. It does not look at
// arguments.
func (g *Guard) Denied(name string) (bool, string) {
	r := g.nameVerdict(name, path.Base(name))
	return r != "", r
}
