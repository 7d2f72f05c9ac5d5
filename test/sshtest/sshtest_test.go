package sshtest_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/test/sshtest"
)

func TestServerRefusesPlainKeysAndStops(t *testing.T) {
	t.Parallel()
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _ := ssh.NewSignerFromKey(caPriv)
	srv, err := sshtest.StartServer(sshtest.Config{TrustedUserCAKeys: [][]byte{ssh.MarshalAuthorizedKey(ca.PublicKey())}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if !strings.HasPrefix(srv.KnownHosts, "[127.0.0.1]:") || srv.User == "" {
		t.Fatalf("server %+v", srv)
	}
	// A key that is not certified by the CA is refused (AuthorizedKeysFile none).
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	plain, _ := ssh.NewSignerFromKey(priv)
	_, err = ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(plain)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey), Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("plain key login: %v", err)
	}
	// The CA itself signing a certificate for the user works.
	_, upriv, _ := ed25519.GenerateKey(rand.Reader)
	ukey, _ := ssh.NewSignerFromKey(upriv)
	cert := &ssh.Certificate{Key: ukey.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{srv.User},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cs, _ := ssh.NewCertSigner(cert, ukey)
	client, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("certificate login: %v\n%s", err, srv.Log())
	}
	client.Close()
	srv.Stop()
	if _, err := os.Stat(srv.Dir); !os.IsNotExist(err) {
		t.Errorf("Stop left %s behind", srv.Dir)
	}
	if c, err := net.DialTimeout("tcp", srv.Addr, time.Second); err == nil {
		c.Close()
		t.Error("sshd still listening after Stop")
	}
}
