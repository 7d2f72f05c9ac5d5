//go:build unix

package http_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"syscall"
	"testing"
	"time"

	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
)

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRequests measures requests/s of a 730-byte JSON GET over keep-alive
// connections (16 concurrent clients): direct to the upstream (the baseline),
// through a plain httputil.ReverseProxy (what any Go proxy costs), and
// through the engine without and with masking (all detectors plus a JSON
// field rule), recording every request. Compare the req/s column:
//
//	go test -run XXX -bench Requests -benchtime 3s ./ephemeral/engine/http/
func BenchmarkRequests(b *testing.B) { benchRequests(b, "") }

// BenchmarkRequestsBackendLatency is BenchmarkRequests against an upstream
// that takes 2ms per request, as a backend doing real work does: the proxy's
// cost then shows as added latency rather than as competition for the CPU
// with a trivial upstream on the same two cores.
//
//	go test -run XXX -bench RequestsBackendLatency -benchtime 3s ./ephemeral/engine/http/
func BenchmarkRequestsBackendLatency(b *testing.B) { benchRequests(b, "2ms") }

// BenchmarkRequestsBackend20ms is an internal API as most are: 20 ms of
// service time per request (a database behind it). With 16 clients the
// machine is far from saturated, so the ratio to direct shows the latency
// the proxy adds rather than CPU contention on two shared cores.
//
//	go test -run XXX -bench RequestsBackend20ms -benchtime 3s ./ephemeral/engine/http/
func BenchmarkRequestsBackend20ms(b *testing.B) { benchRequests(b, "20ms") }

func benchRequests(b *testing.B, latency string) {
	up := startUpstream(b)
	path := "/v1/bench"
	if latency != "" {
		path += "?latency=" + latency
	}
	run := func(b *testing.B, base string, auth bool) {
		tr := &http.Transport{Proxy: nil, MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		b.SetParallelism(8)
		cpu0 := cpuTime()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 4096)
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, base+path, nil)
				if auth {
					req.Header.Set("Authorization", "Bearer "+grantSecret)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				if resp.StatusCode != 200 || n < 600 {
					b.Errorf("status %d, %d bytes", resp.StatusCode, n)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		// Process CPU per request (client, proxy and upstream together): on a
		// shared machine this moves far less than req/s does.
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
	}
	b.Run("direct", func(b *testing.B) { run(b, up.srv.URL, false) })
	b.Run("jitgate", func(b *testing.B) {
		p := startProxy(b, up, opts{mutate: func(c *httpengine.Config) { c.Masker, c.MaskJSONFields = nil, nil }})
		run(b, "http://"+p.addr, true)
	})
	b.Run("jitgate-masked", func(b *testing.B) {
		p := startProxy(b, up, opts{mutate: func(c *httpengine.Config) { c.MaskJSONFields = []string{"$.users[*].email"} }})
		run(b, "http://"+p.addr, true)
	})
	b.Run("httputil-reverseproxy", func(b *testing.B) {
		target, _ := url.Parse(up.srv.URL)
		rp := httputil.NewSingleHostReverseProxy(target)
		tr := &http.Transport{Proxy: nil, MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		rp.Transport = tr
		srv := httptest.NewServer(rp)
		defer srv.Close()
		run(b, srv.URL, false)
	})
}
