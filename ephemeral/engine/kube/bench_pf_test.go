package kube_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/jitgate/jitgate/test/kubetest"
)

// BenchmarkPortForwardStream is port-forward throughput (16 MiB from the
// pod's port per stream) through the proxy (recorded, capped at 1 MiB)
// against the same stream straight to the double, in the same run: compare
// MB/s of direct and proxy.
//
//	go test -run XXX -bench BenchmarkPortForwardStream ./ephemeral/engine/kube/
func BenchmarkPortForwardStream(b *testing.B) {
	const size = 16 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = c.Write(payload); c.Close() }()
		}
	}()
	scope := defaultScope()
	scope.PortForward, scope.Ports = true, []int{8080}
	p := startProxy(b, opts{scope: scope,
		pods: []kubetest.Pod{{Namespace: "shop", Name: "web-1", Containers: []string{"app"}, Ports: map[int]string{8080: ln.Addr().String()}}}})
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
	}{
		{"direct", &rest.Config{Host: "https://" + p.up.Addr(), BearerToken: p.up.Token(),
			TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.up.CAPEM())}}},
		{"proxy", &rest.Config{Host: "https://" + p.addr, BearerToken: string(p.grant.ClientSecret),
			TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.eng.CertificatePEM())}}},
	} {
		tc.cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
		b.Run(tc.name, func(b *testing.B) {
			rt, up, err := spdy.RoundTripperFor(tc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			u, _ := url.Parse(tc.cfg.Host + "/api/v1/namespaces/shop/pods/web-1/portforward")
			conn, _, err := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			b.SetBytes(size)
			id := 0
			for b.Loop() {
				id++
				h := http.Header{}
				h.Set(corev1.StreamType, corev1.StreamTypeError)
				h.Set(corev1.PortHeader, "8080")
				h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
				es, err := conn.CreateStream(h)
				if err != nil {
					b.Fatal(err)
				}
				_ = es.Close()
				h.Set(corev1.StreamType, corev1.StreamTypeData)
				ds, err := conn.CreateStream(h)
				if err != nil {
					b.Fatal(err)
				}
				_ = ds.Close()
				n, _ := io.Copy(io.Discard, ds)
				if n != size {
					b.Fatalf("got %d bytes, want %d", n, size)
				}
				conn.RemoveStreams(es, ds)
			}
		})
	}
}
