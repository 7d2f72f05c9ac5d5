package ssh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	sshengine "github.com/jitgate/jitgate/ephemeral/engine/ssh"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/sshtest"
)

const card = "4111 1111 1111 1111"

// target is a real sshd trusting a test CA.
type target struct {
	srv *sshtest.Server
	ca  ssh.Signer
}

var (
	sharedOnce sync.Once
	shared     *target
	sharedErr  error
)

// sharedTarget is one sshd for the tests that need nothing special; tests
// use their own files in the login user's home.
func sharedTarget(t testing.TB) *target {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = newTarget(sshtest.Config{}) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func newTarget(cfg sshtest.Config) (*target, error) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	cfg.TrustedUserCAKeys = [][]byte{ssh.MarshalAuthorizedKey(ca.PublicKey())}
	srv, err := sshtest.StartServer(cfg)
	if err != nil {
		return nil, err
	}
	return &target{srv: srv, ca: ca}, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

// credential signs a certificate for the target's user, valid in [from, to].
func (tg *target) credential(t testing.TB, from, to time.Time, ext map[string]string) spec.Credential {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewSignerFromKey(priv)
	cert := &ssh.Certificate{Key: key.PublicKey(), CertType: ssh.UserCert, KeyId: "jitgate:test", ValidPrincipals: []string{tg.srv.User},
		ValidAfter: uint64(from.Unix()), ValidBefore: uint64(to.Unix()), Permissions: ssh.Permissions{Extensions: ext}}
	if err := cert.SignCert(rand.Reader, tg.ca); err != nil {
		t.Fatal(err)
	}
	block, _ := ssh.MarshalPrivateKey(priv, "")
	return spec.Credential{Username: tg.srv.User, PrivateKey: spec.WireSecret(pem.EncodeToMemory(block)),
		Certificate: string(ssh.MarshalAuthorizedKey(cert)), LeaseID: "test", Expires: to}
}

// plant writes a file readable by the login user and returns its path.
func (tg *target) plant(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(tg.srv.Home, "jitgate-"+randHex(6))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return p
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// proxy is an engine serving one grant on a loopback listener.
type proxy struct {
	eng    *sshengine.Engine
	grant  *spec.Grant
	addr   string
	rec    *record.Recorder
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

type opts struct {
	commands spec.Commands
	cred     *spec.Credential
	known    []string
	ext      map[string]string
	noMask   bool
}

func startProxy(t testing.TB, tg *target, o opts) *proxy {
	t.Helper()
	dir := t.TempDir()
	cred := tg.credential(t, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), o.ext)
	if o.cred != nil {
		cred = *o.cred
	}
	known := o.known
	if known == nil {
		known = []string{tg.srv.KnownHosts}
	}
	g := &spec.Grant{ID: "g-" + randHex(4), Mode: spec.Session, ClientSecret: spec.WireSecret("s3cret-" + randHex(8)),
		Target:   spec.Target{Name: "box", Protocol: spec.SSH, Address: tg.srv.Addr, User: tg.srv.User, KnownHosts: known},
		Deadline: time.Now().Add(time.Hour), Credential: cred, Guard: spec.Guard{Access: spec.Write, Commands: o.commands},
		Record: spec.Record{Dir: dir}}
	rec, err := record.Open(dir, record.Header{GrantID: g.ID, Mode: "session"})
	if err != nil {
		t.Fatal(err)
	}
	gd, err := shell.New(shell.Config{Allow: o.commands.Allow, Deny: o.commands.Deny})
	if err != nil {
		t.Fatal(err)
	}
	var mk *mask.Masker
	if !o.noMask {
		if mk, err = mask.New(mask.Config{Detectors: []string{"credit_card", "aws_access_key"}}); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := sshengine.New(sshengine.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{eng: eng, grant: g, addr: ln.Addr().String(), rec: rec, dir: dir, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	go func() {
		defer close(p.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				wg.Wait()
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = eng.Serve(ctx, c) }()
		}
	}()
	context.AfterFunc(ctx, func() { ln.Close() })
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop within 10s of cancel")
		}
		rec.Close()
	})
	return p
}

// events closes nothing: it flushes and reads the recording so far.
func (p *proxy) events(t testing.TB) []record.Event {
	t.Helper()
	if err := p.rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(p.rec.Path())
	if err != nil && !strings.Contains(err.Error(), "unexpected end") {
		t.Fatal(err)
	}
	return evs
}

// dial connects an x/crypto client to the proxy.
func (p *proxy) dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", p.addr, &ssh.ClientConfig{User: p.grant.ID,
		Auth:            []ssh.AuthMethod{ssh.Password(string(p.grant.ClientSecret))},
		HostKeyCallback: ssh.FixedHostKey(p.eng.HostKey()), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sshResult is what the real ssh client did.
type sshResult struct {
	stdout, stderr string
	status         int
}

// realSSH runs OpenSSH's ssh client against the proxy, authenticating with
// the grant secret through SSH_ASKPASS (no sshpass needed).
func (p *proxy) realSSH(t testing.TB, args ...string) sshResult {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(p.addr)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{p.addr}, p.eng.HostKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	_ = os.WriteFile(secret, []byte(p.grant.ClientSecret), 0o600)
	askpass := filepath.Join(dir, "askpass")
	_ = os.WriteFile(askpass, []byte("#!/bin/sh\ncat '"+secret+"'\n"), 0o700)
	base := []string{"-F", "/dev/null", "-p", port, "-l", p.grant.ID,
		"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "IdentityAgent=none",
		"-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-o", "BatchMode=no"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(append(base, args[:len(args)-1]...), host, args[len(args)-1])...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	res := sshResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.status = ee.ExitCode()
	default:
		t.Fatalf("ssh: %v", err)
	}
	return res
}

func (r sshResult) String() string {
	return fmt.Sprintf("status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var _ = strconv.Itoa
