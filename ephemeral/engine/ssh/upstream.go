package ssh

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"
)

// upstream is the target side of one agent session channel: an x/crypto
// Session (exec, shell) or a rawSession (subsystems).
type upstream interface {
	StdinPipe() (io.WriteCloser, error)
	StdoutPipe() (io.Reader, error)
	StderrPipe() (io.Reader, error)
	Wait() error
	Close() error
	WindowChange(h, w int) error
	Signal(sig ssh.Signal) error
}

// rawSession runs a subsystem on a session channel of its own. x/crypto's
// Session starts its exit-status bookkeeping only for exec and shell, so
// after RequestSubsystem its Wait fails ("session not started") and every
// sftp session would end with status 255; here the channel's requests are
// read directly.
type rawSession struct {
	ch   ssh.Channel
	name string
	done chan struct{}
	mu   sync.Mutex
	exit *rawExit // nil: the channel closed without an exit status
}

// rawExit is a non-zero exit status or a signal.
type rawExit struct {
	status int
	signal string
}

func (e *rawExit) Error() string {
	if e.signal != "" {
		return "ssh: subsystem ended by signal " + e.signal
	}
	return fmt.Sprintf("ssh: subsystem exited with status %d", e.status)
}

func openSubsystem(c *ssh.Client, name string) (*rawSession, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	r := &rawSession{ch: ch, name: name, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		got := false
		for req := range reqs {
			switch req.Type {
			case "exit-status":
				var m struct{ Status uint32 }
				if ssh.Unmarshal(req.Payload, &m) == nil {
					r.set(&rawExit{status: int(m.Status)}, &got)
				}
			case "exit-signal":
				var m struct {
					Signal     string
					CoreDumped bool
					Error      string
					Lang       string
				}
				if ssh.Unmarshal(req.Payload, &m) == nil {
					r.set(&rawExit{status: 128, signal: m.Signal}, &got)
				}
			}
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
		if !got {
			r.set(&rawExit{status: 255}, &got)
		}
	}()
	return r, nil
}

func (r *rawSession) set(e *rawExit, got *bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *got {
		return
	}
	*got = true
	if e.status != 0 || e.signal != "" {
		r.exit = e
	}
}

// request asks the target to start the subsystem.
func (r *rawSession) request() error {
	ok, err := r.ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{r.name}))
	if err == nil && !ok {
		err = errors.New("ssh: subsystem request failed")
	}
	return err
}

func (r *rawSession) StdinPipe() (io.WriteCloser, error) { return rawStdin{r.ch}, nil }
func (r *rawSession) StdoutPipe() (io.Reader, error)     { return r.ch, nil }
func (r *rawSession) StderrPipe() (io.Reader, error)     { return r.ch.Stderr(), nil }
func (r *rawSession) Close() error                       { return r.ch.Close() }

// Wait returns when the target closed the channel: nil on exit status 0,
// a *rawExit otherwise.
func (r *rawSession) Wait() error {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exit != nil {
		return r.exit
	}
	return nil
}

func (r *rawSession) WindowChange(h, w int) error {
	return errors.New("ssh: no terminal on a subsystem")
}

func (r *rawSession) Signal(sig ssh.Signal) error {
	_, err := r.ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{string(sig)}))
	return err
}

// rawStdin sends EOF, not a channel close, when the agent's input ends.
type rawStdin struct{ ch ssh.Channel }

func (s rawStdin) Write(p []byte) (int, error) { return s.ch.Write(p) }
func (s rawStdin) Close() error                { return s.ch.CloseWrite() }
