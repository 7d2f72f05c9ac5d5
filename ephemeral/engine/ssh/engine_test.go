package ssh_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	sshengine "github.com/jitgate/jitgate/ephemeral/engine/ssh"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/sshtest"
)

// kexInit builds a client's first binary packet: KEXINIT offering kexAlgos.
func kexInit(kexAlgos string) []byte {
	var payload []byte
	payload = append(payload, 20)
	payload = append(payload, make([]byte, 16)...)
	for _, list := range []string{kexAlgos, "ssh-ed25519", "aes128-ctr", "aes128-ctr", "hmac-sha2-256", "hmac-sha2-256", "none", "none", "", ""} {
		payload = binary.BigEndian.AppendUint32(payload, uint32(len(list)))
		payload = append(payload, list...)
	}
	payload = append(payload, 0, 0, 0, 0, 0)
	pad := 8 - (len(payload)+5)%8
	if pad < 4 {
		pad += 8
	}
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+pad+1))
	pkt = append(pkt, byte(pad))
	pkt = append(pkt, payload...)
	return append(pkt, make([]byte, pad)...)
}

func TestRealSSHAllowedCommandIsMasked(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	f := tg.plant(t, "card "+card+" end\nkey AKIAIOSFODNN7EXAMPLE\n")
	r := p.realSSH(t, "cat "+quote(f)+"; echo done; exit 3")
	if r.status != 3 {
		t.Fatalf("exit status not forwarded: %v", r)
	}
	if strings.Contains(r.stdout, card) || strings.Contains(r.stdout, "AKIAIOSFODNN7EXAMPLE") {
		t.Fatalf("secret reached the agent: %v", r)
	}
	if !strings.Contains(r.stdout, "card **** **** **** **** end") || !strings.HasSuffix(r.stdout, "done\n") {
		t.Fatalf("masked output missing: %v", r)
	}
	// The recording has the masked output too, never the secret.
	var sawRows bool
	for _, ev := range p.events(t) {
		for _, row := range ev.Rows {
			for _, v := range row {
				if v != nil && strings.Contains(*v, card) {
					t.Fatalf("secret in the recording: %+v", ev)
				}
				if v != nil && strings.Contains(*v, "**** **** **** ****") {
					sawRows = true
				}
			}
		}
	}
	if !sawRows {
		t.Fatal("masked output not recorded")
	}
}

func TestRealSSHBlocksRmInDisguise(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	victim := tg.plant(t, "precious")
	q := quote(victim)
	for _, cmd := range []string{
		"rm -rf " + q,
		"bash -c 'rm -rf " + victim + "'",
		"echo $(rm " + q + ")",
		"ls; rm " + q,
		"true && rm " + q,
		"echo rm " + q + " | sh",
		"env rm " + q,
		"sudo -u root rm " + q,
		`\rm ` + q,
		"find " + q + " -delete",
		"xargs rm <<< " + q,
	} {
		r := p.realSSH(t, cmd)
		if r.status != 126 || !strings.Contains(r.stderr, "jitgate: blocked by policy: ") {
			t.Errorf("%q: %v, want status 126 and the policy message", cmd, r)
		}
		if _, err := os.Stat(victim); err != nil {
			t.Fatalf("%q removed the file: %v", cmd, err)
		}
	}
	// The recording has every command with its verdict.
	blocked := 0
	for _, ev := range p.events(t) {
		if ev.Type == record.Verdict && ev.Tag == "exec" && ev.Allowed != nil && !*ev.Allowed && ev.Reason != "" {
			blocked++
		}
	}
	if blocked != 11 {
		t.Fatalf("recorded %d blocked verdicts, want 11", blocked)
	}
}

func TestRefusedRequests(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	c := p.dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Setenv("LD_PRELOAD", "/tmp/x.so"); err == nil {
		t.Error("env request accepted")
	}
	for _, req := range []string{"auth-agent-req@openssh.com", "x11-req", "made-up@example.com"} {
		if ok, err := sess.SendRequest(req, true, nil); ok || err != nil {
			t.Errorf("%s: ok=%v err=%v, want a refusal", req, ok, err)
		}
	}
	if err := sess.RequestPty("xterm", 24, 80, nil); err == nil {
		t.Error("pty-req accepted on a non-interactive grant")
	}
	if err := sess.RequestSubsystem("sftp"); err == nil {
		t.Error("sftp subsystem accepted without FileTransfer")
	}
	sess2, _ := c.NewSession()
	if err := sess2.Shell(); err == nil {
		t.Error("shell accepted on a non-interactive grant")
	}
	// Port forwards: local (direct-tcpip) and remote (tcpip-forward).
	if _, err := c.Dial("tcp", tg.srv.Addr); err == nil || !strings.Contains(err.Error(), "administratively prohibited") {
		t.Errorf("direct-tcpip: %v, want administratively prohibited", err)
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("tcpip-forward accepted")
	}
	if _, _, err := c.OpenChannel("x11", nil); err == nil {
		t.Error("x11 channel accepted")
	}
	reasons := map[string]bool{}
	for _, ev := range p.events(t) {
		if ev.Type == record.Verdict && ev.Allowed != nil && !*ev.Allowed {
			reasons[ev.Tag] = true
		}
	}
	for _, tag := range []string{"env", "auth-agent-req@openssh.com", "x11-req", "pty-req", "subsystem", "shell", "direct-tcpip", "tcpip-forward", "x11"} {
		if !reasons[tag] {
			t.Errorf("refusal of %s not recorded (have %v)", tag, reasons)
		}
	}
}

func TestRealSSHForwardingRefused(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	// -A (agent) and -o SendEnv: the client carries on without them; the
	// command still runs and nothing was granted.
	r := p.realSSH(t, "-A", "-o", "SendEnv=LANG", "-o", "SetEnv=BASH_ENV=/tmp/x", "echo $BASH_ENV-x")
	if r.status != 0 || r.stdout != "-x\n" {
		t.Fatalf("%v", r)
	}
	// -R (remote forward) with ExitOnForwardFailure: the client gives up.
	r = p.realSSH(t, "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", "echo should-not-run")
	if r.status == 0 || strings.Contains(r.stdout, "should-not-run") {
		t.Fatalf("remote forward: %v", r)
	}
}

func TestInteractiveShellRecordedAsAsciicast(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{commands: spec.Commands{Interactive: true}, ext: map[string]string{"permit-pty": ""}})
	f := tg.plant(t, card+"\n")
	c := p.dial(t)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 30, 100, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "cat "+f+"; exit 7\n")
	err = sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 7 {
		t.Fatalf("shell exit: %v (output %q)", err, out.String())
	}
	if strings.Contains(out.String(), card) || !strings.Contains(out.String(), "**** **** **** ****") {
		t.Fatalf("terminal output not masked: %q", out.String())
	}
	casts, _ := filepath.Glob(filepath.Join(p.dir, "*.cast"))
	if len(casts) != 1 {
		t.Fatalf("asciicast files: %v", casts)
	}
	fh, err := os.Open(casts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h, evs, err := asciicast.Read(fh)
	if err != nil {
		t.Fatalf("asciicast does not parse: %v", err)
	}
	var in, o strings.Builder
	for _, e := range evs {
		switch e.Code {
		case asciicast.Input:
			in.WriteString(e.Data)
		case asciicast.Output:
			o.WriteString(e.Data)
		}
	}
	if h.Width != 100 || h.Height != 30 || !strings.Contains(in.String(), "exit 7") || !strings.Contains(o.String(), "**** ****") || strings.Contains(o.String(), card) {
		t.Fatalf("asciicast header %+v input %q output %q", h, in.String(), o.String())
	}
	if evs[len(evs)-1].Code != asciicast.Marker || evs[len(evs)-1].Data != "exit 7" {
		t.Errorf("last event %+v, want the exit marker", evs[len(evs)-1])
	}
}

func TestSFTPOnlyWithFileTransfer(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{commands: spec.Commands{FileTransfer: true}, noMask: true})
	c := p.dial(t)
	sess, _ := c.NewSession()
	defer sess.Close()
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp refused with FileTransfer: %v", err)
	}
	// SSH_FXP_INIT version 3 → the server answers SSH_FXP_VERSION (2).
	_, _ = stdin.Write([]byte{0, 0, 0, 5, 1, 0, 0, 0, 3})
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(stdout, hdr); err != nil || hdr[4] != 2 {
		t.Fatalf("sftp version reply %v %v", hdr, err)
	}
}

// TestSFTPRefusedWhenMasking: a file-transfer grant whose output is masked
// cannot open sftp (a binary protocol the masker cannot read), with the
// reason recorded; scp -O, an exec, still runs through the masker.
func TestSFTPRefusedWhenMasking(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	// scp is on the shell guard's default deny list; an exact Allow entry
	// lifts it ("*" lets every other command not denied run).
	p := startProxy(t, tg, opts{commands: spec.Commands{FileTransfer: true, Allow: []string{"scp", "*"}}})
	c := p.dial(t)
	sess, _ := c.NewSession()
	defer sess.Close()
	if err := sess.RequestSubsystem("sftp"); err == nil {
		t.Fatal("sftp accepted on a grant with masking detectors")
	}
	found := false
	for _, ev := range p.events(t) {
		if ev.Type == record.Verdict && ev.Tag == "subsystem" && ev.Allowed != nil && !*ev.Allowed &&
			strings.Contains(ev.Reason, "sftp cannot be masked") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no recorded refusal: %+v", p.events(t))
	}
	// The legacy protocol's source side: acknowledgements in, "C0644 …",
	// the file and a NUL out, through the masker.
	f := tg.plant(t, "card "+card+"\n")
	s2, _ := c.NewSession()
	defer s2.Close()
	s2.Stdin = strings.NewReader("\x00\x00\x00\x00")
	out, _ := s2.Output("scp -f " + f)
	if !bytes.HasPrefix(out, []byte("C0644 ")) || !bytes.Contains(out, []byte("card ")) || bytes.Contains(out, []byte(card)) {
		t.Fatalf("scp -f through the masker: %q", out)
	}
}

func TestExecMode(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	f := tg.plant(t, "card "+card+"\n")
	ctx := t.Context()
	res, err := p.eng.Exec(ctx, "cat "+f+"; echo oops >&2; exit 4")
	if err != nil {
		t.Fatal(err)
	}
	if res.Tag != "exit 4" || res.Output != "card **** **** **** ****\n" || len(res.Notices) != 1 || res.Notices[0] != "oops\n" {
		t.Fatalf("result %+v", res)
	}
	_, err = p.eng.Exec(ctx, "bash -c 'rm -rf "+f+"'")
	if !errors.Is(err, session.ErrBlocked) || !strings.Contains(err.Error(), "rm is denied") {
		t.Fatalf("blocked exec: %v", err)
	}
	if _, err := os.Stat(f); err != nil {
		t.Fatal("blocked command ran")
	}
	res, err = p.eng.Exec(ctx, "head -c 3000000 /dev/zero")
	if err != nil || !res.Truncated || len(res.Output) != 1<<20 {
		t.Fatalf("large output: truncated=%v len=%d err=%v", res != nil && res.Truncated, len(res.Output), err)
	}
}

func TestExpiredCertificateRefusedByTarget(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	cred := tg.credential(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour), nil)
	p := startProxy(t, tg, opts{cred: &cred})
	if _, err := p.eng.Exec(t.Context(), "true"); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("exec with an expired certificate: %v", err)
	}
	r := p.realSSH(t, "true")
	if r.status == 0 {
		t.Fatalf("session with an expired certificate: %v", r)
	}
}

func TestKnownHosts(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewSignerFromKey(priv)
	other := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey.PublicKey())))
	p := startProxy(t, tg, opts{known: []string{"[" + strings.Replace(tg.srv.Addr, ":", "]:", 1) + " " + other}})
	if _, err := p.eng.Exec(t.Context(), "true"); err == nil || !strings.Contains(err.Error(), "key mismatch") {
		t.Fatalf("exec against a host with another key: %v", err)
	}
	_, err := sshengine.New(sshengine.Config{Grant: &spec.Grant{ID: "x", Target: spec.Target{Address: tg.srv.Addr, User: "u"},
		Credential: spec.Credential{PrivateKey: "k"}}, Guard: &shell.Guard{}, Recorder: p.rec})
	if !errors.Is(err, sshengine.ErrConfig) || !strings.Contains(err.Error(), "no known hosts") {
		t.Fatalf("New without KnownHosts: %v", err)
	}
}

func TestCertAuthorityKnownHosts(t *testing.T) {
	t.Parallel()
	// A target whose host key is certified: the proxy trusts the host CA.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostCA, _ := ssh.NewSignerFromKey(priv)
	tg, err := newTarget(sshtest.Config{HostCA: hostCA})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.srv.Stop)
	p := startProxy(t, tg, opts{known: []string{tg.srv.KnownHostsCA}})
	res, err := p.eng.Exec(t.Context(), "echo ok")
	if err != nil || res.Output != "ok\n" {
		t.Fatalf("exec via @cert-authority: %v %+v", err, res)
	}
}

func TestWrongSecretRefused(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	for _, cfg := range []*ssh.ClientConfig{
		{User: p.grant.ID, Auth: []ssh.AuthMethod{ssh.Password("wrong")}},
		{User: "other-grant", Auth: []ssh.AuthMethod{ssh.Password(string(p.grant.ClientSecret))}},
		{User: p.grant.ID, Auth: []ssh.AuthMethod{ssh.PublicKeys(tg.ca)}},
	} {
		cfg.HostKeyCallback = ssh.FixedHostKey(p.eng.HostKey())
		cfg.Timeout = 10 * time.Second
		if c, err := ssh.Dial("tcp", p.addr, cfg); err == nil {
			c.Close()
			t.Errorf("login as %s succeeded", cfg.User)
		}
	}
}

func TestStrictKexRequired(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	// A client whose KEXINIT does not offer kex-strict-c.
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("SSH-2.0-OldClient\r\n"))
	_, _ = conn.Write(kexInit("curve25519-sha256,ext-info-c"))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, _ := io.ReadAll(conn) // the proxy's banner and KEXINIT, then EOF
	if !bytes.HasPrefix(all, []byte("SSH-2.0-jitgate")) {
		t.Fatalf("no banner: %q", all)
	}
	// The proxy closes the connection, then records why: poll for the event.
	var found bool
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, ev := range p.events(t) {
			if ev.Type == record.Error && strings.Contains(ev.Error, "strict key exchange") {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("the refused handshake is not recorded")
	}
}

func TestDeadlineClosesBothSides(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	c := p.dial(t)
	sess, _ := c.NewSession()
	if err := sess.Start("sleep 300"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	p.cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("session ended cleanly; want it cut")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("session still open 10s after the deadline")
	}
}

func TestRecordingFailureEndsSession(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	c := p.dial(t)
	p.rec.Close() // every further write fails
	sess, _ := c.NewSession()
	if sess != nil {
		out, err := sess.CombinedOutput("echo should-not-run")
		if err == nil || strings.Contains(string(out), "should-not-run") {
			t.Fatalf("command ran without a recording: %q %v", out, err)
		}
	}
	_, err := p.eng.Exec(context.Background(), "echo x")
	if err == nil {
		t.Fatal("Exec ran without a recording")
	}
}

func TestRecordedOutputIsCappedButSentWhole(t *testing.T) {
	t.Parallel()
	tg := sharedTarget(t)
	p := startProxy(t, tg, opts{})
	c := p.dial(t)
	sess, _ := c.NewSession()
	out, err := sess.Output("head -c 3000000 /dev/zero | tr '\\0' a")
	if err != nil || len(out) != 3000000 {
		t.Fatalf("output %d bytes, err %v", len(out), err)
	}
	var recorded int
	var note string
	for _, ev := range p.events(t) {
		if ev.Type == record.Rows && ev.Tag == "stdout" {
			recorded += len(*ev.Rows[0][0])
		}
		if ev.Type == record.Notice && ev.Tag == "stdout" {
			note = ev.Error
		}
	}
	if recorded != 1<<20 || note != "3000000 bytes of stdout sent, the first 1048576 recorded" {
		t.Fatalf("recorded %d bytes, note %q", recorded, note)
	}
}

func TestPortForwardOnlyToTargetAndNotItsSSHPort(t *testing.T) {
	t.Parallel()
	tg, err := newTarget(sshtest.Config{AllowTCPForwarding: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.srv.Stop)
	// A service on the target host (loopback here).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p := startProxy(t, tg, opts{commands: spec.Commands{PortForwarding: true}, ext: map[string]string{"permit-port-forwarding": ""}})
	c := p.dial(t)
	fw, err := c.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("forward to a service on the target: %v", err)
	}
	_, _ = fw.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(fw, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the forward: %q %v", buf, err)
	}
	fw.Close()
	for _, dest := range []string{tg.srv.Addr, "10.1.2.3:80", "example.com:443"} {
		if _, err := c.Dial("tcp", dest); err == nil || !strings.Contains(err.Error(), "administratively prohibited") {
			t.Errorf("forward to %s: %v, want a refusal", dest, err)
		}
	}
}
