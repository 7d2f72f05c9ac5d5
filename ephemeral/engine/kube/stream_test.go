package kube_test

import (
	"bytes"
	"context"
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
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/kubetest"
)

func TestPodObjectsMasked(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope(), pods: []kubetest.Pod{
		{Namespace: "shop", Name: "web-1", Containers: []string{"app"}, Annotations: map[string]string{"billing": "card " + card}},
	}})
	for _, args := range [][]string{{"get", "pod", "web-1", "-n", "shop", "-o", "json"}, {"get", "pods", "-n", "shop", "-o", "yaml"}} {
		r := p.kubectl(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.out, "card ") || strings.Contains(r.out, card) {
			t.Fatalf("kubectl %v: want the annotation with the card masked: %s", args, r)
		}
	}
}

// sizes is a TerminalSizeQueue sending one size, then ending.
type sizes struct {
	c chan remotecommand.TerminalSize
}

func (s sizes) Next() *remotecommand.TerminalSize {
	v, ok := <-s.c
	if !ok {
		return nil
	}
	return &v
}

// TestInteractiveShellOverWebSocket: with Commands.Interactive a lone shell
// with tty and stdin runs (recorded, not filtered); resize events reach the
// recording; without it the same request is refused.
func TestInteractiveShellOverWebSocket(t *testing.T) {
	t.Parallel()
	for _, interactive := range []bool{true, false} {
		p := startProxy(t, opts{scope: defaultScope(), commands: spec.Commands{Interactive: interactive}})
		cfg := &rest.Config{Host: "https://" + p.addr, BearerToken: string(p.grant.ClientSecret),
			TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.eng.CertificatePEM())},
			Proxy:           func(*http.Request) (*url.URL, error) { return nil, nil }}
		u := cfg.Host + "/api/v1/namespaces/shop/pods/web-1/exec?command=sh&container=app&stdin=true&stdout=true&tty=true"
		ex, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u)
		if err != nil {
			t.Fatal(err)
		}
		q := sizes{c: make(chan remotecommand.TerminalSize, 1)}
		q.c <- remotecommand.TerminalSize{Width: 100, Height: 40}
		close(q.c)
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("echo hi-there\nexit 0\n"), Stdout: &out, Tty: true, TerminalSizeQueue: q})
		cancel()
		if !interactive {
			if err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "Forbidden") && !strings.Contains(err.Error(), "jitgate") {
				t.Fatalf("non-interactive grant: want refusal, got %v, output %q", err, out.String())
			}
			continue
		}
		if err != nil || !strings.Contains(out.String(), "hi-there") {
			t.Fatalf("interactive shell: %v, output %q", err, out.String())
		}
		var cast string
		for _, ev := range p.events(t) {
			if ev.Type == record.Notice && ev.Tag == "exec" {
				cast = strings.TrimPrefix(ev.Error, "recorded as ")
			}
		}
		f, err := os.Open(filepath.Join(p.dir, cast))
		if err != nil {
			t.Fatal(err)
		}
		_, evs, err := asciicast.Read(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var resized, typed bool
		for _, ev := range evs {
			resized = resized || ev.Code == asciicast.Resize && ev.Data == "100x40"
			typed = typed || ev.Code == asciicast.Input && strings.Contains(ev.Data, "echo hi-there")
		}
		if !resized || !typed {
			t.Fatalf("asciicast lacks the resize or the input: %+v", evs)
		}
	}
}

// TestWebSocketV4AndSPDYClients: client-go's executors over
// v4.channel.k8s.io and SPDY get the masked output and the exit status.
func TestWebSocketV4AndSPDYClients(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	p.plant(t, "orders.txt", "order 5 paid with "+card+"\n")
	cfg := &rest.Config{Host: "https://" + p.addr, BearerToken: string(p.grant.ClientSecret),
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.eng.CertificatePEM())},
		Proxy:           func(*http.Request) (*url.URL, error) { return nil, nil }}
	u := cfg.Host + "/api/v1/namespaces/shop/pods/web-1/exec?command=sh&command=-c&command=cat+orders.txt%3B+exit+4&container=app&stdout=true&stderr=true"
	pu, _ := url.Parse(u)
	v4, err := remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u, "v4.channel.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", pu)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ex   remotecommand.Executor
	}{{"spdy", spdy}, {"v4", v4}, {"spdy again", spdy}} {
		name, ex := tc.name, tc.ex
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var errb bytes.Buffer
		err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "exit code 4") || !strings.Contains(out.String(), "order 5 paid with") || strings.Contains(out.String(), card) {
			t.Fatalf("%s: err %v, output %q", name, err, out.String())
		}
	}
}
