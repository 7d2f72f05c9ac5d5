// Package local launches the ephemeral proxy as a child process of the same
// binary. The grant spec, credential included, goes over the child's stdin pipe —
// never argv or the environment, which other local users can read through /proc.
// The child reports spec.Status lines on its stdout; it is sent SIGTERM at Stop and
// dies with its parent (PR_SET_PDEATHSIG), so a crashed broker leaves no proxy
// holding a credential.
//
// With Config.Spare the launcher keeps one proxy process started ahead of
// need, blocked on its stdin with no spec and so no secret: a launch hands it
// the spec and starts the next spare in the background, taking the process
// start (exec, runtime and package initialisation) off the grant's path.
package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/jitgate/jitgate/broker/launch"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Config configures the local launcher.
type Config struct {
	// Executable is the jitgate binary; default os.Executable().
	Executable string
	// Args start the hidden proxy entry point; default ["__proxy"].
	Args []string
	// Grace is how long a proxy gets after SIGTERM before SIGKILL; default 3s.
	Grace  time.Duration
	Logger *slog.Logger
	// Stderr receives the proxies' logs; default os.Stderr.
	Stderr io.Writer
	// Spare keeps one proxy process started ahead, waiting for its spec.
	Spare bool
}

// Launcher starts child processes.
type Launcher struct {
	cfg Config

	mu     sync.Mutex
	spare  *child // started, waiting for a spec; nil when none
	closed bool
}

// child is a started proxy process whose spec has not been sent yet.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
}

// New checks cfg and fills defaults.
func New(cfg Config) (*Launcher, error) {
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launch/local: find own executable: %w", err)
		}
		cfg.Executable = exe
	}
	if len(cfg.Args) == 0 {
		cfg.Args = []string{"__proxy"}
	}
	if cfg.Grace == 0 {
		cfg.Grace = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	return &Launcher{cfg: cfg}, nil
}

// Launch starts the proxy (or takes the spare) and sends it g over its stdin.
func (l *Launcher) Launch(ctx context.Context, g *spec.Grant) (launch.Handle, error) {
	payload, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("launch/local: encode spec: %w", err)
	}
	c := l.takeSpare()
	if c != nil {
		if h, err := l.send(c, g, payload); err == nil {
			return h, nil
		}
		// The spare died while it waited (killed, or its pipe broke): a fresh one.
		l.cfg.Logger.Warn("spare proxy unusable; starting a new one", "pid", c.cmd.Process.Pid)
	}
	if c, err = l.start(); err != nil {
		return nil, err
	}
	return l.send(c, g, payload)
}

// start starts a proxy process that waits for its spec on stdin.
func (l *Launcher) start() (*child, error) {
	cmd := exec.Command(l.cfg.Executable, l.cfg.Args...)
	cmd.Env = minimalEnv()
	cmd.Stderr = l.cfg.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch/local: start proxy: %w", err)
	}
	return &child{cmd: cmd, stdin: stdin, stdout: stdout}, nil
}

// send hands c its spec and watches its status lines.
func (l *Launcher) send(c *child, g *spec.Grant, payload []byte) (launch.Handle, error) {
	if _, err := c.stdin.Write(payload); err != nil {
		_ = c.cmd.Process.Kill()
		go func() { _ = c.cmd.Wait() }()
		return nil, fmt.Errorf("launch/local: send spec: %w", err)
	}
	c.stdin.Close()
	h := &handle{cmd: c.cmd, grace: l.cfg.Grace, first: make(chan spec.Status, 1), done: make(chan struct{})}
	go h.read(c.stdout)
	l.cfg.Logger.Info("proxy started", "grant", g.ID, "pid", c.cmd.Process.Pid)
	return h, nil
}

// takeSpare returns the spare, if any, and starts the next one in the
// background (when Spare is on).
func (l *Launcher) takeSpare() *child {
	if !l.cfg.Spare {
		return nil
	}
	l.mu.Lock()
	c := l.spare
	l.spare = nil
	l.mu.Unlock()
	go l.refill()
	return c
}

// refill starts a spare if there is none.
func (l *Launcher) refill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.spare != nil {
		return
	}
	c, err := l.start()
	if err != nil {
		l.cfg.Logger.Warn("start spare proxy", "err", err)
		return
	}
	l.spare = c
}

// Warm starts the spare now rather than at the first launch (Spare on).
func (l *Launcher) Warm() {
	if l.cfg.Spare {
		l.refill()
	}
}

// Close releases the spare: its stdin closes with no spec, and it exits
// having held nothing. Launched proxies are not touched (the broker stops
// its sessions).
func (l *Launcher) Close() error {
	l.mu.Lock()
	c := l.spare
	l.spare, l.closed = nil, true
	l.mu.Unlock()
	if c == nil {
		return nil
	}
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { _, _ = io.Copy(io.Discard, c.stdout); done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(l.cfg.Grace):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return nil
}

// minimalEnv passes only what a child needs to find its tools; never secrets.
func minimalEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

type handle struct {
	cmd   *exec.Cmd
	grace time.Duration
	first chan spec.Status
	done  chan struct{}

	mu      sync.Mutex
	last    spec.Status
	waitErr error
	stopped bool
}

func (h *handle) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	sent := false
	for sc.Scan() {
		var st spec.Status
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			continue
		}
		h.mu.Lock()
		if st.Type == spec.StatusExit && h.last.Type == spec.StatusError {
			// An error the proxy reported before exiting (its target went
			// away, its recording failed) stays the outcome; the exit adds
			// where the recording is.
			e := h.last
			e.Recording = st.Recording
			st = e
		}
		h.last = st
		h.mu.Unlock()
		if !sent && st.Type != spec.StatusExit {
			h.first <- st
			sent = true
		}
	}
	err := h.cmd.Wait()
	h.mu.Lock()
	h.waitErr = err
	if h.last.Type != spec.StatusExit && h.last.Type != spec.StatusError {
		msg := "proxy exited without reporting"
		if err != nil {
			msg = fmt.Sprintf("proxy exited without reporting: %v", err)
		}
		h.last = spec.Status{Type: spec.StatusError, Code: spec.CodeInternal, Error: msg, Time: time.Now().UTC()}
	}
	last := h.last
	h.mu.Unlock()
	if !sent {
		h.first <- last
	}
	close(h.done)
}

func (h *handle) Ready(ctx context.Context) (spec.Status, error) {
	select {
	case st := <-h.first:
		// Keep it readable for a second Ready call.
		h.first <- st
		if st.Type == spec.StatusError {
			return st, fmt.Errorf("launch/local: proxy: %s: %s", st.Code, st.Error)
		}
		return st, nil
	case <-ctx.Done():
		return spec.Status{}, ctx.Err()
	}
}

func (h *handle) Wait(ctx context.Context) (spec.Status, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return spec.Status{}, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last.Type == spec.StatusError {
		return h.last, fmt.Errorf("launch/local: proxy: %s: %s", h.last.Code, h.last.Error)
	}
	return h.last, nil
}

func (h *handle) Stop() error {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	select {
	case <-h.done:
		return nil
	default:
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-h.done:
		return nil
	case <-time.After(h.grace):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.done
		return fmt.Errorf("launch/local: proxy %d did not stop within %s; killed", h.cmd.Process.Pid, h.grace)
	}
}
