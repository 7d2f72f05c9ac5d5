//go:build unix

package ssh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// BenchmarkSCP200MB downloads a 200 MB file with OpenSSH's real scp client,
// direct to sshd (the baseline, logging in with the same kind of
// certificate the proxy uses) and through the proxy on a file-transfer
// grant. Modern scp runs over the sftp subsystem; "legacy" is scp -O, the
// old protocol, which runs "scp -f <file>" as an exec request (guarded, and
// its output goes through the stream masker like any command's; the grant
// lifts scp from the shell guard's default deny list). Sub-benchmarks:
//
//	sftp/direct  sftp/proxy                       detectors off (sftp is refused when detectors are on, see doc.go)
//	legacy/direct legacy/proxy legacy/proxy-masked the masked row runs the credit_card and aws_access_key detectors
//
// Compare MB/s (and the ratio to direct in the same run):
//
//	go test -run XXX -bench SCP200MB -benchtime 2x ./ephemeral/engine/ssh/
func BenchmarkSCP200MB(b *testing.B) {
	if _, err := exec.LookPath("scp"); err != nil {
		b.Skip("no scp client")
	}
	tg := sharedTarget(b)
	// Random bytes: what a binary artifact looks like to the masker.
	f := filepath.Join(tg.srv.Home, "jitgate-scp-"+randHex(6))
	if err := writeRandomFile(f, 200<<20); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.Remove(f) })
	if os.Geteuid() == 0 {
		_ = exec.Command("chown", tg.srv.User, f).Run()
	}
	const size = 200 << 20

	direct := func(b *testing.B) scpEndpoint {
		dir := b.TempDir()
		cred := tg.credential(b, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), nil)
		key := filepath.Join(dir, "id_ed25519")
		if err := os.WriteFile(key, []byte(cred.PrivateKey), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(key+"-cert.pub", []byte(cred.Certificate), 0o600); err != nil {
			b.Fatal(err)
		}
		kh := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{tg.srv.Addr}, tg.srv.HostKey)+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		return scpEndpoint{addr: tg.srv.Addr, user: tg.srv.User, home: dir, knownHosts: kh,
			auth: []string{"-i", key, "-o", "CertificateFile=" + key + "-cert.pub", "-o", "PreferredAuthentications=publickey"}}
	}
	viaProxy := func(b *testing.B, noMask bool) scpEndpoint {
		return proxyEndpoint(b, startProxy(b, tg, opts{noMask: noMask, commands: spec.Commands{FileTransfer: true, Allow: []string{"scp", "*"}}}))
	}
	run := func(b *testing.B, ep scpEndpoint, legacy bool) {
		dst := filepath.Join(b.TempDir(), "copy")
		b.SetBytes(size)
		cpu0 := cpuTime()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := ep.download(legacy, f, dst); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st, err := os.Stat(dst)
			if err != nil || st.Size() != size {
				b.Fatalf("copied %v bytes, want %d: %v", st, size, err)
			}
			os.Remove(dst)
			b.StartTimer()
		}
		// CPU of this process (the proxy; scp and sshd are other processes)
		// per 100 MB: steadier than MB/s on a shared machine.
		b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N)/2, "proxy-cpu-ms/100MB")
	}
	b.Run("sftp/direct", func(b *testing.B) { run(b, direct(b), false) })
	b.Run("sftp/proxy", func(b *testing.B) { run(b, viaProxy(b, true), false) })
	b.Run("legacy/direct", func(b *testing.B) { run(b, direct(b), true) })
	b.Run("legacy/proxy", func(b *testing.B) { run(b, viaProxy(b, true), true) })
	b.Run("legacy/proxy-masked", func(b *testing.B) { run(b, viaProxy(b, false), true) })
}

// proxyEndpoint logs in to p with the grant secret through SSH_ASKPASS.
func proxyEndpoint(t testing.TB, p *proxy) scpEndpoint {
	t.Helper()
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{p.addr}, p.eng.HostKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	_ = os.WriteFile(secret, []byte(p.grant.ClientSecret), 0o600)
	askpass := filepath.Join(dir, "askpass")
	_ = os.WriteFile(askpass, []byte("#!/bin/sh\ncat '"+secret+"'\n"), 0o700)
	return scpEndpoint{addr: p.addr, user: p.grant.ID, home: dir, knownHosts: kh, askpass: askpass,
		auth: []string{"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"}}
}

// TestSCPThroughProxy: OpenSSH's scp (sftp underneath) downloads and uploads
// through a file-transfer grant without detectors and exits 0 (the proxy
// forwards the sftp server's real exit status), the file intact; the
// transfer is recorded as byte counts.
func TestSCPThroughProxy(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("scp"); err != nil {
		t.Skip("no scp client")
	}
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{noMask: true, commands: spec.Commands{FileTransfer: true}})
	ep := proxyEndpoint(t, p)
	src := filepath.Join(tg.srv.Home, "jitgate-scp-"+randHex(6))
	if err := writeRandomFile(src, 3<<20+17); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(src) })
	want, _ := os.ReadFile(src)
	local := filepath.Join(t.TempDir(), "copy")
	if err := ep.download(false, src, local); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(local); !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes, not the %d of the source", len(got), len(want))
	}
	found := false
	for _, ev := range p.events(t) {
		if ev.Type == record.Notice && ev.Tag == "subsystem" && strings.Contains(ev.Error, "from target") {
			found = true
		}
		if ev.Type == record.Result && ev.Tag != "exit 0" {
			t.Errorf("recorded %s", ev.Tag)
		}
	}
	if !found {
		t.Fatalf("no byte-count notice: %+v", p.events(t))
	}
}

// scpEndpoint is how the scp client reaches one path: direct or the proxy.
type scpEndpoint struct {
	addr, user, home, knownHosts, askpass string
	auth                                  []string
}

func (ep scpEndpoint) download(legacy bool, remote, local string) error {
	host, port, _ := net.SplitHostPort(ep.addr)
	args := []string{"-q", "-B", "-F", "/dev/null", "-P", port,
		"-o", "UserKnownHostsFile=" + ep.knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentityAgent=none", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"}
	if ep.askpass != "" {
		args = append(args[:1], args[2:]...) // -B (batch mode) would disable the askpass prompt
	}
	if legacy {
		args = append(args, "-O")
	}
	args = append(append(args, ep.auth...), ep.user+"@"+host+":"+remote, local)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "scp", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + ep.home}
	if ep.askpass != "" {
		cmd.Env = append(cmd.Env, "SSH_ASKPASS="+ep.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none")
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.Stdin = nil
	if err := cmd.Run(); err != nil {
		return &scpError{err: err, stderr: errb.String()}
	}
	return nil
}

type scpError struct {
	err    error
	stderr string
}

func (e *scpError) Error() string { return "scp: " + e.err.Error() + ": " + e.stderr }

func writeRandomFile(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAgentCiphers: agents get AES-GCM, never chacha20-poly1305 or CTR.
func TestAgentCiphers(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{noMask: true})
	cfg := &ssh.ClientConfig{User: p.grant.ID, Auth: []ssh.AuthMethod{ssh.Password(string(p.grant.ClientSecret))},
		HostKeyCallback: ssh.FixedHostKey(p.eng.HostKey()), Timeout: 10 * time.Second,
		Config: ssh.Config{Ciphers: []string{ssh.CipherChaCha20Poly1305}}}
	if c, err := ssh.Dial("tcp", p.addr, cfg); err == nil {
		c.Close()
		t.Fatal("an agent offering only chacha20-poly1305 was accepted")
	} else if !strings.Contains(err.Error(), "no common algorithm for client to server cipher") {
		t.Fatalf("want a cipher negotiation failure, got %v", err)
	}
	cfg.Config.Ciphers = []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES256GCM}
	c, err := ssh.Dial("tcp", p.addr, cfg)
	if err != nil {
		t.Fatalf("chacha20 then aes256-gcm: %v", err)
	}
	c.Close()
}
