package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	crirc "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// quoteArgv renders argv as one shell line the shell guard parses back
// into the same words (so sh -c strings are recursed into).
func quoteArgv(argv []string) (string, error) {
	parts := make([]string, len(argv))
	for i, a := range argv {
		q, err := syntax.Quote(a, syntax.LangBash)
		if err != nil {
			return "", err
		}
		parts[i] = q
	}
	return strings.Join(parts, " "), nil
}

// serveExec terminates the agent's exec stream (WebSocket v5/v4 or SPDY),
// opens the proxy's own SPDY stream upstream and relays between them:
// stdin up, stdout and stderr down through the masker, resize events up, the
// exit status down. The stream is recorded as an asciicast.
func (e *Engine) serveExec(ctx context.Context, w http.ResponseWriter, r *http.Request, conn int, rt Route) {
	sid := int(e.streams.Add(1))
	name := fmt.Sprintf("%s.conn%d.%s%d.cast", e.g.ID, conn, sub(rt.Kind), sid)
	line, _ := quoteArgv(rt.Command)
	if rt.Kind == KindAttach {
		line = "attach " + rt.Container // the container's own process: input recorded, not filtered
	}
	line = string(e.maskAll([]byte(line)))
	cast, err := asciicast.Create(filepath.Join(e.cfg.CastDir, name),
		asciicast.Header{Width: 80, Height: 24, Command: line, Title: "jitgate " + e.g.ID + " " + rt.Namespace + "/" + rt.Pod}, e.cfg.Now)
	if err != nil {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "asciicast", Error: err.Error()})
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "jitgate: the exec stream cannot be recorded")
		return
	}
	_ = e.rec(record.Event{Type: record.Notice, Conn: conn, Tag: sub(rt.Kind), Statement: line, Error: "recorded as " + name})
	x := &execution{e: e, ctx: ctx, conn: conn, rt: rt, line: line, cast: cast}
	if wsstream.IsWebSocketRequest(r) {
		x.serveWebSocket(w, r)
	} else {
		_ = e.rec(record.Event{Type: record.Notice, Conn: conn, Tag: "transport", Statement: "spdy"})
		opts := &crirc.Options{Stdin: rt.Stdin, Stdout: rt.Stdout, Stderr: rt.Stderr && !rt.TTY, TTY: rt.TTY}
		protos := []string{crirc.StreamProtocolV4Name, crirc.StreamProtocolV3Name, crirc.StreamProtocolV2Name}
		if rt.Kind == KindAttach {
			crirc.ServeAttach(w, r, x, rt.Pod, "", rt.Container, opts, 0, 30*time.Second, protos)
		} else {
			crirc.ServeExec(w, r, x, rt.Pod, "", rt.Container, rt.Command, opts, 0, 30*time.Second, protos)
		}
	}
	x.closeCast()
}

// closeCast closes the stream's asciicast once: before the exit status goes
// to the agent, so a finished exec is a finished recording.
func (x *execution) closeCast() {
	x.once.Do(func() {
		if err := x.cast.Close(); err != nil {
			_ = x.e.rec(record.Event{Type: record.Error, Conn: x.conn, Tag: "asciicast", Error: err.Error()})
		}
	})
}

// execution is one exec stream.
type execution struct {
	e    *Engine
	ctx  context.Context
	conn int
	rt   Route
	line string
	cast *asciicast.Writer
	once sync.Once
}

// ExecInContainer is the cri-streaming Executor the SPDY side calls with the
// agent's streams.
func (x *execution) ExecInContainer(_ context.Context, _, _, _ string, _ []string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan crirc.TerminalSize, _ time.Duration) error {
	return x.run(in, out, errw, tty, resize)
}

// AttachContainer is the cri-streaming Attacher the SPDY side calls with
// the agent's streams of an attach.
func (x *execution) AttachContainer(_ context.Context, _, _, _ string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan crirc.TerminalSize) error {
	return x.run(in, out, errw, tty, resize)
}

// run relays one exec between the agent's streams and the upstream. It
// returns nil, a utilexec.CodeExitError with the command's exit status, or
// another error.
func (x *execution) run(in io.Reader, out, errw io.Writer, tty bool, resize <-chan crirc.TerminalSize) error {
	e := x.e
	ctx, cancel := context.WithCancel(x.ctx)
	defer cancel()
	defer x.closeCast()
	u, err := url.Parse(e.base + x.rt.Upstream)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewSPDYExecutor(e.rest, http.MethodPost, u)
	if err != nil {
		return fmt.Errorf("kube: upstream %s: %w", sub(x.rt.Kind), err)
	}
	opts := remotecommand.StreamOptions{Tty: tty}
	if in != nil && x.rt.Stdin {
		opts.Stdin = io.TeeReader(in, castInput{x.cast})
	}
	var sinks []*mask.Stream
	var dones []func()
	if out != nil {
		emit, done := x.emit("stdout", out)
		s := mask.NewStream(e.cfg.Masker, e.cfg.FlushDelay, emit)
		sinks, dones = append(sinks, s), append(dones, done)
		opts.Stdout = s
	}
	if errw != nil && !tty {
		emit, done := x.emit("stderr", errw)
		s := mask.NewStream(e.cfg.Masker, e.cfg.FlushDelay, emit)
		sinks, dones = append(sinks, s), append(dones, done)
		opts.Stderr = s
	}
	if tty && resize != nil {
		opts.TerminalSizeQueue = &sizeQueue{ctx: ctx, c: resize, cast: x.cast}
	}
	serr := ex.StreamWithContext(ctx, opts)
	for i, s := range sinks {
		if cerr := s.Close(); cerr != nil && serr == nil {
			serr = cerr
		}
		dones[i]()
	}
	status, tag := 0, "exit 0"
	var ee utilexec.ExitError
	switch {
	case serr == nil:
	case errors.As(serr, &ee) && ee.Exited():
		status = ee.ExitStatus()
		tag = "exit " + strconv.Itoa(status)
	default:
		_ = e.rec(record.Event{Type: record.Error, Conn: x.conn, Tag: sub(x.rt.Kind), Statement: x.line, Error: serr.Error()})
		_ = x.cast.Mark("error")
		return fmt.Errorf("kube: upstream %s: %w", sub(x.rt.Kind), serr)
	}
	_ = x.cast.Mark(tag)
	_ = e.rec(record.Event{Type: record.Result, Conn: x.conn, Tag: tag, Statement: x.line})
	if status != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", status), Code: status}
	}
	return nil
}

// emit sends masked output to the agent and the asciicast, which keeps the
// first Config.MaxRecordedOutput bytes of each stream.
func (x *execution) emit(name string, w io.Writer) (func([]byte) error, func()) {
	limit := int64(x.e.cfg.MaxRecordedOutput)
	var total, recorded int64
	emit := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		total += int64(len(b))
		if limit >= 0 && recorded >= limit {
			return nil
		}
		if limit >= 0 && recorded+int64(len(b)) > limit {
			b = b[:limit-recorded]
		}
		recorded += int64(len(b))
		return x.cast.Output(b)
	}
	done := func() {
		if total > recorded {
			msg := fmt.Sprintf("%d bytes of %s sent, the first %d recorded", total, name, recorded)
			_ = x.cast.Mark(msg)
			_ = x.e.rec(record.Event{Type: record.Notice, Conn: x.conn, Tag: name, Error: msg})
		}
	}
	return emit, done
}

type castInput struct{ w *asciicast.Writer }

func (c castInput) Write(p []byte) (int, error) {
	if err := c.w.Input(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sizeQueue hands the agent's resize events to the upstream executor.
type sizeQueue struct {
	ctx  context.Context
	c    <-chan crirc.TerminalSize
	cast *asciicast.Writer
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case s, ok := <-q.c:
		if !ok {
			return nil
		}
		_ = q.cast.Resize(int(s.Width), int(s.Height))
		return &remotecommand.TerminalSize{Width: s.Width, Height: s.Height}
	case <-q.ctx.Done():
		return nil
	}
}

// WebSocket channel numbers of the channel.k8s.io protocols.
const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// serveWebSocket is the agent side over WebSocket: v5.channel.k8s.io (stdin
// close signal) or v4.channel.k8s.io, binary frames, status as a v1 Status.
func (x *execution) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	rt := x.rt
	ch := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	chans := []wsstream.ChannelType{
		ch(rt.Stdin, wsstream.ReadChannel), ch(rt.Stdout, wsstream.WriteChannel),
		ch(rt.Stderr && !rt.TTY, wsstream.WriteChannel), wsstream.WriteChannel, ch(rt.TTY, wsstream.ReadChannel),
	}
	wc := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"v5.channel.k8s.io": {Binary: true, Channels: chans},
		"v4.channel.k8s.io": {Binary: true, Channels: chans},
	})
	proto, streams, err := wc.Open(w, r)
	if err != nil {
		_ = x.e.rec(record.Event{Type: record.Error, Conn: x.conn, Tag: "websocket", Error: err.Error()})
		return
	}
	_ = x.e.rec(record.Event{Type: record.Notice, Conn: x.conn, Tag: "transport", Statement: "websocket " + proto})
	defer wc.Close()
	var resize chan crirc.TerminalSize
	if rt.TTY {
		resize = make(chan crirc.TerminalSize)
		go func() {
			defer close(resize)
			dec := json.NewDecoder(streams[chResize])
			for {
				var s crirc.TerminalSize
				if dec.Decode(&s) != nil {
					return
				}
				select {
				case resize <- s:
				case <-x.ctx.Done():
					return
				}
			}
		}()
	}
	var in io.Reader
	if rt.Stdin {
		in = streams[chStdin]
	}
	var out, errw io.Writer
	if rt.Stdout {
		out = streams[chStdout]
	}
	if rt.Stderr && !rt.TTY {
		errw = streams[chStderr]
	}
	err = x.run(in, out, errw, rt.TTY, resize)
	_ = writeExecStatus(streams[chError], err)
}

// writeExecStatus writes the v4+ error-channel Status for err.
func writeExecStatus(w io.Writer, err error) error {
	st := metav1.Status{Status: metav1.StatusSuccess}
	var ee utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		st = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(ee.ExitStatus())}}}}
	default:
		st = metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Message: err.Error()}
	}
	b, merr := json.Marshal(st)
	if merr != nil {
		return merr
	}
	_, werr := w.Write(b)
	return werr
}

// ExecOp is an exec grant's operation.
type ExecOp struct {
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command"`
}

// Exec runs an exec grant's one operation (JSON ExecOp) through the same
// classification, guard, mask and record path as Serve: Result.Output is the
// masked stdout, Result.Notices[0] the masked stderr, Result.Tag "exit N". A
// refusal wraps ErrBlocked and never reaches the API server.
func (e *Engine) Exec(ctx context.Context, op string) (*spec.Result, error) {
	var o ExecOp
	dec := json.NewDecoder(strings.NewReader(op))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return nil, fmt.Errorf("kube: %w: the operation is not an exec JSON object: %v", ErrBlocked, err)
	}
	q := url.Values{"command": o.Command, "stdout": {"true"}, "stderr": {"true"}}
	if o.Container != "" {
		q.Set("container", o.Container)
	}
	uri := "/api/v1/namespaces/" + o.Namespace + "/pods/" + o.Pod + "/exec?" + q.Encode()
	if o.Namespace == "" || o.Pod == "" || strings.ContainsAny(o.Namespace+o.Pod, "/?#%") {
		uri = "/invalid"
	}
	rt, reason := Classify(&e.g.Guard, http.MethodPost, uri, http.Header{})
	if reason == "" && rt.Kind != KindExec {
		reason = "the operation is not an exec"
	}
	if reason == "" {
		reason = e.checkCommand(rt)
	}
	line, _ := quoteArgv(o.Command)
	line = string(e.maskAll([]byte(line)))
	stmt := o.Namespace + "/" + o.Pod + ": " + line
	allowed := reason == ""
	e.countVerdict(allowed)
	if err := e.rec(record.Event{Type: record.Query, Tag: "kube exec", Statement: stmt}); err != nil {
		return nil, fmt.Errorf("kube: record: %w", err)
	}
	if err := e.rec(record.Event{Type: record.Verdict, Tag: "kube exec", Statement: stmt, Allowed: &allowed, Reason: reason}); err != nil {
		return nil, fmt.Errorf("kube: record: %w", err)
	}
	if !allowed {
		return nil, fmt.Errorf("kube: %w: %s", ErrBlocked, reason)
	}
	u, err := url.Parse(e.base + rt.Upstream)
	if err != nil {
		return nil, err
	}
	ex, err := remotecommand.NewSPDYExecutor(e.rest, http.MethodPost, u)
	if err != nil {
		return nil, fmt.Errorf("kube: upstream exec: %w", err)
	}
	stdout := &capped{max: e.cfg.MaxExecOutput}
	stderr := &capped{max: e.cfg.MaxExecOutput}
	serr := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	if ctx.Err() != nil {
		_ = e.rec(record.Event{Type: record.Error, Tag: "exec", Statement: stmt, Error: ctx.Err().Error()})
		return nil, fmt.Errorf("kube: exec: %w", ctx.Err())
	}
	res := &spec.Result{Truncated: stdout.cut || stderr.cut, Tag: "exit 0"}
	var ee utilexec.ExitError
	switch {
	case serr == nil:
	case errors.As(serr, &ee) && ee.Exited():
		res.Tag = "exit " + strconv.Itoa(ee.ExitStatus())
	default:
		_ = e.rec(record.Event{Type: record.Error, Tag: "exec", Statement: stmt, Error: serr.Error()})
		return nil, fmt.Errorf("kube: exec: %w", serr)
	}
	res.Output = string(e.maskAll(stdout.b.Bytes()))
	if stderr.b.Len() > 0 {
		res.Notices = []string{string(e.maskAll(stderr.b.Bytes()))}
	}
	for _, s := range []struct{ name, v string }{{"stdout", res.Output}, {"stderr", strings.Join(res.Notices, "")}} {
		if s.v == "" {
			continue
		}
		v := s.v
		if err := e.rec(record.Event{Type: record.Rows, Tag: s.name, Columns: []string{s.name}, Rows: [][]*string{{&v}}}); err != nil {
			return nil, fmt.Errorf("kube: record: %w", err)
		}
	}
	if err := e.rec(record.Event{Type: record.Result, Statement: stmt, Tag: res.Tag}); err != nil {
		return nil, fmt.Errorf("kube: record: %w", err)
	}
	return res, nil
}

func (e *Engine) maskAll(b []byte) []byte {
	if e.cfg.Masker == nil {
		return b
	}
	return e.cfg.Masker.Text(b)
}

// capped keeps the first max bytes written to it.
type capped struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room < len(p) {
		c.cut = true
		if room > 0 {
			c.b.Write(p[:room])
		}
		return len(p), nil
	}
	return c.b.Write(p)
}
