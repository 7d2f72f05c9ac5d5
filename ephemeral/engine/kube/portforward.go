package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	crpf "k8s.io/cri-streaming/pkg/streaming/portforward"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
)

// tunnelProtocol is the WebSocket subprotocol kubectl (1.31+) asks for when
// it tunnels SPDY port-forward streams through a WebSocket.
const tunnelProtocol = "SPDY/3.1+" + portforward.PortForwardProtocolV1Name

// servePortForward relays one port-forward connection. The agent speaks
// SPDY (portforward.k8s.io), SPDY tunnelled through a WebSocket (kubectl's
// default) or the older WebSocket protocol (port= query); upstream the proxy
// opens its own SPDY connection and, per agent stream, a stream pair for the
// same port. Every stream's port is checked against Kube.Ports (and against
// the port= values when the agent named any) before anything goes upstream.
// Payloads are not masked; they are recorded, capped, as an asciicast per
// stream (input: agent → pod, output: pod → agent).
func (e *Engine) servePortForward(ctx context.Context, w http.ResponseWriter, r *http.Request, conn int, rt Route) {
	ws := wsstream.IsWebSocketRequest(r)
	tunnel := ws && slices.Contains(gwebsocket.Subprotocols(r), tunnelProtocol)
	if ws && !tunnel && len(rt.Ports) == 0 {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "port-forward", Error: "websocket port-forward without port="})
		writeStatus(w, http.StatusBadRequest, "BadRequest", "jitgate: a WebSocket port-forward must name its ports (port=)")
		return
	}
	u, err := url.Parse(e.base + rt.Upstream)
	if err != nil {
		writeStatus(w, http.StatusBadGateway, "InternalError", "jitgate: "+err.Error())
		return
	}
	upRT, upgrader, err := spdy.RoundTripperFor(e.rest)
	if err != nil {
		writeStatus(w, http.StatusBadGateway, "InternalError", "jitgate: upstream: "+err.Error())
		return
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: upRT}, http.MethodPost, u)
	upConn, proto, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "upstream", Statement: rt.Upstream, Error: err.Error()})
		writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", "jitgate: upstream port-forward: "+err.Error())
		return
	}
	defer upConn.Close()
	if proto != portforward.PortForwardProtocolV1Name {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "upstream", Statement: rt.Upstream, Error: "protocol " + proto})
		writeStatus(w, http.StatusBadGateway, "InternalError", "jitgate: upstream negotiated protocol "+strconv.Quote(proto))
		return
	}
	grant := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { upConn.Close() })
	defer stop()
	f := &forwarder{e: e, ctx: ctx, grant: grant, conn: conn, rt: rt, up: upConn}
	// Streams still open when the agent's connection ends are closed and
	// recorded before this returns (and so before the recording closes).
	defer f.wait(cancel)
	protos := []string{portforward.PortForwardProtocolV1Name}
	var opts *crpf.V4Options
	if len(rt.Ports) > 0 {
		p32 := make([]int32, len(rt.Ports))
		for i, p := range rt.Ports {
			p32[i] = int32(p)
		}
		if opts, err = crpf.BuildV4Options(p32); err != nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "jitgate: "+err.Error())
			return
		}
	}
	switch {
	case tunnel:
		_ = e.rec(record.Event{Type: record.Notice, Conn: conn, Tag: "transport", Statement: "websocket " + tunnelProtocol})
		up := gwebsocket.Upgrader{Subprotocols: []string{tunnelProtocol}, CheckOrigin: func(*http.Request) bool { return true },
			ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10}
		wc, err := up.Upgrade(w, r, nil)
		if err != nil {
			_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "websocket", Error: err.Error()})
			return
		}
		tc := portforward.NewTunnelingConnection("jitgate", wc)
		defer tc.Close()
		stopTC := context.AfterFunc(ctx, func() { tc.Close() })
		defer stopTC()
		// The SPDY server runs inside the tunnel: a request that looks like
		// a SPDY upgrade and a writer whose hijack is the tunnel.
		inner := r.Clone(ctx)
		inner.Header = http.Header{}
		inner.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
		inner.Header.Set(httpstream.HeaderUpgrade, "SPDY/3.1")
		inner.Header.Set(httpstream.HeaderProtocolVersion, portforward.PortForwardProtocolV1Name)
		crpf.ServePortForward(&tunnelWriter{conn: tc, h: http.Header{}}, inner, f, rt.Pod, "", opts, 0, 30*time.Second, protos)
	case ws:
		_ = e.rec(record.Event{Type: record.Notice, Conn: conn, Tag: "transport", Statement: "websocket portforward"})
		crpf.ServePortForward(w, r, f, rt.Pod, "", opts, 0, 30*time.Second, protos)
	default:
		_ = e.rec(record.Event{Type: record.Notice, Conn: conn, Tag: "transport", Statement: "spdy"})
		crpf.ServePortForward(w, r, f, rt.Pod, "", opts, 0, 30*time.Second, protos)
	}
}

// tunnelWriter is the ResponseWriter the SPDY upgrade inside a WebSocket
// tunnel sees: the status line is not sent (the WebSocket handshake was the
// upgrade) and Hijack hands out the tunnel.
type tunnelWriter struct {
	conn net.Conn
	h    http.Header
}

func (t *tunnelWriter) Header() http.Header { return t.h }
func (t *tunnelWriter) WriteHeader(int)     {}
func (t *tunnelWriter) Write(b []byte) (int, error) {
	return 0, errors.New("kube: write to a tunnelled port-forward before the upgrade")
}
func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}

// forwarder is the cri-streaming PortForwarder of one agent connection: each
// call is one agent stream, relayed to an upstream stream pair.
type forwarder struct {
	e      *Engine
	ctx    context.Context // ends with the connection
	grant  context.Context // ends with the grant
	conn   int
	rt     Route
	up     httpstream.Connection
	nextID atomic.Int64

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// wait refuses new streams, ends the open ones and waits for them.
func (f *forwarder) wait(cancel context.CancelFunc) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	cancel()
	f.wg.Wait()
}

// PortForward checks the stream's port, opens the upstream pair and copies
// both ways until the pod's side ends (or the connection does).
func (f *forwarder) PortForward(_ context.Context, pod, _ string, port int32, agent io.ReadWriteCloser) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return errors.New("jitgate: the port-forward connection is closing")
	}
	f.wg.Add(1)
	f.mu.Unlock()
	defer f.wg.Done()
	e := f.e
	p := int(port)
	stmt := fmt.Sprintf("port-forward %s/%s:%d", f.rt.Namespace, pod, p)
	reason := ""
	switch {
	case !slices.Contains(e.g.Guard.Kube.Ports, p):
		reason = PortRefusal(e.g.Guard.Kube.Ports, p)
	case len(f.rt.Ports) > 0 && !slices.Contains(f.rt.Ports, p):
		reason = "port " + strconv.Itoa(p) + " was not asked for when the port-forward opened"
	}
	allowed := reason == ""
	e.countVerdict(allowed)
	if err := e.rec(record.Event{Type: record.Verdict, Conn: f.conn, Tag: "kube port-forward stream", Statement: stmt, Allowed: &allowed, Reason: reason}); err != nil && allowed {
		return errors.New("jitgate: the stream cannot be recorded")
	}
	if !allowed {
		f.settle(agent)
		return errors.New("jitgate: " + reason)
	}
	sid := int(e.streams.Add(1))
	name := fmt.Sprintf("%s.conn%d.portforward%d.port%d.cast", e.g.ID, f.conn, sid, p)
	cast, err := asciicast.Create(filepath.Join(e.cfg.CastDir, name),
		asciicast.Header{Width: 80, Height: 24, Command: stmt, Title: "jitgate " + e.g.ID + " " + stmt}, e.cfg.Now)
	if err != nil {
		_ = e.rec(record.Event{Type: record.Error, Conn: f.conn, Tag: "asciicast", Error: err.Error()})
		return errors.New("jitgate: the stream cannot be recorded")
	}
	_ = e.rec(record.Event{Type: record.Notice, Conn: f.conn, Tag: "port-forward", Statement: stmt, Error: "recorded as " + name})
	start := e.cfg.Now()

	id := strconv.FormatInt(f.nextID.Add(1), 10)
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(p))
	h.Set(corev1.PortForwardRequestIDHeader, id)
	var in, out int64
	var upErr string
	finish := func(why string) error {
		_ = cast.Mark("closed: " + why)
		if err := cast.Close(); err != nil {
			_ = e.rec(record.Event{Type: record.Error, Conn: f.conn, Tag: "asciicast", Error: err.Error()})
		}
		d := e.cfg.Now().Sub(start).Round(time.Millisecond)
		_ = e.rec(record.Event{Type: record.Result, Conn: f.conn, Tag: "port " + strconv.Itoa(p), Statement: stmt,
			Error: fmt.Sprintf("%d bytes to the pod, %d bytes from the pod, %s, closed: %s", atomic.LoadInt64(&in), atomic.LoadInt64(&out), d, why)})
		if upErr != "" {
			return errors.New("upstream: " + upErr)
		}
		return nil
	}
	errStream, err := f.up.CreateStream(h)
	if err != nil {
		upErr = err.Error()
		return finish("upstream stream: " + err.Error())
	}
	_ = errStream.Close() // the proxy sends nothing on it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := f.up.CreateStream(h)
	if err != nil {
		f.up.RemoveStreams(errStream)
		upErr = err.Error()
		return finish("upstream stream: " + err.Error())
	}
	defer f.up.RemoveStreams(errStream, data)

	limit := int64(e.cfg.MaxRecordedOutput)
	errDone := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(errStream, 4096))
		errDone <- strings.TrimSpace(string(b))
	}()
	podDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(&recWriter{w: agent, n: &out, limit: limit, rec: cast.Output, cast: cast, dir: "from the pod"}, data)
		podDone <- err
	}()
	agentDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(&recWriter{w: data, n: &in, limit: limit, rec: cast.Input, cast: cast, dir: "to the pod"}, agent)
		_ = data.Close() // half-close: the agent finished sending
		agentDone <- err
	}()
	why := ""
	select {
	case err := <-podDone:
		why = "the pod closed the stream"
		if err != nil {
			why = "pod side: " + err.Error()
		}
	case err := <-agentDone:
		if err != nil {
			why = "agent side: " + err.Error()
			break
		}
		// The agent finished sending: wait for the pod's answer.
		select {
		case err := <-podDone:
			why = "the pod closed the stream"
			if err != nil {
				why = "pod side: " + err.Error()
			}
		case <-f.ctx.Done():
		}
	case <-f.ctx.Done():
	}
	switch { // whichever side noticed first
	case f.grant.Err() != nil:
		why = "the grant ended"
	case f.ctx.Err() != nil:
		why = "the agent's port-forward connection closed"
	}
	_ = data.Reset()
	_ = agent.Close()
	select {
	case msg := <-errDone:
		upErr = msg
		if msg != "" {
			why += "; upstream error: " + msg
		}
	case <-time.After(time.Second):
	case <-f.ctx.Done():
	}
	return finish(why)
}

// settle waits, at most a few seconds, for the agent's first bytes on a
// refused stream (discarded, never forwarded): once they arrive the agent's
// data stream is set up, so the reason written on the error stream reaches it
// instead of a bare "Stream reset" that beats the stream's reply.
func (f *forwarder) settle(agent io.Reader) {
	got := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = agent.Read(b[:])
		close(got)
	}()
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case <-got:
	case <-t.C:
	case <-f.ctx.Done():
	}
}

// recWriter writes to w, counts the bytes and records the first limit of
// them (then one truncation marker).
type recWriter struct {
	w     io.Writer
	n     *int64
	limit int64
	rec   func([]byte) error
	cast  *asciicast.Writer
	dir   string
	kept  int64
	cut   bool
	mu    sync.Mutex
}

func (r *recWriter) Write(b []byte) (int, error) {
	n, err := r.w.Write(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	atomic.AddInt64(r.n, int64(n))
	keep := b[:n]
	if r.limit >= 0 && r.kept+int64(len(keep)) > r.limit {
		keep = keep[:r.limit-r.kept]
		if !r.cut {
			r.cut = true
			defer func() {
				_ = r.cast.Mark(fmt.Sprintf("recording of the bytes %s truncated after %d bytes", r.dir, r.limit))
			}()
		}
	}
	if len(keep) > 0 {
		r.kept += int64(len(keep))
		_ = r.rec(keep)
	}
	return n, err
}
