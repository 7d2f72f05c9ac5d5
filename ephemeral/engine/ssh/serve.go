package ssh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
)

// conn is one agent connection.
type conn struct {
	e      *Engine
	id     int
	up     *ssh.Client
	cancel context.CancelFunc
	chans  atomic.Int64
}

// rec records ev for this connection. A recording failure ends the
// connection: what cannot be recorded does not run.
func (c *conn) rec(ev record.Event) error {
	ev.Conn = c.id
	if err := c.e.cfg.Recorder.Write(ev); err != nil {
		c.e.log.Error("recording failed; closing the connection", "conn", c.id, "err", err)
		c.cancel()
		return err
	}
	return nil
}

// verdict counts and records one decision on a request.
func (c *conn) verdict(what, detail string, allowed bool, reason string) error {
	c.e.verdicts.note(allowed)
	if err := c.rec(record.Event{Type: record.Query, Tag: what, Statement: detail}); err != nil {
		return err
	}
	return c.rec(record.Event{Type: record.Verdict, Tag: what, Statement: detail, Allowed: &allowed, Reason: reason})
}

// Serve handles one agent connection until it ends or ctx is done (the grant
// deadline), closing the agent's and the target's connections promptly then.
func (e *Engine) Serve(ctx context.Context, client net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	if e.g.ClientSecret == "" {
		return fmt.Errorf("ssh: grant %s has no client secret", e.g.ID)
	}
	c := &conn{e: e, id: int(e.conns.Add(1)), cancel: cancel}
	_ = client.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(newKexCheck(client, kexStrictClient), e.server)
	if err != nil {
		ok := false
		_ = e.cfg.Recorder.Write(record.Event{Type: record.Error, Conn: c.id, Tag: "handshake", Allowed: &ok,
			Error: err.Error(), Statement: client.RemoteAddr().String()})
		return fmt.Errorf("ssh: handshake: %w", err)
	}
	defer sconn.Close()
	_ = client.SetDeadline(time.Time{})
	log := e.log.With("conn", c.id, "remote", client.RemoteAddr().String())
	if err := c.rec(record.Event{Type: record.Notice, Tag: "connect", Statement: "client " + string(sconn.ClientVersion()) + " from " + client.RemoteAddr().String()}); err != nil {
		return err
	}
	up, err := e.dial(ctx)
	if err != nil {
		_ = c.rec(record.Event{Type: record.Error, Tag: "upstream", Error: err.Error()})
		log.Warn("upstream connection failed", "err", err)
		return err
	}
	c.up = up
	defer up.Close()
	stopUp := context.AfterFunc(ctx, func() { up.Close(); sconn.Close() })
	defer stopUp()
	go func() { // the target went away: end the agent's connection too
		_ = up.Wait()
		cancel()
	}()
	go c.globalRequests(reqs)
	var wg sync.WaitGroup
	for nc := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.channel(ctx, nc)
		}()
	}
	cancel()
	wg.Wait()
	return nil
}

// globalRequests refuses every global request: remote (tcpip-forward) and
// streamlocal forwarding, and anything else. Keepalives get a failure reply,
// which OpenSSH treats as alive.
func (c *conn) globalRequests(reqs <-chan *ssh.Request) {
	for r := range reqs {
		switch r.Type {
		case "keepalive@openssh.com", "no-more-sessions@openssh.com":
		default:
			_ = c.verdict(r.Type, "", false, "global request "+r.Type+" is not allowed")
		}
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

func (c *conn) channel(ctx context.Context, nc ssh.NewChannel) {
	switch nc.ChannelType() {
	case "session":
		c.session(ctx, nc)
	case "direct-tcpip":
		c.directTCPIP(ctx, nc)
	default:
		reason := "channel type " + nc.ChannelType() + " is not allowed"
		_ = c.verdict(nc.ChannelType(), "", false, reason)
		_ = nc.Reject(ssh.Prohibited, "jitgate: "+reason)
	}
}

// directTCPIP is a local port forward (ssh -L). Allowed only when the grant
// permits port forwarding, and then only to the target host itself, never to
// its SSH port (a second SSH session inside the forward would escape the
// guard and the recording).
func (c *conn) directTCPIP(ctx context.Context, nc ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = c.verdict("direct-tcpip", "", false, "malformed direct-tcpip request")
		_ = nc.Reject(ssh.ConnectionFailed, "jitgate: malformed direct-tcpip request")
		return
	}
	dest := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	reason := ""
	thost, tport, _ := net.SplitHostPort(c.e.g.Target.Address)
	switch {
	case !c.e.g.Guard.Commands.PortForwarding:
		reason = "port forwarding is not allowed by this grant"
	case p.Host != thost && p.Host != "localhost" && p.Host != "127.0.0.1" && p.Host != "::1":
		reason = "port forwarding is allowed only to the target host itself"
	case strconv.Itoa(int(p.Port)) == tport || p.Port == 22:
		reason = "port forwarding to the target's SSH port is not allowed"
	}
	if err := c.verdict("direct-tcpip", dest, reason == "", reason); err != nil || reason != "" {
		_ = nc.Reject(ssh.Prohibited, "jitgate: "+reason)
		return
	}
	up, err := c.up.Dial("tcp", dest)
	if err != nil {
		_ = c.rec(record.Event{Type: record.Error, Tag: "direct-tcpip", Statement: dest, Error: err.Error()})
		_ = nc.Reject(ssh.ConnectionFailed, "jitgate: "+err.Error())
		return
	}
	defer up.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	stop := context.AfterFunc(ctx, func() { ch.Close(); up.Close() })
	defer stop()
	var in, out int64
	done := make(chan struct{})
	go func() {
		out, _ = io.Copy(ch, up)
		_ = ch.CloseWrite()
		close(done)
	}()
	in, _ = io.Copy(up, ch)
	if cw, ok := up.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	<-done
	_ = c.rec(record.Event{Type: record.Result, Tag: "direct-tcpip", Statement: dest,
		Error: fmt.Sprintf("bytes to target %d, from target %d (not inspected)", in, out)})
}

// ptyReq is an agent's pty-req.
type ptyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

func terminalModes(s string) ssh.TerminalModes {
	m := ssh.TerminalModes{}
	b := []byte(s)
	for len(b) >= 5 && b[0] != 0 && b[0] < 160 {
		m[b[0]] = binary.BigEndian.Uint32(b[1:5])
		b = b[5:]
	}
	return m
}

// session runs one session channel: env, x11 and agent forwarding are
// refused; exec is guarded; shell and pty only for interactive grants;
// subsystem sftp only for file-transfer grants.
func (c *conn) session(ctx context.Context, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	chID := int(c.chans.Add(1))
	s := &chanState{c: c, ch: ch, id: chID}
	defer s.finish()
	cmds := c.e.g.Guard.Commands
	for req := range reqs {
		ok := false
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			_ = ssh.Unmarshal(req.Payload, &kv)
			_ = c.verdict("env", kv.Name, false, "environment variables from the client are not allowed")
		case "x11-req", "auth-agent-req@openssh.com", "auth-agent-req":
			_ = c.verdict(req.Type, "", false, req.Type+" is not allowed")
		case "pty-req":
			var p ptyReq
			switch {
			case ssh.Unmarshal(req.Payload, &p) != nil:
				_ = c.verdict("pty-req", "", false, "malformed pty-req")
			case !cmds.Interactive:
				_ = c.verdict("pty-req", p.Term, false, "terminals are allowed only for interactive grants")
			case s.started():
				_ = c.verdict("pty-req", p.Term, false, "pty-req after the session started")
			default:
				s.pty = &p
				ok = c.verdict("pty-req", p.Term, true, "") == nil
			}
		case "window-change":
			var w struct{ Cols, Rows, Width, Height uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil {
				ok = s.resize(int(w.Cols), int(w.Rows))
			}
		case "signal":
			var sig struct{ Name string }
			if ssh.Unmarshal(req.Payload, &sig) == nil {
				ok = s.signal(sig.Name)
			}
		case "exec":
			var cmd struct{ Command string }
			if reason := refusedRequest(ssh.Unmarshal(req.Payload, &cmd), s.started()); reason != "" {
				_ = c.verdict("exec", cmd.Command, false, "exec "+reason)
				break
			}
			ok = s.exec(ctx, req, cmd.Command)
			continue // exec replied itself
		case "shell":
			if s.started() {
				_ = c.verdict("shell", "", false, "shell "+refusedRequest(nil, true))
				break
			}
			if !cmds.Interactive {
				_ = c.verdict("shell", "", false, "interactive shells are not allowed by this grant")
				break
			}
			ok = s.shell(ctx)
		case "subsystem":
			var sub struct{ Name string }
			if reason := refusedRequest(ssh.Unmarshal(req.Payload, &sub), s.started()); reason != "" {
				_ = c.verdict("subsystem", sub.Name, false, "subsystem "+reason)
				break
			}
			if sub.Name != "sftp" || !cmds.FileTransfer {
				_ = c.verdict("subsystem", sub.Name, false, "subsystem "+sub.Name+" is not allowed by this grant")
				break
			}
			if m := c.e.cfg.Masker; m != nil && m.Enabled() {
				// sftp is a binary protocol the masker cannot read: relaying it
				// would let files carry out what the detectors mask everywhere
				// else. Fail closed; scp -O (an exec, masked) still works.
				_ = c.verdict("subsystem", sub.Name, false, "sftp cannot be masked and this grant masks output with detectors; use scp -O (legacy protocol, masked) or a grant without detectors")
				break
			}
			ok = s.subsystem(ctx, sub.Name)
		default:
			_ = c.verdict(req.Type, "", false, "request "+req.Type+" is not allowed")
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
}

// refusedRequest is why an exec, shell or subsystem request is refused
// before the guard sees it, or "".
func refusedRequest(unmarshal error, started bool) string {
	switch {
	case unmarshal != nil:
		return "request is malformed"
	case started:
		return "request after the session started a command"
	}
	return ""
}

// chanState is one session channel and what runs in it upstream.
type chanState struct {
	c    *conn
	ch   ssh.Channel
	id   int
	pty  *ptyReq
	mu   sync.Mutex
	up   upstream
	cast *asciicast.Writer
	run  bool
	wg   sync.WaitGroup
}

func (s *chanState) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.run
}

func (s *chanState) resize(cols, rows int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pty == nil {
		return false
	}
	s.pty.Cols, s.pty.Rows = uint32(cols), uint32(rows)
	if s.cast != nil {
		_ = s.cast.Resize(cols, rows)
	}
	if s.up != nil {
		return s.up.WindowChange(rows, cols) == nil
	}
	return true
}

func (s *chanState) signal(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up == nil {
		return false
	}
	return s.up.Signal(ssh.Signal(name)) == nil
}

// finish waits for the upstream session's goroutines and closes the channel.
func (s *chanState) finish() {
	s.wg.Wait()
	s.ch.Close()
}

// exec guards and runs one command. It replies to req itself: a refused
// command still gets a successful reply, so the client shows the reason on
// stderr and exits with status 126.
func (s *chanState) exec(ctx context.Context, req *ssh.Request, cmd string) bool {
	c := s.c
	v := c.e.cfg.Guard.Check(cmd)
	if err := c.verdict("exec", cmd, v.Allowed, v.Reason); err != nil {
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
		return false
	}
	s.mu.Lock()
	s.run = true
	s.mu.Unlock()
	if !v.Allowed {
		if req.WantReply {
			_ = req.Reply(true, nil)
		}
		_, _ = fmt.Fprintf(s.ch.Stderr(), "jitgate: blocked by policy: %s\r\n", v.Reason)
		s.exit(cmd, 126, "")
		s.ch.Close()
		return true
	}
	ok := s.start(ctx, "exec", cmd, func(us *ssh.Session) error { return us.Start(cmd) })
	if req.WantReply {
		_ = req.Reply(ok, nil)
	}
	return ok
}

func (s *chanState) shell(ctx context.Context) bool {
	c := s.c
	w, h := 80, 24
	term := ""
	if s.pty != nil {
		w, h, term = int(s.pty.Cols), int(s.pty.Rows), s.pty.Term
	}
	name := fmt.Sprintf("%s.conn%d.ch%d.cast", c.e.g.ID, c.id, s.id)
	path := filepath.Join(c.e.cfg.CastDir, name)
	env := map[string]string{"SHELL": "", "TERM": term}
	cast, err := asciicast.Create(path, asciicast.Header{Width: w, Height: h, Env: env, Title: "jitgate " + c.e.g.ID}, c.e.cfg.Now)
	if err != nil {
		_ = c.verdict("shell", "", false, "the session cannot be recorded: "+err.Error())
		return false
	}
	if err := c.verdict("shell", name, true, "interactive shell: recorded, not filtered"); err != nil {
		cast.Close()
		return false
	}
	s.mu.Lock()
	s.cast = cast
	s.run = true
	s.mu.Unlock()
	return s.start(ctx, "shell", "", func(us *ssh.Session) error { return us.Shell() })
}

func (s *chanState) subsystem(ctx context.Context, name string) bool {
	if err := s.c.verdict("subsystem", name, true, "file transfer: relayed, not inspected"); err != nil {
		return false
	}
	s.mu.Lock()
	s.run = true
	s.mu.Unlock()
	return s.start(ctx, "subsystem", name, nil)
}

// start opens the upstream session, wires stdin, stdout and stderr through the
// masker and the recorders, and reports the exit status when it ends.
func (s *chanState) start(ctx context.Context, kind, cmd string, run func(*ssh.Session) error) bool {
	c := s.c
	var us upstream
	var ss *ssh.Session
	var err error
	if kind == "subsystem" {
		// x/crypto's Session cannot report a subsystem's exit status (its
		// Wait answers "session not started"): use the raw channel.
		us, err = openSubsystem(c.up, cmd)
	} else {
		ss, err = c.up.NewSession()
		us = ss
	}
	if err != nil {
		_ = c.rec(record.Event{Type: record.Error, Tag: kind, Statement: cmd, Error: err.Error()})
		return false
	}
	if s.pty != nil && ss != nil {
		if err := ss.RequestPty(s.pty.Term, int(s.pty.Rows), int(s.pty.Cols), terminalModes(s.pty.Modes)); err != nil {
			_ = c.rec(record.Event{Type: record.Error, Tag: "pty-req", Error: err.Error()})
			us.Close()
			return false
		}
	}
	stdin, err1 := us.StdinPipe()
	stdout, err2 := us.StdoutPipe()
	stderr, err3 := us.StderrPipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		us.Close()
		return false
	}
	raw := kind == "subsystem" // sftp is binary: relayed unmasked
	out := s.sink(kind, "stdout", s.ch, raw)
	errw := s.sink(kind, "stderr", s.ch.Stderr(), raw)
	if ss != nil {
		err = run(ss)
	} else {
		err = us.(*rawSession).request()
	}
	if err != nil {
		_ = c.rec(record.Event{Type: record.Error, Tag: kind, Statement: cmd, Error: err.Error()})
		us.Close()
		return false
	}
	s.mu.Lock()
	s.up = us
	s.mu.Unlock()
	var inBytes atomic.Int64
	go func() { // stdin: agent → target
		var err error
		if s.cast != nil {
			_, err = io.Copy(stdin, io.TeeReader(s.ch, castInput{s.cast}))
		} else {
			var n int64
			n, err = io.Copy(stdin, s.ch)
			inBytes.Add(n)
		}
		_ = err
		_ = stdin.Close()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		stop := context.AfterFunc(ctx, func() { us.Close() })
		defer stop()
		var copies sync.WaitGroup
		copies.Add(2)
		var nout, nerr int64
		go func() { defer copies.Done(); nout, _ = io.Copy(out, stdout); _ = out.Close() }()
		go func() { defer copies.Done(); nerr, _ = io.Copy(errw, stderr); _ = errw.Close() }()
		copies.Wait()
		werr := us.Wait()
		status, sig := 0, ""
		var ee *ssh.ExitError
		var re *rawExit
		switch {
		case werr == nil:
		case errors.As(werr, &ee):
			status, sig = ee.ExitStatus(), ee.Signal()
		case errors.As(werr, &re):
			status, sig = re.status, re.signal
		default:
			status = 255
		}
		if raw {
			_ = c.rec(record.Event{Type: record.Notice, Tag: kind, Statement: cmd,
				Error: fmt.Sprintf("bytes to target %d, from target %d (not inspected)", inBytes.Load(), nout+nerr)})
		}
		if s.cast != nil {
			_ = s.cast.Mark("exit " + strconv.Itoa(status))
			if err := s.cast.Close(); err != nil {
				_ = c.rec(record.Event{Type: record.Error, Tag: "asciicast", Error: err.Error()})
			}
		}
		s.exit(cmd, status, sig)
		_ = s.ch.CloseWrite()
		s.ch.Close()
		us.Close()
	}()
	return true
}

// sink returns the writer one output stream goes through: the stream masker
// (unless raw), then the agent's channel and the recording.
func (s *chanState) sink(kind, stream string, dst io.Writer, raw bool) io.WriteCloser {
	c := s.c
	limit := c.e.cfg.MaxRecordedOutput
	var total, recorded int64
	emit := func(b []byte) error {
		if _, err := dst.Write(b); err != nil {
			return err
		}
		if s.cast != nil {
			return s.cast.Output(b)
		}
		if raw {
			return nil
		}
		total += int64(len(b))
		if limit >= 0 && recorded >= int64(limit) {
			return nil
		}
		if limit >= 0 && recorded+int64(len(b)) > int64(limit) {
			b = b[:int64(limit)-recorded]
		}
		recorded += int64(len(b))
		v := string(b)
		return c.rec(record.Event{Type: record.Rows, Tag: stream, Columns: []string{stream}, Rows: [][]*string{{&v}}})
	}
	if raw {
		return nopCloser{writerFunc(emit)}
	}
	mw := newMaskWriter(c.e.cfg.Masker, c.e.cfg.FlushDelay, emit)
	return closerFunc{mw, func() error {
		err := mw.Close()
		if total > recorded {
			_ = c.rec(record.Event{Type: record.Notice, Tag: stream,
				Error: fmt.Sprintf("%d bytes of %s sent, the first %d recorded", total, stream, recorded)})
		}
		return err
	}}
}

type closerFunc struct {
	io.Writer
	close func() error
}

func (c closerFunc) Close() error { return c.close() }

func (s *chanState) exit(cmd string, status int, sig string) {
	tag := "exit " + strconv.Itoa(status)
	if sig != "" {
		tag = "signal " + sig
		_, _ = s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: sig}))
	} else {
		_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	}
	_ = s.c.rec(record.Event{Type: record.Result, Statement: cmd, Tag: tag})
}

type castInput struct{ w *asciicast.Writer }

func (c castInput) Write(p []byte) (int, error) {
	if err := c.w.Input(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
