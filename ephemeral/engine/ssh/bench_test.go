package ssh_test

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkCat50MB is an scp-like bulk transfer: cat of a 50 MB file, direct
// to sshd (the baseline) and through the proxy with and without masking
// detectors. Compare MB/s:
//
//	go test -run XXX -bench Cat50MB -benchtime 5x ./ephemeral/engine/ssh/
func BenchmarkCat50MB(b *testing.B) {
	tg := sharedTarget(b)
	raw := make([]byte, 50<<20/4*3)
	_, _ = rand.Read(raw)
	f := tg.plant(b, base64.StdEncoding.EncodeToString(raw)) // printable text, 50 MB
	st, _ := os.Stat(f)
	size := st.Size()

	run := func(b *testing.B, c *ssh.Client) {
		b.SetBytes(size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s, err := c.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			out, _ := s.StdoutPipe()
			if err := s.Start("cat " + f); err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, out)
			if err := s.Wait(); err != nil || n != size {
				b.Fatalf("copied %d of %d: %v", n, size, err)
			}
			s.Close()
		}
	}
	b.Run("direct", func(b *testing.B) {
		cred := tg.credential(b, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), nil)
		signer, err := ssh.ParsePrivateKey([]byte(cred.PrivateKey))
		if err != nil {
			b.Fatal(err)
		}
		pub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(cred.Certificate))
		cs, _ := ssh.NewCertSigner(pub.(*ssh.Certificate), signer)
		c, err := ssh.Dial("tcp", tg.srv.Addr, &ssh.ClientConfig{User: tg.srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)},
			HostKeyCallback: ssh.FixedHostKey(tg.srv.HostKey)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, c)
	})
	b.Run("proxy", func(b *testing.B) {
		p := startProxy(b, tg, opts{noMask: true})
		run(b, p.dial(b))
	})
	b.Run("proxy-masked", func(b *testing.B) {
		p := startProxy(b, tg, opts{})
		run(b, p.dial(b))
	})
}
