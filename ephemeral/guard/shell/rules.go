package shell

import (
	"path"
	"strings"
)

const (
	whyDestroy = "deletes or overwrites data"
	whyDevice  = "formats or wipes a device"
	whyPower   = "stops or restarts the machine"
	whyNet     = "opens network connections or jumps to another host"
	whyCode    = "runs code the guard cannot see"
	whyEditor  = "editors have shell escapes"
	whyAdmin   = "changes the system's users, mounts, kernel or firewall"
)

// defaultDeny is the default deny list by base name. Allow entries naming one
// exactly lift it for a grant.
var defaultDeny = map[string]string{
	"rm": whyDestroy, "unlink": whyDestroy, "shred": whyDestroy, "wipe": whyDestroy, "srm": whyDestroy,
	"dd": whyDestroy, "truncate": whyDestroy,
	"wipefs": whyDevice, "mkswap": whyDevice, "mke2fs": whyDevice, "fdisk": whyDevice, "sfdisk": whyDevice,
	"cfdisk": whyDevice, "parted": whyDevice, "sgdisk": whyDevice, "gdisk": whyDevice, "blkdiscard": whyDevice,
	"shutdown": whyPower, "reboot": whyPower, "halt": whyPower, "poweroff": whyPower, "init": whyPower,
	"telinit": whyPower, "kexec": whyPower, "killall5": "signals every process",
	"nc": whyNet, "ncat": whyNet, "netcat": whyNet, "socat": whyNet, "telnet": whyNet, "ssh": whyNet,
	"scp": whyNet, "sftp": whyNet, "ftp": whyNet, "tftp": whyNet, "sshpass": whyNet,
	"eval": whyCode, "source": whyCode, ".": whyCode, "trap": whyCode, "alias": whyCode, "enable": whyCode,
	"crontab": whyCode, "at": whyCode, "batch": whyCode, "parallel": whyCode, "script": whyCode,
	"gdb": whyCode, "strace": whyCode, "ltrace": whyCode, "nsenter": whyCode, "unshare": whyCode,
	"systemd-run": whyCode, "tmux": whyCode, "screen": whyCode, "irb": whyCode, "jshell": whyCode,
	"ghci": whyCode, "expect": whyCode, "fc": whyCode, "hash": whyCode,
	"vi": whyEditor, "vim": whyEditor, "nvim": whyEditor, "view": whyEditor, "vimdiff": whyEditor,
	"ex": whyEditor, "ed": whyEditor, "emacs": whyEditor, "nano": whyEditor, "pico": whyEditor,
	"mount": whyAdmin, "umount": whyAdmin, "insmod": whyAdmin, "rmmod": whyAdmin, "modprobe": whyAdmin,
	"passwd": whyAdmin, "chpasswd": whyAdmin, "useradd": whyAdmin, "userdel": whyAdmin, "usermod": whyAdmin,
	"visudo": whyAdmin, "iptables": whyAdmin, "ip6tables": whyAdmin, "nft": whyAdmin,
}

// defaultDenyGlobs are default deny patterns over the base name.
var defaultDenyGlobs = []string{"mkfs*"}

// shells whose -c strings the guard parses, with the grammar it uses.
var shells = map[string]lang{
	"sh": langPOSIX, "dash": langPOSIX, "ash": langPOSIX, "hush": langPOSIX,
	"bash": langBash, "rbash": langBash, "zsh": langZsh, "ksh": langKorn, "mksh": langKorn,
	"ksh93": langKorn, "pdksh": langKorn,
}

// otherShells cannot be parsed: their -c strings and standard input are refused.
var otherShells = map[string]bool{"fish": true, "csh": true, "tcsh": true, "pwsh": true, "powershell": true, "elvish": true, "nu": true, "xonsh": true}

// interp describes a scripting language: its options that carry inline code,
// its options that take a value, and an option that names a library module to
// run instead of a script (allowed).
type interp struct {
	inline string
	valued string
	module byte
	// inlineLong are long options carrying code.
	inlineLong []string
}

var interps = []struct {
	pattern string
	i       interp
}{
	{"python*", interp{inline: "c", valued: "WXQ", module: 'm'}},
	{"pypy*", interp{inline: "c", valued: "WXQ", module: 'm'}},
	{"perl*", interp{inline: "eE", valued: "IMmxlCdDi0"}},
	{"ruby*", interp{inline: "e", valued: "rICEFKTWx"}},
	{"node", interp{inline: "epi", valued: "r", inlineLong: []string{"eval", "print", "interactive"}}},
	{"nodejs", interp{inline: "epi", valued: "r", inlineLong: []string{"eval", "print", "interactive"}}},
	{"bun", interp{inline: "e", inlineLong: []string{"eval", "print"}}},
	{"deno", interp{}},
	{"php*", interp{inline: "rRBEa", valued: "cdz"}},
	{"lua*", interp{inline: "ei", valued: "l"}},
	{"tclsh*", interp{}},
	{"wish*", interp{}},
	{"Rscript", interp{inline: "e"}},
	{"R", interp{inline: "e"}},
	{"osascript", interp{inline: "e"}},
	{"guile", interp{inline: "c"}},
}

func interpFor(base string) (interp, bool) {
	for _, x := range interps {
		if ok, _ := path.Match(x.pattern, base); ok {
			return x.i, true
		}
	}
	return interp{}, false
}

func isInterpreter(base string) bool {
	if _, ok := shells[base]; ok {
		return true
	}
	if otherShells[base] {
		return true
	}
	_, ok := interpFor(base)
	return ok
}

var awks = map[string]bool{"awk": true, "gawk": true, "mawk": true, "nawk": true}

// rules applies what a command's arguments mean. For a wrapper it returns the
// wrapped command (more is true).
func (c *checker) rules(base string, rest []arg, cx cmdCtx) (next []arg, ncx cmdCtx, more bool) {
	ncx = cx // wrappers pass on stdin, redirections and xargs' context
	if cx.piped && isInterpreter(base) {
		c.deny("output piped into %s is run as code", base)
		return nil, ncx, false
	}
	if l, ok := shells[base]; ok {
		c.shell(base, l, rest, cx)
		return nil, ncx, false
	}
	if otherShells[base] {
		c.deny("%s is a shell whose code the guard cannot parse", base)
		return nil, ncx, false
	}
	if it, ok := interpFor(base); ok {
		c.interpreter(base, it, rest, cx)
		return nil, ncx, false
	}
	if awks[base] {
		c.awk(base, rest)
		return nil, ncx, false
	}
	switch base {
	case "env":
		o, i, err := parseOpts(rest, optSpec{flags: "i0v", valued: "uCS",
			longFlags: []string{"ignore-environment", "null", "debug"}, longValued: []string{"unset", "chdir", "split-string"}})
		if err != nil {
			c.deny("env: %v", err)
			return nil, ncx, false
		}
		if o.has("S", "split-string") {
			c.deny("env -S splits a string into a command at run time")
			return nil, ncx, false
		}
		rest = rest[i:]
		for len(rest) > 0 && (rest[0].lit && (rest[0].val == "-" || strings.Contains(rest[0].val, "=")) || !rest[0].lit && strings.Contains(rest[0].src, "=")) {
			if !rest[0].lit {
				c.deny("env assignment %s is not literal", rest[0].src)
				return nil, ncx, false
			}
			if name, _, _ := strings.Cut(rest[0].val, "="); envNameDenied(name) {
				c.deny("setting %s changes what later commands load or run", name)
				return nil, ncx, false
			}
			rest = rest[1:]
		}
		return rest, ncx, len(rest) > 0
	case "sudo":
		o, i, err := parseOpts(rest, optSpec{flags: "AbEeHiKklnPSsVv", valued: "ughpUCrtTDR",
			longFlags:  []string{"login", "shell", "non-interactive", "preserve-groups", "set-home", "background", "stdin", "reset-timestamp", "remove-timestamp", "list", "validate", "edit", "askpass", "bell", "preserve-env"},
			longValued: []string{"user", "group", "host", "prompt", "other-user", "close-from", "role", "type", "command-timeout", "chdir", "chroot"}})
		if err != nil {
			c.deny("sudo: %v", err)
			return nil, ncx, false
		}
		if o.has("e", "edit") {
			c.deny("sudo -e opens an editor, which has shell escapes")
			return nil, ncx, false
		}
		rest = rest[i:]
		for len(rest) > 0 && rest[0].lit && strings.Contains(rest[0].val, "=") {
			if name, _, _ := strings.Cut(rest[0].val, "="); envNameDenied(name) {
				c.deny("setting %s changes what later commands load or run", name)
				return nil, ncx, false
			}
			rest = rest[1:]
		}
		if len(rest) == 0 && o.has("s", "i", "shell", "login") {
			c.deny("sudo -s/-i without a command starts a shell that reads commands from standard input")
			return nil, ncx, false
		}
		return rest, ncx, len(rest) > 0
	case "doas":
		o, i, err := parseOpts(rest, optSpec{flags: "ns", valued: "uC"})
		if err != nil {
			c.deny("doas: %v", err)
			return nil, ncx, false
		}
		rest = rest[i:]
		if len(rest) == 0 && o.has("s") {
			c.deny("doas -s starts a shell that reads commands from standard input")
			return nil, ncx, false
		}
		return rest, ncx, len(rest) > 0
	case "xargs":
		o, i, err := parseOpts(rest, optSpec{flags: "0oprtx", valued: "aEdILnPs", optional: "eil",
			longFlags:    []string{"null", "no-run-if-empty", "verbose", "interactive", "exit", "open-tty", "show-limits"},
			longValued:   []string{"arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"},
			longOptional: []string{"replace", "eof", "max-lines"}})
		if err != nil {
			c.deny("xargs: %v", err)
			return nil, ncx, false
		}
		for _, k := range []string{"I", "i", "replace"} {
			if v, ok := o[k]; ok {
				ncx.replace = v[len(v)-1]
				if ncx.replace == "" {
					ncx.replace = "{}"
				}
			}
		}
		rest = rest[i:]
		ncx.open = true
		return rest, ncx, len(rest) > 0
	case "nice":
		_, i, err := parseOpts(rest, optSpec{valued: "n", numeric: true, longValued: []string{"adjustment"}})
		return c.wrapped("nice", rest, i, err, ncx)
	case "ionice":
		o, i, err := parseOpts(rest, optSpec{flags: "t", valued: "cnpPu", longValued: []string{"class", "classdata", "pid", "pgid", "uid"}, longFlags: []string{"ignore"}})
		if err == nil && o.has("p", "P", "u", "pid", "pgid", "uid") {
			return nil, ncx, false
		}
		return c.wrapped("ionice", rest, i, err, ncx)
	case "timeout":
		_, i, err := parseOpts(rest, optSpec{flags: "v", valued: "sk", longFlags: []string{"preserve-status", "foreground", "verbose"}, longValued: []string{"signal", "kill-after"}})
		if err == nil {
			if i >= len(rest) {
				return nil, ncx, false
			}
			i++ // the duration
		}
		return c.wrapped("timeout", rest, i, err, ncx)
	case "nohup", "builtin":
		_, i, err := parseOpts(rest, optSpec{})
		return c.wrapped(base, rest, i, err, ncx)
	case "stdbuf":
		_, i, err := parseOpts(rest, optSpec{valued: "ioe", longValued: []string{"input", "output", "error"}})
		return c.wrapped("stdbuf", rest, i, err, ncx)
	case "time":
		_, i, err := parseOpts(rest, optSpec{flags: "apvqV", valued: "of", longFlags: []string{"append", "portability", "verbose", "quiet"}, longValued: []string{"output", "format"}})
		return c.wrapped("time", rest, i, err, ncx)
	case "command":
		o, i, err := parseOpts(rest, optSpec{flags: "pvV"})
		if err == nil && o.has("v", "V") {
			return nil, ncx, false
		}
		return c.wrapped("command", rest, i, err, ncx)
	case "exec":
		_, i, err := parseOpts(rest, optSpec{flags: "cl", valued: "a"})
		return c.wrapped("exec", rest, i, err, ncx)
	case "busybox":
		if len(rest) > 0 && rest[0].lit && strings.HasPrefix(rest[0].val, "-") {
			return nil, ncx, false // --list, --help
		}
		return rest, ncx, len(rest) > 0
	case "chroot":
		_, i, err := parseOpts(rest, optSpec{longFlags: []string{"skip-chdir"}, longValued: []string{"userspec", "groups"}})
		if err == nil {
			if i+1 >= len(rest) {
				c.deny("chroot without a command starts an interactive shell")
				return nil, ncx, false
			}
			i++ // the new root
		}
		return c.wrapped("chroot", rest, i, err, ncx)
	case "setsid":
		_, i, err := parseOpts(rest, optSpec{flags: "cfw", longFlags: []string{"ctty", "fork", "wait"}})
		return c.wrapped("setsid", rest, i, err, ncx)
	case "taskset":
		o, i, err := parseOpts(rest, optSpec{flags: "acp", longFlags: []string{"all-tasks", "cpu-list", "pid"}})
		if err == nil {
			if o.has("p", "pid") {
				return nil, ncx, false
			}
			if i >= len(rest) {
				return nil, ncx, false
			}
			i++ // the mask
		}
		return c.wrapped("taskset", rest, i, err, ncx)
	case "chrt":
		o, i, err := parseOpts(rest, optSpec{flags: "abdefiorRmvp", valued: "TPD"})
		if err == nil {
			if o.has("p", "m") || i >= len(rest) {
				return nil, ncx, false
			}
			i++ // the priority
		}
		return c.wrapped("chrt", rest, i, err, ncx)
	case "flock":
		sp := optSpec{flags: "sxunoFe", valued: "wEc", longFlags: []string{"shared", "exclusive", "unlock", "nonblock", "close", "no-fork", "verbose"},
			longValued: []string{"timeout", "conflict-exit-code", "command"}}
		_, i, err := parseOpts(rest, sp)
		if err != nil {
			c.deny("flock: %v", err)
			return nil, ncx, false
		}
		if i >= len(rest) || i+1 == len(rest) {
			return nil, ncx, false // flock FD
		}
		after := rest[i+1:]
		o, j, err := parseOpts(after, sp)
		if err != nil {
			c.deny("flock: %v", err)
			return nil, ncx, false
		}
		for _, k := range []string{"c", "command"} {
			if v, ok := o[k]; ok {
				c.script(v[len(v)-1], langPOSIX, cx.depth+1)
				return nil, ncx, false
			}
		}
		return after[j:], ncx, j < len(after)
	case "watch":
		o, i, err := parseOpts(rest, optSpec{flags: "tbegcxpwr", optional: "d", valued: "nq",
			longFlags: []string{"no-title", "beep", "errexit", "chgexit", "color", "no-color", "exec", "precise", "no-wrap", "no-rerun"}, longValued: []string{"interval", "equexit"}, longOptional: []string{"differences"}})
		if err != nil {
			c.deny("watch: %v", err)
			return nil, ncx, false
		}
		rest = rest[i:]
		if o.has("x", "exec") {
			return rest, ncx, len(rest) > 0
		}
		parts := make([]string, len(rest))
		for k, a := range rest {
			if !a.lit {
				c.deny("watch runs its arguments through sh -c, and %s is not literal", a.src)
				return nil, ncx, false
			}
			parts[k] = a.val
		}
		if len(parts) > 0 {
			c.script(strings.Join(parts, " "), langPOSIX, cx.depth+1)
		}
		return nil, ncx, false
	case "su", "runuser":
		// su permutes its arguments: options may follow the user.
		for k := 0; k < len(rest); k++ {
			a := rest[k]
			if !a.lit {
				c.deny("%s argument %s is not literal", base, a.src)
				return nil, ncx, false
			}
			v := a.val
			var cmd string
			switch {
			case v == "-s" || v == "--shell" || strings.HasPrefix(v, "--shell="):
				c.deny("%s -s picks a shell the guard cannot check", base)
				return nil, ncx, false
			case v == "-c" || v == "--command" || v == "--session-command":
				if k+1 >= len(rest) || !rest[k+1].lit {
					c.deny("%s -c needs a literal command string", base)
					return nil, ncx, false
				}
				cmd = rest[k+1].val
			case strings.HasPrefix(v, "--command=") || strings.HasPrefix(v, "--session-command="):
				_, cmd, _ = strings.Cut(v, "=")
			case strings.HasPrefix(v, "-c") && !strings.HasPrefix(v, "--"):
				cmd = v[2:]
			default:
				continue
			}
			c.script(cmd, langPOSIX, cx.depth+1)
			return nil, ncx, false
		}
		c.deny("%s without -c starts a shell that reads commands from standard input", base)
		return nil, ncx, false
	case "find":
		c.find(rest, cx)
	case "kill":
		c.kill(rest, cx)
	case "chmod", "chown", "chgrp":
		c.chmod(base, rest, cx)
	case "systemctl":
		for _, a := range rest {
			if !a.lit {
				c.deny("systemctl argument %s is not literal", a.src)
				return nil, ncx, false
			}
			switch a.val {
			case "poweroff", "reboot", "halt", "kexec", "suspend", "hibernate", "hybrid-sleep", "emergency", "rescue", "isolate", "default", "soft-reboot":
				c.deny("systemctl %s %s", a.val, whyPower)
				return nil, ncx, false
			}
		}
	case "tar":
		for _, a := range rest {
			if !a.lit {
				continue
			}
			for _, p := range []string{"--to-command", "--checkpoint-action", "--use-compress-program", "--info-script", "--new-volume-script", "--rsh-command", "--rmt-command", "-I", "-F"} {
				if a.val == p || strings.HasPrefix(a.val, p+"=") || (len(p) == 2 && strings.HasPrefix(a.val, p)) {
					c.deny("tar %s runs a command", p)
					return nil, ncx, false
				}
			}
		}
	case "git":
		for k, a := range rest {
			if !a.lit {
				continue
			}
			v := a.val
			if v == "-c" || strings.HasPrefix(v, "--config-env") || strings.HasPrefix(v, "--exec-path=") || (strings.HasPrefix(v, "-c") && k == 0) {
				c.deny("git %s can set a command git runs", v)
				return nil, ncx, false
			}
			if v == "config" {
				for _, b := range rest[k+1:] {
					l := strings.ToLower(b.val)
					for _, p := range []string{"alias.", "core.", "diff.", "filter.", "merge.", "credential.", "sequence.", "uploadpack.", "protocol."} {
						if !b.lit || strings.HasPrefix(l, p) {
							c.deny("git config %s can set a command git runs", b.String())
							return nil, ncx, false
						}
					}
				}
			}
		}
	case "rsync":
		for _, a := range rest {
			if !a.lit {
				continue
			}
			if a.val == "-e" || strings.HasPrefix(a.val, "--rsh") || (!strings.HasPrefix(a.val, "-") && strings.Contains(a.val, ":")) {
				c.deny("rsync %s reaches another host", a.val)
				return nil, ncx, false
			}
		}
	case "read", "unset", "mapfile", "readarray", "getopts", "printf", "wait", "test", "[":
		c.varNames(base, rest)
	}
	return nil, ncx, false
}

// wrapped returns the command a simple wrapper runs after its own options.
func (c *checker) wrapped(base string, rest []arg, i int, err error, ncx cmdCtx) ([]arg, cmdCtx, bool) {
	if err != nil {
		c.deny("%s: %v", base, err)
		return nil, ncx, false
	}
	rest = rest[i:]
	return rest, ncx, len(rest) > 0
}

// shell checks an invocation of a shell the guard can parse.
func (c *checker) shell(base string, l lang, rest []arg, cx cmdCtx) {
	o, i, err := parseOpts(rest, optSpec{flags: "abefhkmnptuvxBCEHPTclsri", valued: "oO", plus: true,
		longFlags: []string{"login", "noprofile", "norc", "posix", "noediting", "restricted", "verbose", "debugger", "dump-strings", "dump-po-strings", "pretty-print"}})
	if err != nil {
		c.deny("%s: %v", base, err)
		return
	}
	if o.has("i") {
		c.deny("%s -i is an interactive shell reading standard input", base)
		return
	}
	rest = rest[i:]
	if len(rest) > 0 && rest[0].lit && rest[0].val == "-" {
		rest = rest[1:]
	}
	if o.has("c") {
		if len(rest) == 0 {
			c.deny("%s -c without a command string", base)
			return
		}
		if !rest[0].lit {
			c.deny("%s -c string %s is not literal: what runs is decided at run time", base, rest[0].src)
			return
		}
		c.script(rest[0].val, l, cx.depth+1)
		return
	}
	if o.has("s") || len(rest) == 0 {
		if cx.open {
			c.deny("%s gets its script from standard input", base)
			return
		}
		c.stdinCode(base, l, cx)
		return
	}
	c.scriptFile(base, rest[0])
}

// stdinCode checks an interpreter that reads its program from standard input:
// a literal here-document or here-string is parsed (shells) ; anything else is
// refused.
func (c *checker) stdinCode(base string, l lang, cx cmdCtx) {
	text, found, ok := hereInput(cx.redirs)
	if found && ok && l >= 0 {
		c.script(text, l, cx.depth+1)
		return
	}
	if p, isFile := stdinFile(cx.redirs); isFile && !stdinPath(p) {
		return // like running a script file
	}
	c.deny("%s reads code from standard input, which the guard cannot check", base)
}

// scriptFile checks the script operand of an interpreter. A script file's
// contents are not checked (as with ./script); where it comes from is.
func (c *checker) scriptFile(base string, a arg) {
	if !a.lit {
		c.deny("%s script %s is not a literal path: it may be generated at run time", base, a.src)
		return
	}
	if stdinPath(a.val) {
		c.deny("%s %s reads code from standard input", base, a.val)
	}
}

func stdinPath(p string) bool {
	cp := path.Clean(p)
	return p == "-" || cp == "/dev/stdin" || strings.HasPrefix(cp, "/dev/fd/") || strings.HasPrefix(cp, "/proc/") || cp == "/dev/tty"
}

func (c *checker) interpreter(base string, it interp, rest []arg, cx cmdCtx) {
	if base == "deno" {
		if len(rest) == 0 || !rest[0].lit || rest[0].val == "eval" || rest[0].val == "repl" {
			c.deny("deno without a literal script runs code the guard cannot see")
		}
		return
	}
	i := 0
	for i < len(rest) {
		a := rest[i]
		if !a.lit {
			c.deny("%s argument %s is not literal", base, a.src)
			return
		}
		v := a.val
		if v == "--" {
			i++
			break
		}
		if v == "-" || !strings.HasPrefix(v, "-") {
			break
		}
		i++
		if strings.HasPrefix(v, "--") {
			name, _, _ := strings.Cut(v[2:], "=")
			if contains(it.inlineLong, name) {
				c.deny("%s --%s runs inline code the guard cannot check", base, name)
				return
			}
			continue
		}
		for j := 1; j < len(v); j++ {
			ch := v[j]
			if strings.IndexByte(it.inline, ch) >= 0 {
				c.deny("%s -%c runs inline code the guard cannot check", base, ch)
				return
			}
			if it.module != 0 && ch == it.module {
				return // runs a named library module
			}
			if strings.IndexByte(it.valued, ch) >= 0 {
				if j == len(v)-1 {
					i++ // the value is the next word
				}
				break
			}
		}
	}
	rest = rest[min(i, len(rest)):]
	if len(rest) == 0 {
		if cx.open {
			c.deny("%s gets its script from standard input", base)
			return
		}
		c.stdinCode(base, -1, cx)
		return
	}
	c.scriptFile(base, rest[0])
}

// awk programs may run commands (system(), print | "cmd", "cmd" | getline)
// or load extensions (@load): such programs are refused.
func (c *checker) awk(base string, rest []arg) {
	o, i, err := parseOpts(rest, optSpec{flags: "bcCdDgMOPrStVyNhsl", valued: "fvFEeiWlL",
		longValued: []string{"file", "assign", "field-separator", "source", "exec", "include", "load"},
		longFlags:  []string{"posix", "traditional", "sandbox", "lint", "characters-as-bytes", "re-interval", "optimize", "version", "help", "bignum", "csv"}})
	if err != nil {
		c.deny("%s: %v", base, err)
		return
	}
	if o.has("l", "load", "L") {
		c.deny("%s -l loads an extension", base)
		return
	}
	var progs []string
	for _, k := range []string{"e", "source"} {
		progs = append(progs, o[k]...)
	}
	for _, k := range []string{"f", "file", "E", "exec", "i", "include"} {
		for _, f := range o[k] {
			if stdinPath(f) {
				c.deny("%s reads its program from standard input", base)
				return
			}
		}
	}
	if len(progs) == 0 && !o.has("f", "file", "E", "exec") {
		if i >= len(rest) {
			return
		}
		if !rest[i].lit {
			c.deny("%s program %s is not literal", base, rest[i].src)
			return
		}
		progs = append(progs, rest[i].val)
	}
	for _, p := range progs {
		if strings.Contains(p, "system") || strings.Contains(p, "|") || strings.Contains(p, "@load") {
			c.deny("%s program can run commands (system, pipes or @load)", base)
			return
		}
	}
}

// find: -exec and friends run a command, checked like any other; -delete
// removes files, refused when rm is.
func (c *checker) find(rest []arg, cx cmdCtx) {
	for k := 0; k < len(rest); k++ {
		a := rest[k]
		if !a.lit {
			c.deny("find argument %s is not literal: it could expand to -exec or -delete", a.src)
			return
		}
		switch a.val {
		case "-delete":
			if r := c.g.nameVerdict("rm", "rm"); r != "" {
				c.deny("find -delete removes files like rm, and %s", r)
				return
			}
		case "-exec", "-execdir", "-ok", "-okdir":
			end := k + 1
			for end < len(rest) && !(rest[end].lit && (rest[end].val == ";" || rest[end].val == "+")) {
				end++
			}
			sub := rest[k+1 : end]
			if len(sub) == 0 {
				c.deny("find %s without a command", a.val)
				return
			}
			c.command(sub, cmdCtx{depth: cx.depth, replace: "{}", open: true})
			if c.reason != "" {
				return
			}
			k = end
		}
	}
}

func (c *checker) kill(rest []arg, cx cmdCtx) {
	targets := rest
	if len(rest) > 0 && rest[0].lit {
		switch v := rest[0].val; {
		case v == "-s" || v == "-n" || v == "--signal":
			targets = rest[min(2, len(rest)):]
		case v == "-l" || v == "-L" || v == "--list" || v == "--table":
			return
		case strings.HasPrefix(v, "-") && v != "--" && v != "-1" && v != "-0":
			targets = rest[1:]
		}
	}
	if len(targets) > 0 && targets[0].lit && targets[0].val == "--" {
		targets = targets[1:]
	}
	if cx.open {
		c.deny("kill with targets from standard input could signal every process")
		return
	}
	for _, t := range targets {
		if !t.lit {
			c.deny("kill target %s is not a literal process id", t.src)
			return
		}
		switch strings.TrimLeft(t.val, "+") {
		case "1", "-1", "0", "-0":
			c.deny("kill %s signals init, every process, or the whole process group", t.val)
			return
		}
	}
}

// systemRoots are the directories a recursive chmod or chown must not touch.
var systemRoots = map[string]bool{"/": true, "/etc": true, "/usr": true, "/bin": true, "/sbin": true, "/lib": true,
	"/lib32": true, "/lib64": true, "/libx32": true, "/boot": true, "/var": true, "/home": true, "/root": true, "/opt": true,
	"/srv": true, "/sys": true, "/proc": true, "/dev": true, "/run": true, "~": true, "/usr/bin": true, "/usr/lib": true,
	"/usr/local": true, "/var/lib": true}

func (c *checker) chmod(base string, rest []arg, cx cmdCtx) {
	recursive := false
	var operands []arg
	for _, a := range rest {
		switch {
		case a.lit && (a.val == "--recursive" || (strings.HasPrefix(a.val, "-") && !strings.HasPrefix(a.val, "--") && strings.Contains(a.val, "R"))):
			recursive = true
		case a.lit && strings.HasPrefix(a.val, "-") && len(a.val) > 1 && !isModeLike(a.val):
		default:
			operands = append(operands, a)
		}
	}
	if !recursive {
		return
	}
	if cx.open {
		c.deny("%s -R with targets from standard input", base)
		return
	}
	if len(operands) > 0 {
		operands = operands[1:] // the mode or owner
	}
	for _, t := range operands {
		if !t.lit {
			c.deny("%s -R target %s is not a literal path", base, t.src)
			return
		}
		p := t.val
		if strings.HasPrefix(p, "~") {
			p = "~" + strings.TrimRight(strings.TrimPrefix(p, "~"), "/")
		}
		if p != "~" {
			p = path.Clean(p)
		}
		if systemRoots[p] {
			c.deny("%s -R %s changes a whole system tree", base, t.val)
			return
		}
	}
}

// isModeLike: chmod -w is a mode, not an option.
func isModeLike(s string) bool {
	return len(s) > 1 && strings.Trim(s[1:], "rwxXst") == ""
}

// varNames refuses variable-name arguments with subscripts or expansions:
// bash evaluates a subscript in a name (read 'a[$(cmd)]') as code.
func (c *checker) varNames(base string, rest []arg) {
	check := func(a arg) bool {
		if !a.lit || strings.Contains(a.val, "[") {
			c.deny("%s: variable name %s with a subscript or expansion is evaluated as code", base, a.String())
			return false
		}
		return true
	}
	switch base {
	case "printf", "wait":
		for k := 0; k+1 < len(rest); k++ {
			if rest[k].lit && (rest[k].val == "-v" && base == "printf" || rest[k].val == "-p" && base == "wait") {
				check(rest[k+1])
				return
			}
		}
	case "test", "[":
		for k := 0; k+1 < len(rest); k++ {
			if rest[k].lit && (rest[k].val == "-v" || rest[k].val == "-R") {
				if !check(rest[k+1]) {
					return
				}
			}
		}
	case "read":
		for k := 0; k < len(rest); k++ {
			a := rest[k]
			if a.lit && strings.HasPrefix(a.val, "-") {
				last := a.val[len(a.val)-1]
				if strings.IndexByte("dinNptua", last) >= 0 && k+1 < len(rest) {
					k++
					if last == 'a' && !check(rest[k]) {
						return
					}
				}
				continue
			}
			if !check(a) {
				return
			}
		}
	default: // unset, mapfile, readarray, getopts
		for _, a := range rest {
			if a.lit && strings.HasPrefix(a.val, "-") {
				continue
			}
			if !check(a) {
				return
			}
		}
	}
}
