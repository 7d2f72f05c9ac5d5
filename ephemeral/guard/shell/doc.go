// Package shell is the guard for shell command lines: the step between the SSH
// (and Kubernetes exec) engines and the target in
// token → policy → grant → credential → engine → GUARD → mask → record.
// The broker calls it to decide and to show an approver what a command does;
// the proxy calls the same code to enforce, so what was approved is what runs.
//
//	g, err := shell.New(shell.Config{Allow: grant.Guard.Commands.Allow, Deny: grant.Guard.Commands.Deny})
//	v := g.Check(cmdline) // v.Allowed, v.Reason, v.Commands
//
// # How a line is read
//
// The line is parsed with mvdan.cc/sh/v3/syntax (bash grammar) and every simple
// command anywhere in it is checked: in pipelines, lists (;, &&, ||),
// subshells, blocks, function bodies, loops, command substitutions ($(...) and
// backticks), process substitutions, coprocesses and here-documents. The strings
// given to sh/bash/dash/zsh/ksh -c are parsed recursively (with the grammar of
// that shell, up to 8 levels), and so are literal here-documents and
// here-strings fed to a shell, the -c strings of su, runuser and flock, and the
// arguments of watch (which runs them through sh -c).
//
// Command names are taken after quote removal (`\rm`, `r\m`, `'rm'`, `"r""m"`
// and `$'\x72m'` are all rm) and reduced to their base name (/bin/rm is rm).
// Wrappers are looked through: env [-i] [-u N] [VAR=x]..., sudo [-u user] ...,
// doas, xargs (the command it runs; words containing its -I string are treated
// as run-time values), nice, ionice, timeout, nohup, stdbuf, time, command,
// builtin, exec, busybox, chroot, setsid, taskset, chrt, flock. An option of a
// wrapper the guard does not know is refused: it cannot tell which word is the
// command then.
//
// # Refused whatever the lists say (structural rules)
//
//   - a line that does not parse, is empty, longer than MaxLength or holds NUL;
//   - a command name that is not a literal word: $x, ${X}, $(echo rm), `r?`,
//     {rm,x}, a word filled in by xargs -I or find -exec {};
//   - any interpreter (shells, python*, perl*, ruby*, node, php*, lua*, ...)
//     on the receiving side of a pipe (curl ... | sh, base64 -d | bash, ls | python);
//   - an interpreter reading its program from standard input (bash, bash -s,
//     python3 -, perl /dev/stdin): in exec mode that input is the agent's
//     channel, which the guard never sees. A literal here-document or
//     here-string fed to a shell is parsed instead;
//   - inline code of languages the guard cannot parse (python -c, perl -e,
//     ruby -e, node -e/-p, php -r, lua -e, Rscript -e, fish/csh/pwsh -c) and
//     interpreter scripts that are not literal paths (bash <(curl ...));
//   - awk programs that call system(), use pipes or @load; env -S; sudo -e;
//     su/runuser without -c; sudo -s/-i or doas -s or chroot without a command;
//   - find -exec/-ok running a denied command, find -delete when rm is denied,
//     any non-literal find argument (it could expand to -exec);
//   - bash code-evaluation sinks: arithmetic ($((..)), ((..)), let, for ((..)),
//     subscripts, substring offsets, [[ -eq ]]) over anything but number
//     literals, since bash evaluates a variable's value as an expression and
//     runs command substitutions in its subscripts (x='a[$(rm -rf ~)]';
//     echo $((x))); indirect expansion ${!x}; prompt expansion ${x@P};
//     subscripted or non-literal variable names given to read, unset, printf
//     -v, mapfile, getopts, test -v, [[ -v ]], declare; declare -n/-i/-f;
//   - assignments (prefix, export, env, sudo) to variables that make programs
//     load or run other code: PATH, LD_*, BASH_ENV, ENV, BASH_FUNC_*,
//     SHELLOPTS, BASHOPTS, PS4, PROMPT_COMMAND, IFS, GCONV_PATH, PERL5OPT,
//     PYTHONPATH, NODE_OPTIONS, GIT_SSH_COMMAND, PAGER, EDITOR, ... (see
//     dangerousEnv);
//   - redirections to /dev/tcp and /dev/udp.
//
// # The default deny list (lifted per name by an exact Allow entry)
//
//   - deletes or overwrites data: rm, unlink, shred, wipe, srm, dd, truncate;
//   - formats or wipes devices: mkfs*, mke2fs, mkswap, wipefs, fdisk, sfdisk,
//     cfdisk, parted, sgdisk, gdisk, blkdiscard;
//   - power: shutdown, reboot, halt, poweroff, init, telinit, kexec, and
//     systemctl poweroff/reboot/halt/kexec/suspend/hibernate/rescue/emergency/
//     isolate; killall5, and kill of pid 1, -1 or 0 (or of non-literal pids);
//   - chmod/chown/chgrp -R on /, ~ or a top-level system directory;
//   - network and jumping: nc, ncat, netcat, socat, telnet, ssh, scp, sftp,
//     ftp, tftp, sshpass, rsync to a remote host or with -e;
//   - hidden code: eval, source, ., trap, alias, enable, hash, fc, crontab, at,
//     batch, parallel, script, gdb, strace, ltrace, nsenter, unshare,
//     systemd-run, tmux, screen, expect, REPLs (irb, jshell, ghci); tar
//     --to-command/--checkpoint-action/-I/-F; git -c, --config-env, --exec-path
//     and git config of alias./core./diff./filter./... keys;
//   - editors (they have shell escapes): vi, vim, nvim, view, vimdiff, ex, ed,
//     emacs, nano, pico;
//   - system administration: mount, umount, insmod, rmmod, modprobe, passwd,
//     chpasswd, useradd, userdel, usermod, visudo, iptables, ip6tables, nft.
//
// # What this guard is not
//
// A deny list over a Turing-complete language is a tripwire, not a boundary:
// it stops accidents and the known disguises above. Programs with their own
// ways to run commands remain (sed's e command, make, pagers' ! escapes,
// package managers' install scripts, a script file written by one allowed
// command and run by the next, or a binary named like a harmless one). The
// boundaries are an Allow list (every command must be named), a least-
// privilege login on the target, and the recording. Interactive shells are
// recorded, never filtered: blocking keystrokes is unsound.
package shell
