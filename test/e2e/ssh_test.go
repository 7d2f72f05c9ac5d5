package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/stack"
)

// TestSSHExec: an agent runs shell commands on a real OpenSSH server through
// the broker and the ephemeral SSH proxy, with a per-grant certificate from
// the embedded CA. Allowed commands run and their output is masked; rm in
// its disguises is refused before a certificate is minted; the broker and the
// proxy judge with the same shell guard.
func TestSSHExec(t *testing.T) {
	dir := t.TempDir()
	// A file on the host holding a card number and a canary the agent must not delete.
	srv, caFile := stack.SSHTarget(t, dir, map[string]string{"notes.txt": "customer card 4111 1111 1111 1111\n"})
	secretFile := filepath.Join(srv.Home, "notes.txt")

	iss := stack.StartIssuer(t)
	policyText := fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %s, audience: jitgate}
targets:
%s
rules:
  - name: agents-run-commands
    when: '"ai-agents" in identity.groups'
    targets: [web-1]
    access: read
`, iss.URL, stack.SSHPolicyTarget("web-1", srv, caFile))
	b := serve(t, writePolicy(t, dir, policyText), filepath.Join(dir, "data"), iss.Env(), "broker", "serve", "--log-level", "warn")
	tok := iss.Token(t, "agent-1", "ai-agents")
	run := func(args ...string) (string, string, int) { return cli(t, b.env, tok, "", args...) }
	out, errOut, code := run("exec", "--target", "web-1", "--command", "echo hello from $(whoami); cat notes.txt")
	if code != 0 || !strings.Contains(out, "hello from "+srv.User) {
		t.Fatalf("allowed command: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if strings.Contains(strings.ReplaceAll(out, " ", ""), "4111111111111111") || !strings.Contains(out, "customer card") {
		t.Fatalf("the card number was not masked:\n%s", out)
	}
	for _, attack := range []string{"rm -rf notes.txt", "bash -c 'rm -rf notes.txt'", "echo $(rm notes.txt)", "ls; rm notes.txt",
		"true && rm notes.txt", "echo rm notes.txt | sh", "env rm notes.txt", "/bin/rm notes.txt", "find . -name notes.txt -delete"} {
		_, errOut, code := run("exec", "--target", "web-1", "--command", attack)
		if code != 3 || !strings.Contains(errOut, "refused") {
			t.Errorf("%q: exit %d, stderr %s; want exit 3 (refused)", attack, code, errOut)
		}
	}
	// Session mode with the real ssh client: jitgate connect hands it the
	// proxy's host key and the one-time secret (through SSH_ASKPASS).
	sshCmd := `ssh -F /dev/null -o UserKnownHostsFile="$JITGATE_KNOWN_HOSTS" -o StrictHostKeyChecking=yes ` +
		`-o PreferredAuthentications=password -o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1 ` +
		`-p "$JITGATE_PORT" "$JITGATE_USER@$JITGATE_HOST" `
	out, errOut, code = run("connect", "--target", "web-1", "--quiet", "--", "sh", "-c", sshCmd+`'echo via-session; cat notes.txt'`)
	if code != 0 || !strings.Contains(out, "via-session") || strings.Contains(strings.ReplaceAll(out, " ", ""), "4111111111111111") {
		t.Fatalf("ssh through connect: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	_, errOut, code = run("connect", "--target", "web-1", "--quiet", "--", "sh", "-c", sshCmd+`'rm -f notes.txt'`)
	if code == 0 || !strings.Contains(errOut, "blocked by policy") {
		t.Fatalf("rm through an ssh session: exit %d, stderr %s", code, errOut)
	}
	if _, err := os.Stat(secretFile); err != nil {
		t.Fatalf("the canary file is gone: %v", err)
	}
}
