package harness_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/bench/harness"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePgbench(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		in      []byte
		want    harness.PgbenchResult
		wantErr string
	}{
		{name: "pgbench 15 select-only through jitgate connect", in: readTestdata(t, "pgbench15-select-c8.txt"),
			want: harness.PgbenchResult{TPS: 3780.668612, LatencyMs: 2.116, Transactions: 10636}},
		{name: "-t run prints done/total", in: []byte("number of transactions actually processed: 800/800\nlatency average = 1.5 ms\ntps = 640.5 (without initial connection time)\n"),
			want: harness.PgbenchResult{TPS: 640.5, LatencyMs: 1.5, Transactions: 800}},
		{name: "pgbench 13 prints tps twice; the one with connections is ignored",
			in:   []byte("number of transactions actually processed: 100\ntps = 90.0 (including connections establishing)\ntps = 99.5 (without initial connection time)\n"),
			want: harness.PgbenchResult{TPS: 99.5, Transactions: 100}},
		{name: "failed transactions are refused, not averaged in", in: readTestdata(t, "pgbench15-failed.txt"), wantErr: "3 failed transactions"},
		{name: "a connection failure has no summary", in: readTestdata(t, "pgbench15-connect-error.txt"), wantErr: harness.ErrPgbenchOutput.Error()},
		{name: "empty", in: nil, wantErr: harness.ErrPgbenchOutput.Error()},
		{name: "zero transactions", in: []byte("number of transactions actually processed: 0\ntps = 0.000000 (without initial connection time)\n"), wantErr: "no transactions"},
		{name: "garbage tps", in: []byte("number of transactions actually processed: 5\ntps = fast (without initial connection time)\n"), wantErr: "pgbench tps"},
		{name: "latency not in ms", in: []byte("number of transactions actually processed: 5\nlatency average = 2 s\ntps = 2.5 (without initial connection time)\n"), wantErr: "want milliseconds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := harness.ParsePgbench(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func FuzzParsePgbench(f *testing.F) {
	for _, n := range []string{"pgbench15-select-c8.txt", "pgbench15-failed.txt", "pgbench15-connect-error.txt"} {
		f.Add(readTestdata(f, n))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := harness.ParsePgbench(in)
		// Fail closed: anything accepted is a usable measurement.
		if err == nil && (r.TPS <= 0 || math.IsNaN(r.TPS) || math.IsInf(r.TPS, 0) || r.Transactions <= 0 || r.Failed != 0) {
			t.Fatalf("accepted an unusable result %+v from %q", r, in)
		}
	})
}

func TestParseGoBench(t *testing.T) {
	t.Parallel()
	rs, err := harness.ParseGoBench(strings.NewReader(string(readTestdata(t, "gobench.txt"))))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 9 {
		t.Fatalf("got %d results, want 9: %+v", len(rs), rs)
	}
	first := rs[0]
	if first.Pkg != "github.com/jitgate/jitgate/ephemeral/mask" || first.Name != "Detectors/credit_card/scanner" || first.Procs != 2 || first.N != 100 {
		t.Fatalf("first result %+v", first)
	}
	for unit, want := range map[string]float64{"ns/op": 1683000, "MB/s": 623.06, "matches": 412, "B/op": 0, "allocs/op": 0} {
		if got, ok := first.Metrics[unit]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", unit, got, ok, want)
		}
	}
	last := rs[len(rs)-1]
	if last.Name != "Serial" || last.Procs != 1 || last.Pkg != "github.com/jitgate/jitgate/broker/identity" {
		t.Fatalf("last result %+v", last)
	}

	set := harness.NewGoBenchSet(rs)
	const mask = "github.com/jitgate/jitgate/ephemeral/mask"
	if v, ok := set.Metric(mask, "Detectors/credit_card/scanner", "MB/s"); !ok || v != 623.06 {
		t.Errorf("median scanner MB/s over three counts = %v, %v; want 623.06", v, ok)
	}
	if v, ok := set.Metric("github.com/jitgate/jitgate/broker/identity", "VerifyRS256/verifier", "ns/op"); !ok || v != 52000 {
		t.Errorf("verifier ns/op = %v, %v", v, ok)
	}
	if _, ok := set.Metric(mask, "Detectors/credit_card/scanner", "furlongs"); ok {
		t.Error("an unreported unit must not be found")
	}
	if _, ok := set.Metric(mask, "NoSuchBenchmark", "ns/op"); ok {
		t.Error("a benchmark that did not run must not be found")
	}
	if got := len(set.Keys()); got != 5 {
		t.Errorf("distinct benchmarks = %d, want 5", got)
	}
}

func TestParseGoBenchRefusesMalformedResults(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"BenchmarkX-2 100 abc ns/op\n",
		"BenchmarkX-2 100 12 MB/s\n", // a result without ns/op
	} {
		if _, err := harness.ParseGoBench(strings.NewReader(in)); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

func FuzzParseGoBench(f *testing.F) {
	f.Add(readTestdata(f, "gobench.txt"))
	f.Add([]byte("BenchmarkX-2 1 1 ns/op\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, err := harness.ParseGoBench(strings.NewReader(string(in)))
		if err != nil {
			return
		}
		for _, r := range rs {
			if _, ok := r.Metrics["ns/op"]; !ok || r.Name == "" || r.N < 0 {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

func TestStats(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"median odd", harness.Median([]float64{3, 1, 2}), 2},
		{"median even", harness.Median([]float64{4, 1, 3, 2}), 2.5},
		{"median one", harness.Median([]float64{7}), 7},
		{"median none", harness.Median(nil), nan},
		{"p95 of 1..20 is the 19th", harness.Percentile(seq(20), 95), 19},
		{"p50 of 1..20 is the 10th", harness.Percentile(seq(20), 50), 10},
		{"p100 is the max", harness.Percentile(seq(20), 100), 20},
		{"p95 of one", harness.Percentile([]float64{5}, 95), 5},
		{"p0 is undefined", harness.Percentile(seq(3), 0), nan},
		{"p of none", harness.Percentile(nil, 50), nan},
		{"paired ratio", harness.PairedRatio([]float64{10, 20, 30}, []float64{10, 10, 10}), 2},
		{"paired ratio skips failed rounds", harness.PairedRatio([]float64{nan, 8, 9}, []float64{10, 10, 0}), 0.8},
		{"paired ratio of nothing", harness.PairedRatio([]float64{nan}, []float64{1}), nan},
	} {
		if !(c.got == c.want || math.IsNaN(c.got) && math.IsNaN(c.want)) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	in := []float64{3, 1, 2}
	harness.Median(in)
	if in[0] != 3 || in[1] != 1 {
		t.Error("Median sorted its input in place")
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(n - i) // descending: the functions must sort
	}
	return out
}
