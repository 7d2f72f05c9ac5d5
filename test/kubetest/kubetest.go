// Package kubetest is a TEST DOUBLE standing in for a real kube-apiserver,
// which cannot run in this environment (no etcd, no kubelet, no container
// runtime). It is used by the tests of the Kubernetes engine
// (ephemeral/engine/kube) and the end-to-end tests; it is not a Kubernetes
// implementation and must never be used outside tests.
//
// What it serves, over HTTPS with its own self-signed certificate and a
// bearer token it checks on every request:
//
//   - discovery enough for kubectl: GET /version, /api, /api/v1, /apis;
//   - pods of a fixed fixture: GET /api/v1/namespaces/NS/pods[/NAME] and
//     /api/v1/pods (every namespace);
//   - pods/exec over WebSocket (v5.channel.k8s.io and v4.channel.k8s.io,
//     through apimachinery's wsstream) and SPDY (k8s.io/cri-streaming's
//     ServeExec, the kubelet's server side). The command runs FOR REAL on
//     the local host with os/exec, in the double's temporary directory
//     (Dir), so its output is real. No TTY is allocated;
//   - pods/attach over the same transports, to the pod's "running container":
//     Pod.Run (default cat), started on the host when an attach arrives and,
//     like a container with stdinOnce, ending when that attach's stdin
//     closes (a later attach starts it again);
//   - pods/portforward over SPDY (portforward.k8s.io, cri-streaming's
//     ServePortForward, which also takes the older WebSocket protocol): a
//     stream for pod port P is connected to the TCP address Pod.Ports[P],
//     a listener the test starts; other ports fail like a closed port.
//
// It records every request it saw (Requests), so a test can assert that a
// request the proxy refused never reached it.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	utilexec "k8s.io/client-go/util/exec"
	crirc "k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Pod is one fixture pod.
type Pod struct {
	Namespace  string
	Name       string
	Containers []string
	// Annotations are served in the pod's metadata (e.g. a secret a
	// masking test expects hidden).
	Annotations map[string]string
	// Run is the argv of the pod's running container, which attach
	// connects to. Default cat.
	Run []string
	// Ports maps a pod port to the host:port a port-forward stream for it
	// is connected to.
	Ports map[int]string
}

// DefaultPods is the fixture Start serves.
var DefaultPods = []Pod{
	{Namespace: "shop", Name: "web-1", Containers: []string{"app", "sidecar"}},
	{Namespace: "shop", Name: "web-2", Containers: []string{"app"}},
	{Namespace: "shop", Name: "db-1", Containers: []string{"postgres"}},
	{Namespace: "other", Name: "x-1", Containers: []string{"app"}},
}

// Request is one request the double saw (authenticated or not).
type Request struct {
	Method string
	Path   string
	Query  string
	// Upgrade is the Upgrade header (websocket, SPDY/3.1) of exec requests.
	Upgrade string
	// Authorized says the bearer token matched.
	Authorized bool
}

// Server is a running double.
type Server struct {
	srv   *httptest.Server
	token string
	dir   string
	pods  []Pod
	mu    sync.Mutex
	reqs  []Request
	// forwards are the pod ports of port-forward streams seen.
	forwards []int
	// running counts exec'd commands not finished yet.
	running atomic.Int64
}

// Start runs a double with DefaultPods until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartPods(t, DefaultPods)
}

// StartPods runs a double serving pods until the test ends.
func StartPods(t testing.TB, pods []Pod) *Server {
	t.Helper()
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	s := &Server{token: "kubetest-" + hex.EncodeToString(tok), dir: t.TempDir(), pods: pods}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// An exec's command is killed when its connection closes (a hijacked
	// request's context is not cancelled by the server).
	s.srv.Listener = &closeListener{Listener: s.srv.Listener}
	s.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := c.(*tls.Conn); ok {
			if nc, ok := tc.NetConn().(*closeConn); ok {
				ctx, cancel := context.WithCancel(ctx)
				go func() { <-nc.done; cancel() }()
				return ctx
			}
		}
		return ctx
	}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// Addr is host:port of the double.
func (s *Server) Addr() string { return s.srv.Listener.Addr().String() }

// CAPEM is the PEM of the certificate the double presents (self-signed, for
// 127.0.0.1 and example.com).
func (s *Server) CAPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw}))
}

// Token is the bearer token the double accepts.
func (s *Server) Token() string { return s.token }

// Dir is the working directory exec'd commands run in.
func (s *Server) Dir() string { return s.dir }

// Running is the number of exec'd commands still running: a command whose
// stream was closed (the proxy's deadline, the agent leaving) is killed.
func (s *Server) Running() int { return int(s.running.Load()) }

// Requests returns a copy of the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	ok := r.Header.Get("Authorization") == "Bearer "+s.token
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Upgrade: r.Header.Get("Upgrade"), Authorized: ok})
	s.mu.Unlock()
	if !ok {
		status(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	p := r.URL.Path
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if r.Method == http.MethodGet {
		switch p {
		case "/version":
			writeJSON(w, map[string]any{"major": "1", "minor": "37", "gitVersion": "v1.37.2-kubetest", "platform": "linux/amd64"})
			return
		case "/api":
			writeJSON(w, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
				"serverAddressByClientCIDRs": []map[string]string{{"clientCIDR": "0.0.0.0/0", "serverAddress": s.Addr()}}})
			return
		case "/apis":
			writeJSON(w, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": []any{}})
			return
		case "/api/v1":
			writeJSON(w, map[string]any{"kind": "APIResourceList", "groupVersion": "v1", "resources": []map[string]any{
				{"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": []string{"po"},
					"verbs": []string{"get", "list"}},
				{"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": []string{"create", "get"}},
				{"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret", "verbs": []string{"get", "list"}},
			}})
			return
		case "/api/v1/pods":
			s.list(w, "")
			return
		}
	}
	if len(segs) >= 5 && segs[0] == "api" && segs[1] == "v1" && segs[2] == "namespaces" && segs[4] == "pods" {
		ns := segs[3]
		switch {
		case len(segs) == 5 && r.Method == http.MethodGet:
			s.list(w, ns)
			return
		case len(segs) == 6 && r.Method == http.MethodGet:
			if pod, ok := s.pod(ns, segs[5]); ok {
				writeJSON(w, podObject(pod))
			} else {
				status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found", segs[5]))
			}
			return
		case len(segs) == 7 && segs[6] == "exec" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
			pod, ok := s.pod(ns, segs[5])
			if !ok {
				status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found", segs[5]))
				return
			}
			s.exec(w, r, pod)
			return
		case len(segs) == 7 && segs[6] == "attach" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
			pod, ok := s.pod(ns, segs[5])
			if !ok {
				status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found", segs[5]))
				return
			}
			s.attach(w, r, pod)
			return
		case len(segs) == 7 && segs[6] == "portforward" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
			pod, ok := s.pod(ns, segs[5])
			if !ok {
				status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found", segs[5]))
				return
			}
			s.portForward(w, r, pod)
			return
		}
	}
	status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
}

func (s *Server) pod(ns, name string) (Pod, bool) {
	for _, p := range s.pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return Pod{}, false
}

func (s *Server) list(w http.ResponseWriter, ns string) {
	items := []any{}
	for _, p := range s.pods {
		if ns == "" || p.Namespace == ns {
			items = append(items, podObject(p))
		}
	}
	writeJSON(w, map[string]any{"kind": "PodList", "apiVersion": "v1", "metadata": map[string]any{"resourceVersion": "1"}, "items": items})
}

func podObject(p Pod) map[string]any {
	var cs, st []map[string]any
	for _, c := range p.Containers {
		cs = append(cs, map[string]any{"name": c, "image": "kubetest/" + c, "stdin": true, "stdinOnce": true})
		st = append(st, map[string]any{"name": c, "ready": true, "restartCount": 0, "image": "kubetest/" + c,
			"state": map[string]any{"running": map[string]any{"startedAt": "2026-01-01T00:00:00Z"}}})
	}
	return map[string]any{
		"kind": "Pod", "apiVersion": "v1",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": "uid-" + p.Name,
			"creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": "1", "annotations": p.Annotations},
		"spec":   map[string]any{"containers": cs},
		"status": map[string]any{"phase": "Running", "containerStatuses": st},
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code})
	_, _ = w.Write(b)
}

// exec runs the command for real over the transport the client asked for.
func (s *Server) exec(w http.ResponseWriter, r *http.Request, pod Pod) {
	q := r.URL.Query()
	cmd := q["command"]
	container := q.Get("container")
	if container == "" {
		container = pod.Containers[0]
	}
	found := false
	for _, c := range pod.Containers {
		found = found || c == container
	}
	if !found || len(cmd) == 0 {
		status(w, http.StatusBadRequest, "BadRequest", "container "+container+" is not valid for pod "+pod.Name)
		return
	}
	b := func(n string) bool { v := q.Get(n); return v == "true" || v == "1" }
	opts := &crirc.Options{Stdin: b("stdin"), Stdout: b("stdout"), Stderr: b("stderr") && !b("tty"), TTY: b("tty")}
	ex := hostExecutor{dir: s.dir, running: &s.running}
	if wsstream.IsWebSocketRequest(r) {
		serveWebSocket(w, r, ex, cmd, opts)
		return
	}
	crirc.ServeExec(w, r, ex, pod.Name, "", container, cmd, opts, 0, 30*time.Second,
		[]string{crirc.StreamProtocolV4Name, crirc.StreamProtocolV3Name, crirc.StreamProtocolV2Name, crirc.StreamProtocolV1Name})
}

// hostExecutor runs argv on the local host in dir.
type hostExecutor struct {
	dir     string
	running *atomic.Int64
}

func (h hostExecutor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser,
	_ bool, resize <-chan crirc.TerminalSize, _ time.Duration) error {
	if resize != nil {
		go func() {
			for range resize {
			}
		}()
	}
	h.running.Add(1)
	defer h.running.Add(-1)
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Dir = h.dir
	if in != nil {
		c.Stdin = in
	}
	if out != nil {
		c.Stdout = out
	}
	if errw != nil {
		c.Stderr = errw
	}
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

// serveWebSocket is the channel.k8s.io WebSocket server side (v5 with the
// stdin close signal, or v4).
func serveWebSocket(w http.ResponseWriter, r *http.Request, ex hostExecutor, cmd []string, o *crirc.Options) {
	ch := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	chans := []wsstream.ChannelType{ch(o.Stdin, wsstream.ReadChannel), ch(o.Stdout, wsstream.WriteChannel),
		ch(o.Stderr, wsstream.WriteChannel), wsstream.WriteChannel, ch(o.TTY, wsstream.ReadChannel)}
	wc := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"v5.channel.k8s.io": {Binary: true, Channels: chans},
		"v4.channel.k8s.io": {Binary: true, Channels: chans},
	})
	_, streams, err := wc.Open(w, r)
	if err != nil {
		return
	}
	defer wc.Close()
	var in io.Reader
	var out, errw io.WriteCloser
	if o.Stdin {
		in = streams[0]
	}
	if o.Stdout {
		out = streams[1]
	}
	if o.Stderr {
		errw = streams[2]
	}
	err = ex.ExecInContainer(r.Context(), "", "", "", cmd, in, out, errw, o.TTY, nil, 0)
	st := map[string]any{"metadata": map[string]any{}, "status": "Success"}
	var ee utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		st = map[string]any{"metadata": map[string]any{}, "status": "Failure", "reason": "NonZeroExitCode",
			"message": "command terminated with non-zero exit code: " + err.Error(),
			"details": map[string]any{"causes": []map[string]string{{"reason": "ExitCode", "message": strconv.Itoa(ee.ExitStatus())}}}}
	default:
		st = map[string]any{"metadata": map[string]any{}, "status": "Failure", "reason": "InternalError", "message": err.Error()}
	}
	b, _ := json.Marshal(st)
	_, _ = streams[3].Write(b)
}

type closeListener struct{ net.Listener }

func (l *closeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &closeConn{Conn: c, done: make(chan struct{})}, nil
}

// closeConn closes done when the connection is closed.
type closeConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *closeConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}
