package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Exec runs one command (an exec-mode grant's operation) through the same
// guard, mask and record path as Serve: the masked standard output is
// Result.Output, the masked standard error (if any) Result.Notices[0], and the
// exit status Result.Tag ("exit 0", or "signal KILL"). Output beyond
// MaxExecOutput per stream is dropped and Truncated set. A refused command
// returns an error wrapping ErrBlocked (session.ErrBlocked) and never reaches
// the target. The command gets no standard input.
func (e *Engine) Exec(ctx context.Context, command string) (*spec.Result, error) {
	c := &conn{e: e, id: int(e.conns.Add(1)), cancel: func() {}}
	v := e.cfg.Guard.Check(command)
	if err := c.verdict("exec", command, v.Allowed, v.Reason); err != nil {
		return nil, fmt.Errorf("ssh: record: %w", err)
	}
	if !v.Allowed {
		return nil, fmt.Errorf("ssh: %w: %s", ErrBlocked, v.Reason)
	}
	up, err := e.dial(ctx)
	if err != nil {
		_ = c.rec(record.Event{Type: record.Error, Tag: "upstream", Error: err.Error()})
		return nil, err
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()
	us, err := up.NewSession()
	if err != nil {
		return nil, fmt.Errorf("ssh: upstream session: %w", err)
	}
	defer us.Close()
	stdout := &capped{max: e.cfg.MaxExecOutput}
	stderr := &capped{max: e.cfg.MaxExecOutput}
	us.Stdout, us.Stderr = stdout, stderr
	werr := us.Run(command)
	if ctx.Err() != nil {
		_ = c.rec(record.Event{Type: record.Error, Tag: "exec", Statement: command, Error: ctx.Err().Error()})
		return nil, fmt.Errorf("ssh: exec: %w", ctx.Err())
	}
	res := &spec.Result{Truncated: stdout.cut || stderr.cut}
	var ee *ssh.ExitError
	switch {
	case werr == nil:
		res.Tag = "exit 0"
	case errors.As(werr, &ee) && ee.Signal() != "":
		res.Tag = "signal " + ee.Signal()
	case errors.As(werr, &ee):
		res.Tag = "exit " + strconv.Itoa(ee.ExitStatus())
	default:
		_ = c.rec(record.Event{Type: record.Error, Tag: "exec", Statement: command, Error: werr.Error()})
		return nil, fmt.Errorf("ssh: exec: %w", werr)
	}
	out := e.maskAll(stdout.b.Bytes())
	res.Output = string(out)
	if stderr.b.Len() > 0 {
		res.Notices = []string{string(e.maskAll(stderr.b.Bytes()))}
	}
	for _, s := range []struct {
		name string
		v    []byte
	}{{"stdout", out}, {"stderr", []byte(firstOr(res.Notices))}} {
		if len(s.v) == 0 {
			continue
		}
		v := string(s.v)
		if err := c.rec(record.Event{Type: record.Rows, Tag: s.name, Columns: []string{s.name}, Rows: [][]*string{{&v}}}); err != nil {
			return nil, fmt.Errorf("ssh: record: %w", err)
		}
	}
	if err := c.rec(record.Event{Type: record.Result, Statement: command, Tag: res.Tag}); err != nil {
		return nil, fmt.Errorf("ssh: record: %w", err)
	}
	return res, nil
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func (e *Engine) maskAll(b []byte) []byte {
	if e.cfg.Masker == nil {
		return b
	}
	return e.cfg.Masker.Text(b)
}

// capped keeps the first max bytes written to it.
type capped struct {
	b   bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room < len(p) {
		c.cut = true
		if room > 0 {
			c.b.Write(p[:room])
		}
		return len(p), nil
	}
	return c.b.Write(p)
}
