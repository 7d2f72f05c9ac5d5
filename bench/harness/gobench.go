package harness

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// GoBench is one result line of `go test -bench`.
type GoBench struct {
	// Pkg is the import path from the preceding "pkg:" line ("" if none).
	Pkg string
	// Name is the benchmark name without the "Benchmark" prefix and without the
	// -GOMAXPROCS suffix, e.g. "Detectors/credit_card/scanner".
	Name  string
	Procs int
	N     int64
	// Metrics maps unit to value: "ns/op", "MB/s", "B/op", "allocs/op" and any
	// custom b.ReportMetric unit.
	Metrics map[string]float64
}

var procsSuffix = regexp.MustCompile(`-(\d+)$`)

// ParseGoBench reads the benchmark lines of `go test -bench` output, in the
// format golang.org/design/14313-benchmark-format describes. Lines that are not
// benchmark results (PASS, ok, goos, logs) are skipped; a line that starts like
// a result but is malformed is an error.
func ParseGoBench(r io.Reader) ([]GoBench, error) {
	var out []GoBench
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		// A name alone on a line is printed before a sub-benchmark's logs; the
		// numbers then follow on a later line that repeats the name.
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue // "BenchmarkX   some log text" is not a result
		}
		b := GoBench{Pkg: pkg, Name: strings.TrimPrefix(f[0], "Benchmark"), Procs: 1, N: n, Metrics: map[string]float64{}}
		if m := procsSuffix.FindStringSubmatch(b.Name); m != nil {
			b.Procs, _ = strconv.Atoi(m[1])
			b.Name = strings.TrimSuffix(b.Name, m[0])
		}
		if b.Name == "" || n < 0 {
			continue
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return out, fmt.Errorf("harness: go bench line %q: value %q: %w", line, f[i], err)
			}
			b.Metrics[f[i+1]] = v
		}
		if _, ok := b.Metrics["ns/op"]; !ok {
			return out, fmt.Errorf("harness: go bench line %q: no ns/op", line)
		}
		out = append(out, b)
	}
	return out, sc.Err()
}

// GoBenchSet is a parsed run, with repeated counts (-count N) of one benchmark
// folded into their median.
type GoBenchSet struct {
	byKey map[string][]GoBench
	order []string
}

// NewGoBenchSet indexes results by "pkg.Name" and by Name alone.
func NewGoBenchSet(rs []GoBench) *GoBenchSet {
	s := &GoBenchSet{byKey: map[string][]GoBench{}}
	for _, r := range rs {
		k := r.Pkg + "." + r.Name
		if _, ok := s.byKey[k]; !ok {
			s.order = append(s.order, k)
		}
		s.byKey[k] = append(s.byKey[k], r)
	}
	return s
}

// Metric is the median of unit over every count of the benchmark pkg.Name; ok is
// false when it did not run or did not report unit.
func (s *GoBenchSet) Metric(pkg, name, unit string) (float64, bool) {
	var vs []float64
	for _, r := range s.byKey[pkg+"."+name] {
		if v, ok := r.Metrics[unit]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	return Median(vs), true
}

// Keys lists "pkg.Name" in first-seen order.
func (s *GoBenchSet) Keys() []string { return append([]string(nil), s.order...) }

// Runs returns every count of pkg.Name.
func (s *GoBenchSet) Runs(key string) []GoBench { return s.byKey[key] }
