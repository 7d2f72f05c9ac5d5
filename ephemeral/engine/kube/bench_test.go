package kube_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// BenchmarkExecStream is exec stdout throughput (cat of a 16 MiB text file)
// through the proxy (masked) against the same exec straight to the double,
// in the same run: compare MB/s of direct and proxy.
//
//	go test -run XXX -bench BenchmarkExecStream ./ephemeral/engine/kube/
func BenchmarkExecStream(b *testing.B) {
	p := startProxy(b, opts{scope: defaultScope()})
	plain := startProxy(b, opts{scope: defaultScope(), noMask: true})
	line := "2026-11-26T03:00:00Z GET /v1/orders/12345 200 user=alice latency=12ms\n"
	const size = 16 << 20
	p.plant(b, "big.txt", strings.Repeat(line, size/len(line)))
	plain.plant(b, "big.txt", strings.Repeat(line, size/len(line)))
	n := int64(size / len(line) * len(line))
	path := "/api/v1/namespaces/shop/pods/web-1/exec?command=cat&command=big.txt&container=app&stdout=true&stderr=true"
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
	}{
		{"direct", &rest.Config{Host: "https://" + p.up.Addr(), BearerToken: p.up.Token(),
			TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.up.CAPEM())}}},
		{"proxy", &rest.Config{Host: "https://" + p.addr, BearerToken: string(p.grant.ClientSecret),
			TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.eng.CertificatePEM())}}},
		{"proxy-unmasked", &rest.Config{Host: "https://" + plain.addr, BearerToken: string(plain.grant.ClientSecret),
			TLSClientConfig: rest.TLSClientConfig{CAData: []byte(plain.eng.CertificatePEM())}}},
	} {
		tc.cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
		b.Run(tc.name, func(b *testing.B) {
			u, err := url.Parse(tc.cfg.Host + path)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(n)
			for b.Loop() {
				ex, err := remotecommand.NewSPDYExecutor(tc.cfg, "POST", u)
				if err != nil {
					b.Fatal(err)
				}
				cw := &countWriter{}
				if err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: cw, Stderr: io.Discard}); err != nil {
					b.Fatal(err)
				}
				if cw.n != n {
					b.Fatalf("got %d bytes, want %d", cw.n, n)
				}
			}
		})
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
