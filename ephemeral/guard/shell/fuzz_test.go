package shell_test

import (
	"path"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/jitgate/jitgate/ephemeral/guard/shell"
)

// FuzzCheck: Check never panics, and a line it allows contains no command
// whose name (after quote removal, by the mvdan expander, an oracle
// independent of the guard's own word evaluation) is on the deny list.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"ls -la", "rm -rf x", "bash -c 'rm -rf x'", "echo $(rm x)", "ls; rm x", "true && rm x", "ls | sh",
		"env rm x", "sudo -u root rm x", "xargs rm < f", "/bin/rm", `\rm`, `r\m`, "'rm'", `"r""m"`,
		"base64 -d <<< cm0K | bash", `find . -exec rm {} \;`, "f() { rm x; }; f", "cat <(rm x)",
		"bash <<'EOF'\nrm x\nEOF", "x=rm; $x", "echo $((1+2))", "[[ -n x ]]", "sh -c \"sh -c 'rm x'\"",
		"timeout 3 nice -n1 rm", "for i in 1 2; do echo $i; done", "case x in x) rm y;; esac",
	} {
		f.Add(s)
	}
	g, err := shell.New(shell.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		v := g.Check(line)
		if !v.Allowed {
			if v.Reason == "" {
				t.Fatalf("refusal without a reason for %q", line)
			}
			return
		}
		file, err := syntax.NewParser().Parse(strings.NewReader(line), "")
		if err != nil {
			t.Fatalf("Check allowed %q, which does not parse: %v", line, err)
		}
		syntax.Walk(file, func(n syntax.Node) bool {
			call, ok := n.(*syntax.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			name, err := expand.Literal(nil, call.Args[0])
			if err != nil {
				return true
			}
			if d, why := g.Denied(path.Base(name)); d && name != "" {
				t.Fatalf("Check allowed %q, but it runs %q (%s)", line, name, why)
			}
			return true
		})
	})
}
