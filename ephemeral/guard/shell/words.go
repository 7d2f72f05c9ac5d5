package shell

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"mvdan.cc/sh/v3/syntax"
)

// arg is one word of a simple command as the guard understands it.
type arg struct {
	// val is the word after quote removal; valid only when lit is true.
	val string
	// lit is true when the word has one value known before it runs: no
	// expansion, no substitution, no glob or brace pattern.
	lit bool
	// meta is true when an unquoted glob or brace pattern was found; the word
	// may expand to other words at run time.
	meta bool
	// src is the word as written, for verdicts and reasons.
	src string
}

func (a arg) String() string {
	if a.lit {
		return a.val
	}
	return a.src
}

// word evaluates w statically. Only literal parts (plain text, single quotes,
// $'...' and double quotes holding plain text) give a literal value.
func word(w *syntax.Word) arg {
	a := arg{lit: true, src: printNode(w)}
	var b strings.Builder
	for i, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			v, meta := unquoteLit(p.Value, i == 0)
			if meta {
				a.meta = true
				a.lit = false
			}
			b.WriteString(v)
		case *syntax.SglQuoted:
			if !p.Dollar {
				b.WriteString(p.Value)
				continue
			}
			v, ok := ansiC(p.Value)
			if !ok {
				a.lit = false
			}
			b.WriteString(v)
		case *syntax.DblQuoted:
			if p.Dollar { // $"..." is translated at run time
				a.lit = false
			}
			for _, q := range p.Parts {
				l, ok := q.(*syntax.Lit)
				if !ok {
					a.lit = false
					continue
				}
				b.WriteString(unquoteDbl(l.Value))
			}
		default: // ParamExp, CmdSubst, ArithmExp, ProcSubst, ExtGlob, BraceExp
			a.lit = false
		}
	}
	if a.lit {
		a.val = b.String()
	}
	return a
}

// unquoteLit removes backslash quoting from an unquoted literal and reports
// whether an unquoted glob (*, ?, [) or brace pattern ({a,b}, {1..3}) remains.
// A leading unquoted ~ expands to a home directory; it is kept as written,
// which is harmless for names (they are reduced to their base name).
func unquoteLit(s string, first bool) (string, bool) {
	var b strings.Builder
	meta := false
	brace := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					b.WriteByte(s[i])
				}
			}
			continue
		case '*', '?':
			meta = true
		case '[':
			if strings.IndexByte(s[i+1:], ']') >= 0 {
				meta = true
			}
		case '{':
			brace = i
		case ',':
			if brace >= 0 {
				meta = true
			}
		case '.':
			if brace >= 0 && i+1 < len(s) && s[i+1] == '.' {
				meta = true
			}
		case '}':
			brace = -1
		}
		b.WriteByte(c)
	}
	return b.String(), meta
}

// unquoteDbl removes the backslashes that are special inside double quotes.
func unquoteDbl(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '$', '`', '"', '\\':
				b.WriteByte(s[i+1])
				i++
				continue
			case '\n':
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ansiC decodes the body of a $'...' string. Unknown escapes make the word
// non-literal (fail closed) rather than guessed.
func ansiC(s string) (string, bool) {
	if !strings.Contains(s, `\`) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'e', 'E':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '\\', '\'', '"', '?':
			b.WriteByte(e)
		case 'x', 'u', 'U':
			max := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			j := i + 1
			for j < len(s) && j-i-1 < max && isHex(s[j]) {
				j++
			}
			if j == i+1 {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:j], 16, 32)
			if err != nil {
				return "", false
			}
			if e == 'x' {
				b.WriteByte(byte(n))
			} else {
				if !utf8.ValidRune(rune(n)) {
					return "", false
				}
				b.WriteRune(rune(n))
			}
			i = j - 1
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j-i < 3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			n, _ := strconv.ParseUint(s[i:j], 8, 16)
			b.WriteByte(byte(n))
			i = j - 1
		default: // \cX and anything else: not decoded, not literal
			return "", false
		}
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func printNode(n syntax.Node) string {
	var b strings.Builder
	if err := syntax.NewPrinter().Print(&b, n); err != nil {
		return fmt.Sprintf("<%T>", n)
	}
	return b.String()
}
