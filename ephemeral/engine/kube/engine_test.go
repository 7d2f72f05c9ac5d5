package kube_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
	"github.com/jitgate/jitgate/ephemeral/session"
)

// rawRequest sends one request exactly as written (no client-side path
// cleaning) over TLS and returns the status and body.
func (p *proxy) rawRequest(t *testing.T, method, target string, headers map[string]string) (int, string) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(p.eng.CertificatePEM()))
	c, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + p.addr + "\r\nConnection: close\r\n")
	if _, ok := headers["Authorization"]; !ok {
		b.WriteString("Authorization: Bearer " + string(p.grant.ClientSecret) + "\r\n")
	}
	for k, v := range headers {
		if v != "" {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAdversarialRequests: path and query tricks, other verbs and
// resources, impersonation: each refused with 403 (or 401) and a Status
// whose message says why, and never seen upstream.
func TestAdversarialRequests(t *testing.T) {
	t.Parallel()
	scope := defaultScope()
	scope.Pods = []string{"web-*"}
	scope.Containers = []string{"app"}
	p := startProxy(t, opts{scope: scope})
	const pods = "/api/v1/namespaces/shop/pods"
	for _, tc := range []struct {
		name, method, target string
		headers              map[string]string
		code                 int
		reason               string
	}{
		{"dotdot", "GET", pods + "/web-1/../../../other/pods", nil, 403, "empty, . or .. segment"},
		{"dot", "GET", "/api/v1/namespaces/./shop/pods/web-1", nil, 403, "empty, . or .. segment"},
		{"double slash", "GET", "/api/v1/namespaces//shop/pods/web-1", nil, 403, "empty, . or .. segment"},
		{"trailing slash", "GET", pods + "/web-1/", nil, 403, "empty, . or .. segment"},
		{"encoded slash", "GET", "/api/v1/namespaces/shop%2Fpods/web-1", nil, 403, "encoded or reserved character"},
		{"encoded dot", "GET", pods + "/%2e%2e/x", nil, 403, "encoded or reserved character"},
		{"encoded letter", "GET", "/api/v1/namespaces/%73hop/pods", nil, 403, "encoded or reserved character"},
		{"backslash", "GET", pods + "\\..\\secrets", nil, 403, "encoded or reserved character"},
		{"semicolon", "GET", pods + ";x=1/web-1", nil, 403, "encoded or reserved character"},
		{"upper case resource", "GET", "/api/v1/namespaces/shop/PODS", nil, 403, "resource PODS is not allowed"},
		{"upper case namespace", "GET", "/api/v1/namespaces/SHOP/pods", nil, 403, "namespace SHOP is not covered"},
		{"other namespace", "GET", "/api/v1/namespaces/other/pods/x-1", nil, 403, "namespace other is not covered"},
		{"pod outside globs", "GET", pods + "/db-1", nil, 403, "pod db-1 is not covered"},
		{"paged list with pod globs", "GET", pods + "?limit=1&continue=abc", nil, 403, "paged pod lists are not allowed when the grant names pods"},
		{"all namespaces", "GET", "/api/v1/pods", nil, 403, "across all namespaces"},
		{"watch path", "GET", "/api/v1/watch/namespaces/shop/pods", nil, 403, "watch is not allowed"},
		{"watch param", "GET", pods + "/web-1?watch=true", nil, 403, "watch is not allowed"},
		{"secrets", "GET", "/api/v1/namespaces/shop/secrets", nil, 403, "resource secrets is not allowed"},
		{"configmaps", "GET", "/api/v1/namespaces/shop/configmaps/x", nil, 403, "resource configmaps is not allowed"},
		{"apps group", "GET", "/apis/apps/v1/namespaces/shop/deployments", nil, 403, "only pods in namespace shop"},
		{"delete", "DELETE", pods + "/web-1", nil, 403, "method DELETE is not allowed"},
		{"patch", "PATCH", pods + "/web-1", nil, 403, "method PATCH is not allowed"},
		{"put", "PUT", pods + "/web-1", nil, 403, "method PUT is not allowed"},
		{"create pod", "POST", pods, nil, 403, "creating pods is not allowed"},
		{"post to pod", "POST", pods + "/web-1", nil, 403, "writes to pods are not allowed"},
		{"dryRun", "GET", pods + "/web-1?dryRun=All", nil, 403, "dryRun is not allowed"},
		{"unknown param", "GET", pods + "/web-1?fieldSelector=metadata.namespace%3Dother", nil, 403, `query parameter "fieldSelector" is not allowed`},
		{"repeated param", "GET", pods + "/web-1?resourceVersion=1&resourceVersion=2", nil, 403, "query parameter resourceVersion is repeated"},
		{"pods proxy", "GET", pods + "/web-1/proxy", nil, 403, "pods/proxy is not allowed"},
		{"pods proxy path", "GET", pods + "/web-1/proxy/admin", nil, 403, "sub-resource path is not allowed"},
		{"ephemeral containers", "PATCH", pods + "/web-1/ephemeralcontainers", nil, 403, "method PATCH is not allowed"},
		{"ephemeral containers get", "GET", pods + "/web-1/ephemeralcontainers", nil, 403, "pods/ephemeralcontainers is not allowed"},
		{"log", "GET", pods + "/web-1/log", nil, 403, "pods/log is not allowed"},
		{"attach", "POST", pods + "/web-1/attach?container=app&stdout=true", nil, 403, "attach is not allowed by this grant"},
		{"portforward", "GET", pods + "/web-1/portforward?ports=80", nil, 403, "port-forward is not allowed by this grant"},
		{"services proxy", "GET", "/api/v1/namespaces/shop/services/web/proxy/", nil, 403, "empty, . or .. segment"},
		{"nodes proxy", "GET", "/api/v1/nodes/n1/proxy/pods", nil, 403, "only pods in namespace shop"},
		{"impersonate", "GET", pods + "/web-1", map[string]string{"Impersonate-User": "system:admin"}, 403, "impersonation headers are not allowed"},
		{"impersonate group", "GET", "/api", map[string]string{"Impersonate-Group": "system:masters"}, 403, "impersonation headers are not allowed"},
		{"exec without upgrade", "POST", pods + "/web-1/exec?command=ls&container=app&stdout=true", nil, 403, "exec needs a WebSocket or SPDY upgrade"},
		{"exec repeated container", "POST", pods + "/web-1/exec?command=ls&container=app&container=sidecar&stdout=true", nil, 403, "query parameter container is repeated"},
		{"exec other container", "POST", pods + "/web-1/exec?command=ls&container=sidecar&stdout=true", nil, 403, "container sidecar is not covered"},
		{"exec unnamed container", "POST", pods + "/web-1/exec?command=ls&stdout=true", nil, 403, "the container must be named"},
		{"exec no command", "POST", pods + "/web-1/exec?container=app&stdout=true", nil, 403, "exec without a command"},
		{"exec rm", "POST", pods + "/web-1/exec?command=rm&command=-rf&command=%2F&container=app&stdout=true", nil, 403, "blocked by policy: rm"},
		{"exec sh -c", "POST", pods + "/web-1/exec?command=sh&command=-c&command=ls%3Brm+-rf+x&container=app&stdout=true", nil, 403, "blocked by policy: rm"},
		{"exec bare shell", "POST", pods + "/web-1/exec?command=sh&container=app&stdin=true&stdout=true&tty=true", nil, 403, "reads code from standard input"},
		{"exec tar", "POST", pods + "/web-1/exec?command=tar&command=cf&command=-&command=.&container=app&stdout=true", nil, 403, "copying files"},
		{"exec sh -c tar", "POST", pods + "/web-1/exec?command=sh&command=-c&command=tar+cf+-+.&container=app&stdout=true", nil, 403, "blocked by policy: tar"},
		{"exec watch", "POST", pods + "/web-1/exec?command=ls&container=app&stdout=true&watch=true", nil, 403, "watch is not allowed"},
		{"exec bad bool", "POST", pods + "/web-1/exec?command=ls&container=app&stdout=yes", nil, 403, "invalid value for stdout"},
		{"upgrade on get", "GET", pods + "/web-1", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, 403, "upgrades are allowed only for exec"},
		{"absolute form", "GET", "https://" + "127.0.0.1/api", nil, 403, "only origin-form"},
		{"no auth", "GET", "/api", map[string]string{"Authorization": ""}, 401, "authentication required"},
		{"basic auth", "GET", "/api", map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}, 401, "authentication required"},
		{"wrong bearer", "GET", "/api", map[string]string{"Authorization": "Bearer wrong"}, 401, "authentication required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(p.up.Requests())
			code, body := p.rawRequest(t, tc.method, tc.target, tc.headers)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			var st struct{ Kind, Message, Reason string }
			if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" || !strings.HasPrefix(st.Message, "jitgate: ") || !strings.Contains(st.Message, tc.reason) {
				t.Fatalf("want Status with %q, got %s (%v)", tc.reason, body, err)
			}
			if n := len(p.up.Requests()); n != before {
				t.Fatalf("refused request reached the API server: %+v", p.up.Requests()[before:])
			}
		})
	}
	// And the allowed ones do reach it, rebuilt canonically.
	for _, target := range []string{"/api", "/api/v1", "/apis", "/version", pods + "/web-1", pods + "/web-2?resourceVersion=0"} {
		code, body := p.rawRequest(t, "GET", target, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", target, code, body)
		}
	}
}

var transports = []struct {
	name, env, proto string
}{
	{"websocket", "", "websocket v5.channel.k8s.io"},
	{"spdy", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "spdy"},
}

func envOf(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// TestExecRecordedAndExitStatus: the exec stream's transport, verdict, exit
// status and asciicast (masked output, recorded input) are in the
// recording; the exit status and stdin reach through both transports.
func TestExecRecordedAndExitStatus(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, opts{scope: defaultScope()})
			p.plant(t, "orders.txt", "order 7 paid with "+card+"\n")
			r := p.kubectlIn(t, "hello from stdin\n", envOf(tr.env), "", "exec", "-i", "-n", "shop", "web-1", "-c", "app", "--",
				"sh", "-c", "cat orders.txt; cat; exit 3")
			if r.code != 3 || !strings.Contains(r.out, "hello from stdin") || !strings.Contains(r.out, "order 7 paid with") || strings.Contains(r.out, card) {
				t.Fatalf("want masked output, stdin echoed and exit 3: %s", r)
			}
			evs := p.events(t)
			var proto, cast, exit string
			for _, ev := range evs {
				switch {
				case ev.Type == record.Notice && ev.Tag == "transport":
					proto = ev.Statement
				case ev.Type == record.Notice && ev.Tag == "exec":
					cast = strings.TrimPrefix(ev.Error, "recorded as ")
				case ev.Type == record.Result && strings.HasPrefix(ev.Tag, "exit "):
					exit = ev.Tag
				}
			}
			if proto != tr.proto || exit != "exit 3" || cast == "" {
				t.Fatalf("recording: transport %q (want %q), exit %q, cast %q; events %+v", proto, tr.proto, exit, cast, evs)
			}
			f, err := os.Open(filepath.Join(p.dir, cast))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, cevs, err := asciicast.Read(f)
			if err != nil {
				t.Fatalf("asciicast does not parse: %v", err)
			}
			var out, in strings.Builder
			for _, ev := range cevs {
				switch ev.Code {
				case asciicast.Output:
					out.WriteString(ev.Data)
				case asciicast.Input:
					in.WriteString(ev.Data)
				}
			}
			if h.Version != 2 || !strings.Contains(h.Command, "cat orders.txt") || !strings.Contains(out.String(), "order 7 paid with") ||
				strings.Contains(out.String(), card) || in.String() != "hello from stdin\n" {
				t.Fatalf("asciicast: header %+v, output %q, input %q", h, out.String(), in.String())
			}
			// The API requests are recorded with their verdicts.
			var sawGet bool
			for _, ev := range evs {
				if ev.Type == record.Verdict && strings.HasPrefix(ev.Statement, "GET /api/v1/namespaces/shop/pods/web-1") && ev.Allowed != nil && *ev.Allowed {
					sawGet = true
				}
			}
			if !sawGet {
				t.Fatalf("kubectl's pod GET is not recorded: %+v", evs)
			}
		})
	}
}

func TestExecMode(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	p.plant(t, "orders.txt", "order 9 paid with "+card+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.eng.Exec(ctx, `{"namespace":"shop","pod":"web-1","container":"app","command":["sh","-c","cat orders.txt; echo oops >&2; exit 2"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tag != "exit 2" || !strings.Contains(res.Output, "order 9 paid with") || strings.Contains(res.Output, card) ||
		len(res.Notices) != 1 || res.Notices[0] != "oops\n" {
		t.Fatalf("result %+v", res)
	}
	// A secret in the command line is masked in the output and the recording.
	res, err = p.eng.Exec(ctx, `{"namespace":"shop","pod":"web-1","container":"app","command":["echo","`+card+`"]}`)
	if err != nil || res.Tag != "exit 0" || strings.Contains(res.Output, card) || res.Output == "" {
		t.Fatalf("echo of a card: %+v, %v", res, err)
	}
	for _, ev := range p.events(t) {
		if strings.Contains(ev.Statement, card) || strings.Contains(ev.Error, card) {
			t.Fatalf("card in the recording: %+v", ev)
		}
	}
	for _, tc := range []struct{ op, want string }{
		{`{"namespace":"shop","pod":"web-1","container":"app","command":["rm","-rf","x"]}`, "blocked by policy: rm"},
		{`{"namespace":"other","pod":"x-1","command":["ls"]}`, "namespace other is not covered"},
		{`{"namespace":"shop","pod":"web-1/../x","command":["ls"]}`, "only pods in namespace shop"},
		{`{"namespace":"shop","pod":"web-1","command":["ls"],"extra":1}`, "not an exec JSON object"},
		{`not json`, "not an exec JSON object"},
		{`{"namespace":"shop","pod":"web-1","command":[]}`, "exec without a command"},
	} {
		before := len(p.up.Requests())
		_, err := p.eng.Exec(ctx, tc.op)
		if !errors.Is(err, session.ErrBlocked) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("op %s: want ErrBlocked with %q, got %v", tc.op, tc.want, err)
		}
		if len(p.up.Requests()) != before {
			t.Errorf("op %s reached the API server", tc.op)
		}
	}
}

// TestDeadlineEndsExecStream: a long exec stream ends when the grant's
// deadline passes, on both sides.
func TestDeadlineEndsExecStream(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope(), deadline: time.Now().Add(3 * time.Second)})
	start := time.Now()
	r := p.kubectl(t, nil, "", "exec", "-n", "shop", "web-1", "-c", "app", "--", "sleep", "50")
	if r.code == 0 {
		t.Fatalf("exec survived the deadline: %s", r)
	}
	if time.Since(start) > 40*time.Second {
		t.Fatalf("exec ran past the deadline for %v", time.Since(start))
	}
	// The command upstream was ended with the stream.
	waitNoneRunning(t, p)
	// After the deadline nothing is served.
	if _, err := tls.Dial("tcp", p.addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Fatal("the proxy still accepts connections after the deadline")
	}
}

// waitNoneRunning waits (bounded) until the double runs no command.
func waitNoneRunning(t *testing.T, p *proxy) {
	t.Helper()
	for i := 0; p.up.Running() != 0; i++ {
		if i > 200 {
			t.Fatalf("the upstream command still runs after its stream ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentLeavingEndsUpstreamExec: when the agent's connection closes
// mid-exec, the proxy closes the upstream stream and the command ends.
func TestAgentLeavingEndsUpstreamExec(t *testing.T) {
	t.Parallel()
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, opts{scope: defaultScope()})
			cfg := &rest.Config{Host: "https://" + p.addr, BearerToken: string(p.grant.ClientSecret),
				TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.eng.CertificatePEM())},
				Proxy:           func(*http.Request) (*url.URL, error) { return nil, nil }}
			u := cfg.Host + "/api/v1/namespaces/shop/pods/web-1/exec?command=sleep&command=60&container=app&stdout=true"
			var ex remotecommand.Executor
			var err error
			if tr.name == "spdy" {
				pu, _ := url.Parse(u)
				ex, err = remotecommand.NewSPDYExecutor(cfg, "POST", pu)
			} else {
				ex, err = remotecommand.NewWebSocketExecutor(cfg, "GET", u)
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard}) }()
			for i := 0; p.up.Running() == 0; i++ {
				if i > 200 {
					t.Fatal("the command never started upstream")
				}
				time.Sleep(50 * time.Millisecond)
			}
			cancel() // the agent leaves
			<-done
			waitNoneRunning(t, p)
		})
	}
}
