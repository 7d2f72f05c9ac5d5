package kube_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/jitgate/jitgate/ephemeral/engine/kube"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/kubetest"
)

// webServer is the pod's "web" port: an HTTP server on a loopback listener
// that answers with a fixed body.
func webServer(t *testing.T, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// pfProxy is a proxy with port-forward granted for ports, in front of a
// double whose web-1 serves body on pod port 8080 (and 9090).
func pfProxy(t *testing.T, ports []int, body string) *proxy {
	t.Helper()
	web := webServer(t, body)
	scope := defaultScope()
	scope.Exec = false
	scope.PortForward = true
	scope.Ports = ports
	pods := []kubetest.Pod{{Namespace: "shop", Name: "web-1", Containers: []string{"app"},
		Ports: map[int]string{8080: web, 9090: web}}}
	return startProxy(t, opts{scope: scope, pods: pods})
}

// kubectlPortForward starts kubectl port-forward to pod port podPort on a
// free local port and returns the local address and kubectl's stderr.
func (p *proxy) kubectlPortForward(t *testing.T, env []string, podPort int) (string, *syncBuffer) {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH; the real-kubectl tests need it")
	}
	home := t.TempDir()
	kc := filepath.Join(home, "kubeconfig")
	cfg := "apiVersion: v1\nkind: Config\nclusters:\n- name: jitgate\n  cluster:\n    server: https://" + p.addr +
		"\n    certificate-authority-data: " + base64.StdEncoding.EncodeToString([]byte(p.eng.CertificatePEM())) +
		"\nusers:\n- name: agent\n  user:\n    token: " + string(p.grant.ClientSecret) +
		"\ncontexts:\n- name: jitgate\n  context:\n    cluster: jitgate\n    user: agent\ncurrent-context: jitgate\n"
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, bin, "port-forward", "-n", "shop", "--address", "127.0.0.1", "pod/web-1", ":"+strconv.Itoa(podPort))
	cmd.Env = append([]string{"KUBECONFIG=" + kc, "HOME=" + home, "PATH=" + os.Getenv("PATH"), "NO_PROXY=*", "no_proxy=*"}, env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> ` + strconv.Itoa(podPort))
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return m[1], stderr
		}
	}
	t.Fatalf("kubectl port-forward did not start: %s", stderr.String())
	return "", nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func httpGet(addr string) (string, error) {
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + addr + "/status")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitEvent polls the recording until an event satisfies ok.
func (p *proxy) waitEvent(t *testing.T, ok func(record.Event) bool) record.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range p.events(t) {
			if ok(e) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no such event in the recording: %+v", p.events(t))
	return record.Event{}
}

// TestKubectlPortForward: kubectl port-forward over both transports, an
// HTTP GET through it, the stream recorded (one event with the byte counts,
// an asciicast with the payload).
func TestKubectlPortForward(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, transport string
		env             []string
	}{
		{"websocket tunnel", "websocket SPDY/3.1+portforward.k8s.io", nil},
		{"spdy", "spdy", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pfProxy(t, []int{8080}, "hello from web-1")
			addr, stderr := p.kubectlPortForward(t, tc.env, 8080)
			body, err := httpGet(addr)
			if err != nil || body != "hello from web-1" {
				t.Fatalf("GET through the port-forward: %q, %v; kubectl: %s", body, err, stderr)
			}
			ev := p.waitEvent(t, func(e record.Event) bool { return e.Type == record.Result && e.Tag == "port 8080" })
			if !strings.Contains(ev.Error, "bytes to the pod") || strings.HasPrefix(ev.Error, "0 bytes") || !strings.Contains(ev.Error, "closed: ") {
				t.Errorf("stream event %q: want byte counts and a close reason", ev.Error)
			}
			if ev.Statement != "port-forward shop/web-1:8080" {
				t.Errorf("stream event statement %q", ev.Statement)
			}
			_, evs := readCast(t, p.dir, "portforward")
			if in, out := castText(evs, "i"), castText(evs, "o"); !strings.Contains(in, "GET /status") || !strings.Contains(out, "hello from web-1") {
				t.Errorf("payload not recorded: in %q out %q", in, out)
			}
			var transport string
			for _, e := range p.events(t) {
				if e.Type == record.Notice && e.Tag == "transport" {
					transport = e.Statement
				}
			}
			if transport != tc.transport {
				t.Errorf("transport %q, want %q", transport, tc.transport)
			}
			if got := p.up.Forwards(); !slices.Equal(got, []int{8080}) {
				t.Errorf("upstream forwards %v, want [8080]", got)
			}
		})
	}
}

// TestKubectlPortForwardPortOutsideGrant: a stream for a port outside
// Kube.Ports is refused with the reason; the API server never sees it.
func TestKubectlPortForwardPortOutsideGrant(t *testing.T) {
	t.Parallel()
	p := pfProxy(t, []int{8080}, "hello")
	addr, stderr := p.kubectlPortForward(t, []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"}, 9090)
	if body, err := httpGet(addr); err == nil && body == "hello" {
		t.Fatalf("GET through a refused port worked: %q", body)
	}
	want := "jitgate: " + kube.PortRefusal([]int{8080}, 9090)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("kubectl stderr %q does not hold %q", stderr.String(), want)
	}
	if got := p.up.Forwards(); len(got) != 0 {
		t.Fatalf("a refused port reached the API server: %v", got)
	}
	p.waitEvent(t, func(e record.Event) bool {
		return e.Type == record.Verdict && e.Allowed != nil && !*e.Allowed && strings.Contains(e.Reason, "port 9090 is not covered")
	})
	if _, b := p.eng.Verdicts(); b == 0 {
		t.Errorf("Verdicts: the refused stream was not counted")
	}
}

// TestPortForwardRawStreams: inside a connection opened for port=8080, a
// stream for 8080 works, a stream for 9090 (in the grant, not asked for)
// and one for 22 (outside the grant) are refused on their error streams,
// and neither reaches the API server.
func TestPortForwardRawStreams(t *testing.T) {
	t.Parallel()
	p := pfProxy(t, []int{8080, 9090}, "raw hello")
	conn := p.pfConn(t, "?port=8080")
	stream := func(port, id int) (string, string) { return pfStream(t, conn, port, id, "GET / HTTP/1.0\r\n\r\n") }
	if data, msg := stream(8080, 1); !strings.Contains(data, "raw hello") || msg != "" {
		t.Fatalf("port 8080: data %q error %q", data, msg)
	}
	for _, tc := range []struct {
		port int
		want string
	}{
		{9090, "jitgate: port 9090 was not asked for when the port-forward opened"},
		{22, "jitgate: port 22 is not covered by this grant (ports 8080, 9090)"},
	} {
		data, msg := stream(tc.port, tc.port)
		if strings.Contains(data, "raw hello") {
			t.Errorf("port %d: refused stream carried data %q", tc.port, data)
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("port %d: error stream %q, want refusal %q", tc.port, msg, tc.want)
		}
	}
	if got := p.up.Forwards(); !slices.Equal(got, []int{8080}) {
		t.Fatalf("upstream forwards %v, want [8080] only", got)
	}
}

// pfConn opens a raw SPDY port-forward connection to web-1 through the
// proxy, with query appended to the path.
func (p *proxy) pfConn(t *testing.T, query string) httpstream.Connection {
	t.Helper()
	cfg := &rest.Config{Host: "https://" + p.addr, BearerToken: string(p.grant.ClientSecret),
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.eng.CertificatePEM())}}
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://" + p.addr + "/api/v1/namespaces/shop/pods/web-1/portforward" + query)
	conn, _, err := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// pfStream opens one stream pair for port, sends payload, half-closes and
// returns what came back on the data and the error stream.
func pfStream(t *testing.T, conn httpstream.Connection, port, id int, payload string) (string, string) {
	t.Helper()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
	es, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("port %d: error stream: %v", port, err)
	}
	_ = es.Close()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	ds, err := conn.CreateStream(h)
	if err != nil {
		// A refused stream pair may be reset before its data stream's
		// reply reaches the client; the error stream may still hold why.
		msg, _ := io.ReadAll(es)
		return "", string(msg) + " (data stream: " + err.Error() + ")"
	}
	_, _ = io.WriteString(ds, payload)
	_ = ds.Close()
	data, _ := io.ReadAll(ds)
	msg, _ := io.ReadAll(es)
	return string(data), string(msg)
}

// TestPortForwardPayloadCapped: a large answer passes whole, the recording
// keeps the first MaxRecordedOutput bytes and says it cut.
func TestPortForwardPayloadCapped(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 20000) // 320000 bytes
	web := webServer(t, big)
	scope := defaultScope()
	scope.PortForward, scope.Ports = true, []int{8080}
	p := startProxy(t, opts{scope: scope, maxRecorded: 1024,
		pods: []kubetest.Pod{{Namespace: "shop", Name: "web-1", Containers: []string{"app"}, Ports: map[int]string{8080: web}}}})
	conn := p.pfConn(t, "")
	data, msg := pfStream(t, conn, 8080, 1, "GET / HTTP/1.0\r\n\r\n")
	if !strings.HasSuffix(data, big) || msg != "" {
		t.Fatalf("answer cut or error %q (got %d bytes)", msg, len(data))
	}
	ev := p.waitEvent(t, func(e record.Event) bool { return e.Type == record.Result && e.Tag == "port 8080" })
	if !strings.Contains(ev.Error, strconv.Itoa(len(data))+" bytes from the pod") {
		t.Errorf("stream event %q does not count the %d bytes from the pod", ev.Error, len(data))
	}
	_, evs := readCast(t, p.dir, "portforward")
	if out := castText(evs, "o"); len(out) != 1024 {
		t.Errorf("recorded %d bytes from the pod, want the first 1024", len(out))
	}
	if marks := castText(evs, "m"); !strings.Contains(marks, "recording of the bytes from the pod truncated after 1024 bytes") {
		t.Errorf("no truncation marker: %q", marks)
	}
}

// TestDeadlineEndsPortForward: a stream to a port that never answers ends
// when the grant's deadline passes, and is recorded as ended by it.
func TestDeadlineEndsPortForward(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // held open, never answers
		}
	}()
	scope := defaultScope()
	scope.PortForward, scope.Ports = true, []int{8080}
	p := startProxy(t, opts{scope: scope, deadline: time.Now().Add(2 * time.Second),
		pods: []kubetest.Pod{{Namespace: "shop", Name: "web-1", Containers: []string{"app"}, Ports: map[int]string{8080: ln.Addr().String()}}}})
	conn := p.pfConn(t, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		pfStream(t, conn, 8080, 1, "hello?")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the port-forward stream outlived the deadline")
	}
	ev := p.waitEvent(t, func(e record.Event) bool { return e.Type == record.Result && e.Tag == "port 8080" })
	t.Log(ev.Error)
	if !strings.Contains(ev.Error, "closed: the grant ended") {
		t.Errorf("stream event %q", ev.Error)
	}
}

// TestPortForwardRequests: port-forward requests refused before any
// upgrade, each with its reason, none seen upstream.
func TestPortForwardRequests(t *testing.T) {
	t.Parallel()
	const pf = "/api/v1/namespaces/shop/pods/web-1/portforward"
	spdyUp := map[string]string{"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "portforward.k8s.io"}
	for _, tc := range []struct {
		name   string
		scope  func(*spec.KubeScope)
		target string
		reason string
	}{
		{"switch off", func(s *spec.KubeScope) { s.PortForward = false }, pf, "port-forward is not allowed by this grant"},
		{"no ports", func(s *spec.KubeScope) { s.Ports = nil }, pf, "port-forward is allowed but the grant names no ports"},
		{"port duplicated", nil, pf + "?port=8080&port=8080", "port 8080 is named twice"},
		{"port duplicated in a list", nil, pf + "?port=8080,8080", "port 8080 is named twice"},
		{"ports= is not a parameter", nil, pf + "?ports=8080", `query parameter "ports" is not allowed here`},
		{"port outside", nil, pf + "?port=8080&port=22", "port 22 is not covered by this grant (ports 8080)"},
		{"port zero", nil, pf + "?port=0", `port "0" is not a port number`},
		{"port padded", nil, pf + "?port=08080", `port "08080" is not a port number`},
		{"port too large", nil, pf + "?port=65536", `port "65536" is not a port number`},
		{"other pod glob", func(s *spec.KubeScope) { s.Pods = []string{"db-*"} }, pf + "?port=8080", "pod web-1 is not covered by this grant"},
		{"no upgrade", nil, pf + "?port=8080", "port-forward needs a WebSocket or SPDY upgrade"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope := defaultScope()
			scope.PortForward = true
			scope.Ports = []int{8080}
			if tc.scope != nil {
				tc.scope(&scope)
			}
			p := startProxy(t, opts{scope: scope})
			h := spdyUp
			if tc.name == "no upgrade" {
				h = nil
			}
			code, body := p.rawRequest(t, "POST", tc.target, h)
			var st struct{ Message string }
			_ = json.Unmarshal([]byte(body), &st)
			if code != http.StatusForbidden || st.Message != "jitgate: "+tc.reason {
				t.Fatalf("want 403 %q, got %d %s", tc.reason, code, body)
			}
			if p.upstreamSaw("/portforward") {
				t.Fatalf("refused port-forward reached the API server")
			}
		})
	}
}

// TestPortForwardOldWebSocket: the older WebSocket port-forward protocol
// (v4.channel.k8s.io, ports in port=): an allowed port carries the request
// and answer; a port outside the grant in port= is refused before the
// upgrade.
func TestPortForwardOldWebSocket(t *testing.T) {
	t.Parallel()
	p := pfProxy(t, []int{8080}, "ws hello")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(p.eng.CertificatePEM()))
	d := gwebsocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, Subprotocols: []string{"v4.channel.k8s.io"},
		HandshakeTimeout: 10 * time.Second}
	hdr := http.Header{"Authorization": {"Bearer " + string(p.grant.ClientSecret)}}
	base := "wss://" + p.addr + "/api/v1/namespaces/shop/pods/web-1/portforward"

	_, resp, err := d.Dial(base+"?port=8080&port=22", hdr)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("port 22 in port=: want 403, got %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "jitgate: port 22 is not covered by this grant (ports 8080)") {
		t.Fatalf("refusal body %s", body)
	}

	ws, _, err := d.Dial(base+"?port=8080", hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err := ws.WriteMessage(gwebsocket.BinaryMessage, append([]byte{0}, "GET / HTTP/1.0\r\n\r\n"...)); err != nil {
		t.Fatal(err)
	}
	var data bytes.Buffer
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if len(m) > 0 && m[0] == 0 {
			data.Write(m[1:])
		}
		if strings.Contains(data.String(), "ws hello") {
			break
		}
	}
	// The first two bytes of the data channel are the port (little endian).
	if b := data.Bytes(); len(b) < 2 || b[0] != 8080&0xff || b[1] != 8080>>8 || !strings.Contains(string(b), "ws hello") {
		t.Fatalf("data channel %q", data.String())
	}
	var transport string
	for _, e := range p.events(t) {
		if e.Type == record.Notice && e.Tag == "transport" {
			transport = e.Statement
		}
	}
	if transport != "websocket portforward" {
		t.Errorf("transport %q", transport)
	}
	if got := p.up.Forwards(); !slices.Equal(got, []int{8080}) {
		t.Errorf("upstream forwards %v, want [8080]", got)
	}
}

// TestVerdictsCounted: every request's verdict is counted.
func TestVerdictsCounted(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	for _, target := range []string{"/api/v1/namespaces/shop/pods", "/api/v1/namespaces/shop/pods/web-1",
		"/api/v1/namespaces/shop/secrets", "/api/v1/namespaces/other/pods", "/api/v1/namespaces/shop/pods/web-1/attach?stdout=1"} {
		p.rawRequest(t, "GET", target, nil)
	}
	if a, b := p.eng.Verdicts(); a != 2 || b != 3 {
		t.Fatalf("Verdicts = %d allowed, %d blocked; want 2, 3", a, b)
	}
}
