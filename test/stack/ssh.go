package stack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/broker/credentials/sshca"
	"github.com/jitgate/jitgate/test/sshtest"
)

// SSHTarget starts a real OpenSSH server (test/sshtest) that trusts a new
// embedded SSH CA (broker/credentials/sshca) for user certificates, and
// writes the CA's private key to dir/ssh_ca for a policy's
// `ca_key: "file:<caFile>"`. plant writes files (name → content) into the
// login user's home, owned by that user.
func SSHTarget(t testing.TB, dir string, plant map[string]string) (srv *sshtest.Server, caFile string) {
	t.Helper()
	caPEM, err := sshca.GenerateCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sshca.LoadCA(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv = sshtest.Start(t, sshtest.Config{TrustedUserCAKeys: [][]byte{ssh.MarshalAuthorizedKey(ca.PublicKey())}})
	caFile = filepath.Join(dir, "ssh_ca")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, content := range plant {
		path := filepath.Join(srv.Home, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			_ = exec.Command("chown", srv.User, path).Run()
		}
	}
	return srv, caFile
}

// SSHPolicyTarget is a policy's targets-list entry ("  - name: …") for an
// SSH target on srv: its address, login user and host key, certificates from
// the embedded CA whose key is in caFile, and card numbers masked. extra are
// more fields of the entry, one a line ("commands: {interactive: true}").
// It has no final newline.
func SSHPolicyTarget(name string, srv *sshtest.Server, caFile string, extra ...string) string {
	entry := fmt.Sprintf(`  - name: %s
    kind: ssh
    address: %s
    user: %s
    known_hosts: [%q]
    credentials: {source: local, ca_key: "file:%s"}
    masking: {detectors: [credit_card]}
`, name, srv.Addr, srv.User, srv.KnownHosts, caFile)
	for _, line := range extra {
		entry += "    " + line + "\n"
	}
	return strings.TrimSuffix(entry, "\n")
}
