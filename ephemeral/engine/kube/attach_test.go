package kube_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/engine/kube"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
	"github.com/jitgate/jitgate/test/kubetest"
)

// attachPods are the fixture pods whose running container prints a card
// number, then echoes its stdin.
func attachPods() []kubetest.Pod {
	return []kubetest.Pod{
		{Namespace: "shop", Name: "web-1", Containers: []string{"app", "sidecar"},
			Run: []string{"sh", "-c", "echo order paid with " + card + "; cat"}},
		{Namespace: "shop", Name: "db-1", Containers: []string{"postgres"}},
	}
}

// readCast reads the one asciicast whose name contains kind.
func readCast(t *testing.T, dir, kind string) (asciicast.Header, []asciicast.Event) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*."+kind+"*.cast"))
	if len(m) != 1 {
		t.Fatalf("want one %s asciicast in %s, got %v", kind, dir, m)
	}
	f, err := os.Open(m[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, evs, err := asciicast.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return h, evs
}

func castText(evs []asciicast.Event, code string) string {
	var b strings.Builder
	for _, e := range evs {
		if e.Code == code {
			b.WriteString(e.Data)
		}
	}
	return b.String()
}

// TestKubectlAttachMasked: kubectl attach -i over both transports reaches
// the running container; its output is masked, the input is recorded.
func TestKubectlAttachMasked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, transport string
		env             []string
	}{
		{"websocket", "websocket v5.channel.k8s.io", nil},
		{"spdy", "spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope := defaultScope()
			scope.Exec = false
			scope.Attach = true
			p := startProxy(t, opts{scope: scope, pods: attachPods()})
			r := p.kubectlIn(t, "hello from the agent\n", tc.env, "", "attach", "-i", "-n", "shop", "web-1", "-c", "app")
			if r.code != 0 || !strings.Contains(r.out, "order paid with") || !strings.Contains(r.out, "hello from the agent") {
				t.Fatalf("kubectl attach: %s", r)
			}
			if strings.Contains(r.out, card) {
				t.Fatalf("card number not masked: %s", r)
			}
			if !p.upstreamSaw("/pods/web-1/attach") {
				t.Fatalf("the attach did not reach the API server: %+v", p.up.Requests())
			}
			h, evs := readCast(t, p.dir, "attach")
			if h.Command != "attach app" {
				t.Errorf("asciicast command %q, want %q", h.Command, "attach app")
			}
			if in := castText(evs, "i"); !strings.Contains(in, "hello from the agent") {
				t.Errorf("attach input not recorded: %q", in)
			}
			if out := castText(evs, "o"); !strings.Contains(out, "order paid with") || strings.Contains(out, card) {
				t.Errorf("attach output recorded unmasked or missing: %q", out)
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
			if n := p.eng.MaskCounts()["credit_card"]; n == 0 {
				t.Errorf("MaskCounts: no credit_card counted: %v", p.eng.MaskCounts())
			}
			if a, _ := p.eng.Verdicts(); a == 0 {
				t.Errorf("Verdicts: nothing allowed counted")
			}
		})
	}
}

// TestKubectlAttachRefused: without Attach, and to a container outside the
// globs, attach is refused with the reason and never reaches the API server.
func TestKubectlAttachRefused(t *testing.T) {
	t.Parallel()
	off := defaultScope()
	on := defaultScope()
	on.Attach = true
	on.Containers = []string{"app"}
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		grant bool
	}{
		{name: "switch off", args: []string{"attach", "-n", "shop", "web-1", "-c", "app"},
			want: "jitgate: " + kube.AttachRefusal},
		{name: "container outside globs", grant: true, args: []string{"attach", "-n", "shop", "web-1", "-c", "sidecar"},
			want: "jitgate: container sidecar is not covered by this grant"},
		{name: "pod of another namespace", grant: true, args: []string{"attach", "-n", "other", "x-1"},
			want: "jitgate: namespace other is not covered by this grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope := off
			if tc.grant {
				scope = on
			}
			p := startProxy(t, opts{scope: scope})
			r := p.kubectl(t, nil, "", tc.args...)
			if r.code == 0 || !strings.Contains(r.err, tc.want) {
				t.Fatalf("want refusal %q, got %s", tc.want, r)
			}
			if p.upstreamSaw("/attach") {
				t.Fatalf("refused attach reached the API server: %+v", p.up.Requests())
			}
			if _, b := p.eng.Verdicts(); b == 0 {
				t.Errorf("Verdicts: the refusal was not counted")
			}
		})
	}
}

// TestAttachRequests: attach requests refused before any upgrade, each with
// its reason, none seen upstream.
func TestAttachRequests(t *testing.T) {
	t.Parallel()
	scope := defaultScope()
	scope.Attach = true
	scope.Containers = []string{"app"}
	p := startProxy(t, opts{scope: scope})
	const at = "/api/v1/namespaces/shop/pods/web-1/attach"
	spdyUp := map[string]string{"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"}
	for _, tc := range []struct {
		name, target string
		headers      map[string]string
		reason       string
	}{
		{"command smuggled", at + "?container=app&stdout=true&command=rm", spdyUp, `query parameter "command" is not allowed here`},
		{"container outside globs", at + "?container=sidecar&stdout=true", spdyUp, "container sidecar is not covered by this grant"},
		{"container unnamed", at + "?stdout=true", spdyUp, "the container must be named: the grant covers containers app"},
		{"container repeated", at + "?container=app&container=sidecar&stdout=true", spdyUp, "query parameter container is repeated"},
		{"no streams", at + "?container=app", spdyUp, "attach needs at least one of stdin, stdout, stderr"},
		{"no upgrade", at + "?container=app&stdout=true", nil, "attach needs a WebSocket or SPDY upgrade"},
		{"other pod path", "/api/v1/namespaces/shop/pods/web-1/attach/x?container=app&stdout=true", spdyUp, "sub-resource path is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := p.rawRequest(t, "POST", tc.target, tc.headers)
			var st struct{ Message string }
			_ = json.Unmarshal([]byte(body), &st)
			if code != 403 || st.Message != "jitgate: "+tc.reason {
				t.Fatalf("want 403 %q, got %d %s", tc.reason, code, body)
			}
		})
	}
	if p.upstreamSaw("/attach") {
		t.Fatalf("a refused attach reached the API server: %+v", p.up.Requests())
	}
}
