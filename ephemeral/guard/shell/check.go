package shell

import (
	"fmt"
	"path"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

type lang int

const (
	langBash lang = iota
	langPOSIX
	langZsh
	langKorn
)

func (l lang) variant() syntax.LangVariant {
	switch l {
	case langPOSIX:
		return syntax.LangPOSIX
	case langZsh:
		return syntax.LangZsh
	case langKorn:
		return syntax.LangMirBSDKorn
	}
	return syntax.LangBash
}

// checker walks one command line. It keeps the first refusal and every
// command it saw.
type checker struct {
	g      *Guard
	reason string
	cmds   []Command
}

func (c *checker) deny(format string, a ...any) {
	if c.reason == "" {
		c.reason = fmt.Sprintf(format, a...)
	}
}

// script parses src as shell code and checks all of it.
func (c *checker) script(src string, l lang, depth int) {
	if depth > maxDepth {
		c.deny("shell strings nested deeper than %d levels", maxDepth)
		return
	}
	f, err := syntax.NewParser(syntax.Variant(l.variant())).Parse(strings.NewReader(src), "")
	if err != nil {
		c.deny("cannot parse the command line: %v", err)
		return
	}
	c.walk(f, depth)
}

// cmdCtx is what a simple command's surroundings tell about it.
type cmdCtx struct {
	redirs []*syntax.Redirect
	// piped: standard input comes from another command of the line.
	piped bool
	depth int
	// replace is xargs' -I string: words containing it are not literal.
	replace string
	// open: more arguments are appended at run time (xargs, find -exec ... +).
	open bool
}

func (c *checker) walk(root syntax.Node, depth int) {
	piped := map[*syntax.Stmt]bool{}
	syntax.Walk(root, func(n syntax.Node) bool {
		switch x := n.(type) {
		case *syntax.Stmt:
			for _, r := range x.Redirs {
				c.redirect(r)
			}
			if call, ok := x.Cmd.(*syntax.CallExpr); ok && len(call.Args) > 0 {
				args := make([]arg, len(call.Args))
				for i, w := range call.Args {
					args[i] = word(w)
				}
				c.command(args, cmdCtx{redirs: x.Redirs, piped: piped[x], depth: depth})
			}
		case *syntax.BinaryCmd:
			if x.Op == syntax.Pipe || x.Op == syntax.PipeAll {
				// Everything run on the receiving side reads the pipe.
				syntax.Walk(x.Y, func(m syntax.Node) bool {
					if s, ok := m.(*syntax.Stmt); ok {
						piped[s] = true
					}
					return true
				})
			}
		case *syntax.Assign:
			c.assign(x)
		case *syntax.DeclClause:
			c.decl(x)
		case *syntax.ArrayElem:
			if x.Index != nil {
				c.arith(x.Index, "an array index")
			}
		case *syntax.ArithmExp:
			c.arith(x.X, "an arithmetic expansion")
		case *syntax.ArithmCmd:
			c.arith(x.X, "an arithmetic command")
		case *syntax.LetClause:
			for _, e := range x.Exprs {
				c.arith(e, "let")
			}
		case *syntax.CStyleLoop:
			for _, e := range []syntax.ArithmExpr{x.Init, x.Cond, x.Post} {
				if e != nil {
					c.arith(e, "a for (( )) loop")
				}
			}
		case *syntax.ParamExp:
			c.param(x)
		case *syntax.TestClause:
			c.test(x.X)
		case *syntax.CoprocClause:
			if x.Name != nil {
				c.deny("coproc is not allowed")
			}
		}
		return true
	})
}

// command checks one simple command, looking through wrappers.
func (c *checker) command(args []arg, cx cmdCtx) {
	for hops := 0; len(args) > 0; hops++ {
		if hops > 16 {
			c.deny("too many nested wrapper commands")
			return
		}
		if cx.replace != "" {
			args = taint(args, cx.replace)
		}
		n := args[0]
		c.cmds = append(c.cmds, Command{Name: baseOf(n), Args: strs(args[1:])})
		if !n.lit {
			c.deny("command name %s is not a literal word: what runs is decided at run time", n.src)
			return
		}
		if n.val == "" || strings.HasSuffix(n.val, "/") {
			c.deny("command name %q is not a command", n.val)
			return
		}
		base := path.Base(n.val)
		if r := c.g.nameVerdict(n.val, base); r != "" {
			c.deny("%s", r)
			return
		}
		next, ncx, more := c.rules(base, args[1:], cx)
		if !more || c.reason != "" {
			return
		}
		args, cx = next, ncx
	}
}

func baseOf(a arg) string {
	if !a.lit {
		return a.src
	}
	if a.val == "" {
		return ""
	}
	return path.Base(a.val)
}

func strs(args []arg) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a.String()
	}
	return out
}

// taint marks words containing xargs' replace string as non-literal: they
// are filled from standard input at run time.
func taint(args []arg, repl string) []arg {
	out := make([]arg, len(args))
	for i, a := range args {
		if a.lit && strings.Contains(a.val, repl) {
			a.lit = false
			a.src = a.val
		}
		out[i] = a
	}
	return out
}

// redirect refuses network pseudo-devices (bash opens /dev/tcp/host/port).
func (c *checker) redirect(r *syntax.Redirect) {
	if r.Word == nil {
		return
	}
	a := word(r.Word)
	if a.lit {
		p := path.Clean(a.val)
		if strings.HasPrefix(p, "/dev/tcp/") || strings.HasPrefix(p, "/dev/udp/") {
			c.deny("redirection to %s opens a network connection", a.val)
		}
		return
	}
	if strings.Contains(a.src, "/dev/") {
		c.deny("redirection target %s is not a literal path", a.src)
	}
}

// dangerousEnv names variables that make the next program (or shell) load or
// run code chosen by whoever sets them, or change which binary a name runs.
var dangerousEnv = []string{
	"PATH", "LD_*", "DYLD_*", "BASH_ENV", "ENV", "BASH_FUNC_*", "SHELLOPTS", "BASHOPTS",
	"PS4", "PROMPT_COMMAND", "IFS", "GCONV_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB",
	"PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS",
	"NODE_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_CONFIG_*", "GIT_EXTERNAL_DIFF",
	"PAGER", "GIT_PAGER", "MANPAGER", "EDITOR", "VISUAL", "LESSOPEN", "LESSCLOSE", "BROWSER",
}

func envNameDenied(name string) bool {
	for _, p := range dangerousEnv {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func (c *checker) assign(a *syntax.Assign) {
	if a.Name != nil && envNameDenied(a.Name.Value) {
		c.deny("setting %s changes what later commands load or run", a.Name.Value)
	}
	if a.Index != nil {
		c.arith(a.Index, "an array index")
	}
}

func (c *checker) decl(d *syntax.DeclClause) {
	for _, a := range d.Args {
		if !a.Naked || a.Name != nil {
			continue
		}
		if a.Value == nil {
			continue
		}
		v := word(a.Value)
		switch {
		case !v.lit:
			c.deny("%s argument %s is not a literal word", d.Variant.Value, v.src)
		case strings.HasPrefix(v.val, "-") || strings.HasPrefix(v.val, "+"):
			if strings.ContainsAny(v.val[1:], "nif") {
				c.deny("%s %s (name references, integer or function attributes) is not allowed", d.Variant.Value, v.val)
			}
		case strings.Contains(v.val, "["):
			c.deny("%s %s: a subscript in a variable name is evaluated as code", d.Variant.Value, v.val)
		}
	}
}

// arith refuses arithmetic over anything but number literals: bash evaluates
// a variable's value as an expression, and an array subscript in that value
// (x='a[$(cmd)]'; echo $((x))) runs a command.
func (c *checker) arith(e syntax.ArithmExpr, where string) {
	syntax.Walk(e, func(n syntax.Node) bool {
		switch x := n.(type) {
		case *syntax.ParamExp:
			c.deny("%s reads variable %s: bash evaluates its value as code", where, printNode(x))
			return false
		case *syntax.Word:
			if s := x.Lit(); s == "" || !numeric(s) {
				if isName(s) {
					c.deny("%s reads variable %s: bash evaluates its value as code", where, s)
				} else {
					c.deny("%s uses %s: only number literals are allowed in arithmetic", where, printNode(x))
				}
			}
			return false
		}
		return true
	})
}

func numeric(s string) bool {
	switch {
	case s == "@" || s == "*" || isNumber(s):
		return true
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		return allOf(s[2:], isHex)
	}
	if b, n, ok := strings.Cut(s, "#"); ok && isNumber(b) && n != "" {
		return allOf(n, func(ch byte) bool {
			return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '_' || ch == '@'
		})
	}
	return false
}

func isName(s string) bool {
	return s != "" && !(s[0] >= '0' && s[0] <= '9') && allOf(s, func(ch byte) bool {
		return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '_'
	})
}

func allOf(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !f(s[i]) {
			return false
		}
	}
	return s != ""
}

func (c *checker) param(p *syntax.ParamExp) {
	if p.Excl && p.Names == 0 {
		if idx, ok := p.Index.(*syntax.Word); !ok || (idx.Lit() != "@" && idx.Lit() != "*") {
			c.deny("indirect expansion %s evaluates a variable's value as a name (and its subscript as code)", printNode(p))
		}
	}
	if p.Exp != nil && p.Exp.Op == syntax.OtherParamOps && p.Exp.Word != nil && strings.Contains(p.Exp.Word.Lit(), "P") {
		c.deny("prompt expansion %s runs command substitutions in a variable's value", printNode(p))
	}
	if p.Index != nil {
		c.arith(p.Index, "a subscript")
	}
	if p.Slice != nil {
		if p.Slice.Offset != nil {
			c.arith(p.Slice.Offset, "a substring offset")
		}
		if p.Slice.Length != nil {
			c.arith(p.Slice.Length, "a substring length")
		}
	}
}

// test checks [[ ]]: its arithmetic comparisons evaluate operands as
// expressions, and -v / -R evaluate subscripts.
func (c *checker) test(e syntax.TestExpr) {
	switch x := e.(type) {
	case *syntax.BinaryTest:
		switch x.Op {
		case syntax.TsEql, syntax.TsNeq, syntax.TsLeq, syntax.TsGeq, syntax.TsLss, syntax.TsGtr:
			for _, side := range []syntax.TestExpr{x.X, x.Y} {
				w, ok := side.(*syntax.Word)
				if !ok || !numeric(w.Lit()) {
					c.deny("[[ %s ]] compares arithmetically: only number literals are allowed", printNode(x))
					return
				}
			}
		}
		c.test(x.X)
		c.test(x.Y)
	case *syntax.UnaryTest:
		if x.Op == syntax.TsVarSet || x.Op == syntax.TsRefVar {
			w, ok := x.X.(*syntax.Word)
			if !ok {
				c.deny("[[ %s ]] is not allowed", printNode(x))
				return
			}
			if a := word(w); !a.lit || strings.Contains(a.val, "[") {
				c.deny("[[ %s ]]: a subscript or expansion in a variable name is evaluated as code", printNode(x))
			}
		}
		c.test(x.X)
	case *syntax.ParenTest:
		c.test(x.X)
	}
}

// hereInput returns the literal text a here-document or here-string gives the
// command as standard input, if it has exactly one; ok is false when the input
// is not literal. found is false when stdin is not redirected that way.
func hereInput(redirs []*syntax.Redirect) (text string, found, ok bool) {
	for _, r := range redirs {
		if r.N != nil && r.N.Value != "0" {
			continue
		}
		switch r.Op {
		case syntax.Hdoc, syntax.DashHdoc:
			found = true
			if r.Hdoc == nil {
				text, ok = "", true
				continue
			}
			quoted := false
			for _, p := range r.Word.Parts {
				if _, lit := p.(*syntax.Lit); !lit {
					quoted = true
				}
			}
			if strings.Contains(r.Word.Lit(), `\`) {
				quoted = true
			}
			var b strings.Builder
			ok = true
			for _, p := range r.Hdoc.Parts {
				l, isLit := p.(*syntax.Lit)
				if !isLit {
					ok = false
					break
				}
				if quoted {
					b.WriteString(l.Value)
				} else {
					b.WriteString(unquoteDbl(l.Value))
				}
			}
			text = b.String()
		case syntax.WordHdoc:
			found = true
			a := word(r.Word)
			text, ok = a.val+"\n", a.lit
		case syntax.RdrIn, syntax.RdrInOut, syntax.DplIn:
			found = true
			text, ok = "", false
		}
	}
	return text, found, ok
}

// stdinFile returns the literal path of a "< file" redirection of standard
// input, if any.
func stdinFile(redirs []*syntax.Redirect) (string, bool) {
	p := ""
	for _, r := range redirs {
		if r.N != nil && r.N.Value != "0" {
			continue
		}
		if r.Op == syntax.RdrIn {
			a := word(r.Word)
			if !a.lit {
				return "", false
			}
			p = a.val
		}
	}
	return p, p != ""
}
