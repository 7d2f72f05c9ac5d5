// Package ssh is the SSH protocol engine of the ephemeral proxy
// (engine → guard → mask → record): it accepts one agent's SSH connections
// for one grant, opens its own connection to the target with the grant's
// short-lived certificate, and relays only what the grant allows.
//
//	eng, err := ssh.New(ssh.Config{Grant: g, Guard: shellGuard, Masker: m, Recorder: rec, Logger: log})
//	go eng.Serve(ctx, conn)                    // session mode: ctx ends at the grant deadline
//	res, err := eng.Exec(ctx, g.Operation)     // exec mode: masked output, "exit N" in res.Tag
//
// # Facing the agent
//
// golang.org/x/crypto/ssh server with password authentication only: the user
// is the grant id and the password the one-time grant secret, compared in
// constant time. There is no public-key authentication at all, so the
// CVE-2024-45337 class (a key offered in PublicKeyCallback but never proved,
// used for authorization) cannot arise. The proxy presents its own host key,
// generated per grant unless Config.HostKey is set. Agents get AES-GCM only
// (aes128-gcm, aes256-gcm; OpenSSH 6.2+): x/crypto's chacha20-poly1305 has no
// assembly on amd64 and CTR adds an HMAC pass, which halved scp throughput.
//
// Terrapin (CVE-2023-48795): x/crypto negotiates strict key exchange when the
// peer offers it but cannot be told to require it. The engine requires it on
// both sides: before x/crypto sees the peer's KEXINIT, the engine checks that
// it lists kex-strict-c-v00@openssh.com (agents) or
// kex-strict-s-v00@openssh.com (targets) and fails the connection otherwise
// (ErrNoStrictKex). OpenSSH 9.6+ and Debian's patched 9.2 offer it.
//
// # Facing the target
//
// ssh.Dial to Target.Address as Target.User (else Credential.Username) with
// Credential.PrivateKey and Credential.Certificate. The target's host key must
// match Target.KnownHosts (plain keys, @cert-authority and @revoked lines,
// matched by x/crypto's knownhosts); a grant without KnownHosts is refused by
// New.
//
// # What the agent may do
//
//   - exec: the command is checked by the shell guard (package
//     ephemeral/guard/shell). Allowed: it runs on the target, standard output
//     and error come back through the masker, the exit status (or signal) is
//     forwarded. Refused: the agent reads "jitgate: blocked by policy: <reason>"
//     on stderr and gets exit status 126; nothing reaches the target.
//   - shell and pty-req: only with Guard.Commands.Interactive. The shell is
//     recorded as an asciicast v2 file next to the JSONL recording; its output
//     is masked. Keystrokes are recorded, not filtered: blocking keystrokes is
//     unsound (line editing, history, aliases, editors), so an interactive
//     grant is as powerful as the login on the target.
//   - subsystem sftp (and so scp, which uses sftp since OpenSSH 9): only with
//     Guard.Commands.FileTransfer, and only when the grant has no masking
//     detectors: sftp is a binary protocol the masker cannot read, so with
//     detectors on it is refused rather than let files carry out what is
//     masked everywhere else (fail closed). Relayed unmasked and recorded as
//     byte counts. `scp -O` (the legacy protocol) is an exec of "scp -f" or
//     "scp -t": guarded, and its output masked like any command's, so a
//     downloaded file may come back with matches masked.
//   - direct-tcpip (ssh -L): only with Guard.Commands.PortForwarding, only to
//     the target host itself, never to its SSH port (a second SSH session
//     inside a forward would escape guard and recording); relayed unmasked.
//   - refused always: env (LD_PRELOAD, BASH_ENV...), x11-req,
//     auth-agent-req@openssh.com, tcpip-forward and streamlocal forwarding,
//     every other channel type and request.
//
// # Masking streamed output
//
// Output is masked with a carry-over window (see maskWriter): bytes are held
// until 8 KiB more have arrived, the stream ends, or it pauses for
// Config.FlushDelay, and are masked with 8 KiB of context on both sides, so a
// secret split across reads is still found. A secret split by a pause longer
// than FlushDelay is masked only if each part is recognisable alone.
// Terminal output is stored raw (escape sequences such as OSC 52 included):
// sanitize on playback.
//
// # Recording
//
// Every request is recorded in the grant's JSONL recording (package
// ephemeral/record) as a "query" event (Tag: exec, shell, subsystem, env,
// pty-req, direct-tcpip, ...; Statement: the command or detail) followed by a
// "verdict"; exec output as "rows" events (Columns ["stdout"] or ["stderr"],
// one masked chunk per row, up to Config.MaxRecordedOutput bytes per stream
// and command, then a "notice" with the full byte count); the exit as a
// "result" event (Tag "exit N");
// failures as "error". A write failure closes the connection.
//
// # Metrics
//
// Verdicts counts every recorded verdict (allowed or refused) and MaskCounts
// the values masked in command output by detector; the session proxy serves
// both on its metrics listener (ephemeral/session). Refusals before the guard
// (env, forwarding, x11 and agent requests, a malformed or second exec,
// shell or subsystem request on a channel) are recorded and counted as
// blocked verdicts too.
//
// # Deadline
//
// When ctx ends, the agent's connection and the upstream connection are
// closed at once.
package ssh
