package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	crpf "k8s.io/cri-streaming/pkg/streaming/portforward"
	crirc "k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// attach connects the client's streams to the pod's running container.
func (s *Server) attach(w http.ResponseWriter, r *http.Request, pod Pod) {
	q := r.URL.Query()
	container := q.Get("container")
	if container == "" {
		container = pod.Containers[0]
	}
	found := false
	for _, c := range pod.Containers {
		found = found || c == container
	}
	if !found {
		status(w, http.StatusBadRequest, "BadRequest", "container "+container+" is not valid for pod "+pod.Name)
		return
	}
	run := pod.Run
	if len(run) == 0 {
		run = []string{"cat"}
	}
	b := func(n string) bool { v := q.Get(n); return v == "true" || v == "1" }
	opts := &crirc.Options{Stdin: b("stdin"), Stdout: b("stdout"), Stderr: b("stderr") && !b("tty"), TTY: b("tty")}
	ex := hostExecutor{dir: s.dir, running: &s.running}
	if wsstream.IsWebSocketRequest(r) {
		serveWebSocket(w, r, ex, run, opts)
		return
	}
	crirc.ServeAttach(w, r, hostAttacher{ex: ex, run: run}, pod.Name, "", container, opts, 0, 30*time.Second,
		[]string{crirc.StreamProtocolV4Name, crirc.StreamProtocolV3Name, crirc.StreamProtocolV2Name, crirc.StreamProtocolV1Name})
}

// hostAttacher runs the pod's container process for one attach.
type hostAttacher struct {
	ex  hostExecutor
	run []string
}

func (h hostAttacher) AttachContainer(ctx context.Context, name, uid, container string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan crirc.TerminalSize) error {
	return h.ex.ExecInContainer(ctx, name, uid, container, h.run, in, out, errw, tty, resize, 0)
}

// portForward serves the pod's ports over SPDY (or the older WebSocket
// protocol).
func (s *Server) portForward(w http.ResponseWriter, r *http.Request, pod Pod) {
	var opts *crpf.V4Options
	if wsstream.IsWebSocketRequest(r) {
		o, err := crpf.NewV4Options(r)
		if err != nil {
			status(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		opts = o
	}
	crpf.ServePortForward(w, r, podForwarder{pod: pod, s: s}, pod.Name, "", opts, 0, 30*time.Second,
		[]string{"portforward.k8s.io"})
}

// podForwarder connects a stream to the test's listener for its port.
type podForwarder struct {
	pod Pod
	s   *Server
}

func (f podForwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	f.s.mu.Lock()
	f.s.forwards = append(f.s.forwards, int(port))
	f.s.mu.Unlock()
	addr, ok := f.pod.Ports[int(port)]
	if !ok {
		return fmt.Errorf("pod %s has nothing listening on port %d", f.pod.Name, port)
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// The copy to the listener ends when the stream is reset after return.
	go func() {
		_, _ = io.Copy(c, stream)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, err = io.Copy(stream, c)
	_ = stream.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Forwards returns the pod ports port-forward streams asked for so far.
func (s *Server) Forwards() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.forwards...)
}
