package stack

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ProcessConfig describes one long-lived process (`jitgate broker serve`,
// `jitgate dev`).
type ProcessConfig struct {
	// Bin is the program; Args its arguments (without Bin). Required.
	Bin  string
	Args []string
	// Env is the whole environment; nil inherits the test's.
	Env []string
	// Logs receives stdout and stderr; nil: a new Buffer (Process.Logs).
	// Share one Buffer between restarts of the same server.
	Logs *Buffer
	// StopGrace is how long Stop waits after SIGTERM before it SIGKILLs the
	// process group; default 15s.
	StopGrace time.Duration
	// Quiet leaves the output out of the test log when the test failed
	// (for a caller that logs it itself).
	Quiet bool
}

// Process is a running process in its own process group. It is stopped
// (Stop) when the test ends, and its output is logged if the test failed.
type Process struct {
	// Logs is everything the process wrote.
	Logs *Buffer

	cmd    *exec.Cmd
	grace  time.Duration
	exited chan struct{}
}

// StartProcess starts cfg's process and registers its Stop with t.Cleanup.
func StartProcess(t testing.TB, cfg ProcessConfig) *Process {
	t.Helper()
	if cfg.Logs == nil {
		cfg.Logs = &Buffer{}
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 15 * time.Second
	}
	cmd := exec.Command(cfg.Bin, cfg.Args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = cfg.Env, cfg.Logs, cfg.Logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Logs: cfg.Logs, cmd: cmd, grace: cfg.StopGrace, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() && !cfg.Quiet {
			name := cfg.Bin
			if len(cfg.Args) > 0 {
				name += " " + cfg.Args[0]
			}
			t.Logf("%s log:\n%s", name, p.Logs.String())
		}
	})
	return p
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM and waits; after StopGrace it SIGKILLs the process
// group. Stopping an exited process does nothing.
func (p *Process) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(p.grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// Kill sends the process SIGKILL (not its group) and waits for it to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Run runs a short command (a jitgate CLI call) to its end with stdin as
// its input and returns its stdout, stderr and exit code; err is set only
// when it could not run.
func Run(bin string, env []string, stdin string, args ...string) (stdout, stderr string, code int, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	return out.String(), errb.String(), 0, err
}

// Buffer is a goroutine-safe bytes.Buffer for process output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
