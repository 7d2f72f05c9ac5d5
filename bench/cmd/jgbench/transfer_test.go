package main

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/bench/harness"
)

// TestRenderTransfer: the scp and HTTP rows come out with ratios to their
// direct baselines, and the targets say met or missed at 0.8×.
func TestRenderTransfer(t *testing.T) {
	out := `pkg: github.com/jitgate/jitgate/ephemeral/engine/ssh
BenchmarkSCP200MB/sftp/direct-2         	       2	 769266746 ns/op	 200.00 MB/s
BenchmarkSCP200MB/sftp/proxy-2          	       2	 769266746 ns/op	 180.00 MB/s
BenchmarkSCP200MB/legacy/direct-2       	       2	 803054660 ns/op	 250.00 MB/s
BenchmarkSCP200MB/legacy/proxy-masked-2 	       2	2078304784 ns/op	 100.00 MB/s
pkg: github.com/jitgate/jitgate/ephemeral/engine/http
BenchmarkRequests/direct-2         	   41389	     64385 ns/op	        37.23 cpu-µs/req	     10000 req/s
BenchmarkRequests/jitgate-2        	   16628	    134624 ns/op	        86.46 cpu-µs/req	      5000 req/s
BenchmarkRequestsBackend20ms/direct-2     	   12960	    184704 ns/op	        52.89 cpu-µs/req	       800 req/s
BenchmarkRequestsBackend20ms/jitgate-masked-2 	 12960	    184704 ns/op	        52.89 cpu-µs/req	       780 req/s
BenchmarkRequestsBackendLatency/direct-2   	   12960	    184704 ns/op	        52.89 cpu-µs/req	      5000 req/s
BenchmarkRequestsBackendLatency/jitgate-2  	   11128	    247919 ns/op	       130.7 cpu-µs/req	      4500 req/s
`
	rs, err := harness.ParseGoBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	r := fakeResults()
	r.transfer = &transferResult{set: harness.NewGoBenchSet(rs), commands: []string{"go test -bench SCP200MB"}}
	rep := renderReport(r)
	for _, want := range []string{
		"| scp 200 MB (sftp) through the proxy ≥ 0.8× direct | 0.90× (180 vs 200 MB/s) | **met** |",
		"| HTTP req/s through the proxy ≥ 0.8× direct, upstream taking 2 ms | 0.90× (4500 vs 5000 req/s) | **met** |",
		"| HTTP req/s through the proxy ≥ 0.8× direct, trivial upstream on the same 2 cores | 0.50× (5000 vs 10000 req/s) | **missed** |",
		"| HTTP req/s through the proxy ≥ 0.8× direct, realistic upstream (20 ms per request) | 0.97× (780 vs 800 req/s) | **met** |",
		"## SSH and HTTP through the proxy",
		"|  | jitgate, detectors on (credit_card, aws_access_key) | 100 MB/s | 0.40× |",
		"- `go test -bench SCP200MB`",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// A row that did not run shows a dash, not a made-up ratio.
	if !strings.Contains(rep, "|  | jitgate, no detectors | — |  |") {
		t.Errorf("missing row not shown as a dash:\n%s", rep[strings.Index(rep, "## SSH and HTTP"):])
	}
}
