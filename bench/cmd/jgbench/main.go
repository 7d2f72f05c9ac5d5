// Command jgbench is `make bench` (issue #9): it measures jitgate side by side
// with what a user would pick instead, in one run on one machine, and writes
// bench/RESULTS.md. It sits outside the request flow and drives it from the
// outside, like a user: a throw-away PostgreSQL (test/pgtest), pgbench and psql,
// pgbouncer, a plain io.Copy relay (bench/harness), and the real jitgate binary
// (`jitgate dev`, `connect`, `exec`, the HTTP API).
//
// Phases, in order:
//
//  1. pgbench -S and the TPC-B-like script, 1 and 8 clients, rounds × duration,
//     through: direct, relay, pgbouncer (session mode, SCRAM), and jitgate's
//     session proxy (guard, mask, record on). The paths of one configuration run
//     back to back in a rotating order, so each round pairs them under the same
//     load; ratios are medians of those per-round ratios.
//  2. Recording size per statement of the jitgate runs (raw and gzip).
//  3. Exec mode end to end (`jitgate exec`) vs `psql -c` with a static
//     password, interleaved; p50/p95; per-stage timings from the audit log.
//  4. Grant issuance throughput via POST /v1/grants (auto-approved, no launch),
//     next to GET /healthz on the same server as the HTTP floor.
//  5. Optionally a CPU profile (perf) of a live proxy process under pgbench.
//  6. The Go benchmarks of the hot paths, as ratios to their in-run baselines.
//
// Usage (scripts/bench.sh builds both binaries and passes the flags):
//
//	jgbench -jitgate /tmp/x/jitgate -repo . -out bench/RESULTS.md [-quick]
//
// `jgbench relay -upstream HOST:PORT` is the relay process it starts for itself;
// `jgbench conn-limit -- pgbench ...` is the wrapper it runs under `jitgate
// connect` (see runConnLimit).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jitgate/jitgate/bench/harness"
)

type config struct {
	jitgate   string
	repo      string
	out       string
	workDir   string
	keep      bool
	quick     bool
	rounds    int
	duration  time.Duration
	clients   []int
	scripts   []script
	scale     int
	execRuns  int
	grants    int
	grantConc int
	goBench   bool
	benchTime string
	benchCnt  int
	profile   bool
	skipPaths map[string]bool
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "relay":
			os.Exit(runRelay(os.Args[2:]))
		case "conn-limit":
			os.Exit(runConnLimit(os.Args[2:]))
		}
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "jgbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "jgbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("jgbench", flag.ContinueOnError)
	c := &config{}
	var clients, skip, scriptKeys string
	fs.StringVar(&c.jitgate, "jitgate", "", "the jitgate binary to measure (required)")
	fs.StringVar(&c.repo, "repo", ".", "the repository root (for go test -bench)")
	fs.StringVar(&c.out, "out", "bench/RESULTS.md", "where to write the report")
	fs.StringVar(&c.workDir, "work", "", "scratch directory (default: a new temp dir, removed at the end)")
	fs.BoolVar(&c.keep, "keep", false, "keep the scratch directory (logs, recordings, raw outputs)")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: 1 round of 3s, few exec runs and grants, short Go benchmarks")
	fs.IntVar(&c.rounds, "rounds", 3, "pgbench rounds per configuration")
	fs.DurationVar(&c.duration, "duration", 8*time.Second, "pgbench -T per run")
	fs.StringVar(&clients, "clients", "1,8", "pgbench client counts")
	fs.StringVar(&scriptKeys, "scripts", "select,tpcb", "pgbench workloads: select (-S), tpcb (default script), select-prepared (-S -M prepared)")
	fs.IntVar(&c.scale, "scale", 10, "pgbench scale factor")
	fs.IntVar(&c.execRuns, "exec-runs", 40, "timed runs of jitgate exec and of psql -c each")
	fs.IntVar(&c.grants, "grants", 2000, "grants to issue for the throughput measurement")
	fs.IntVar(&c.grantConc, "grant-concurrency", 16, "parallel POST /v1/grants")
	fs.BoolVar(&c.goBench, "gobench", true, "run the Go benchmarks of the hot paths")
	fs.StringVar(&c.benchTime, "benchtime", "500ms", "go test -benchtime")
	fs.IntVar(&c.benchCnt, "benchcount", 3, "go test -count (medians are reported)")
	fs.BoolVar(&c.profile, "profile", true, "take a perf CPU profile of a live proxy under pgbench -S -c 8 (needs perf)")
	fs.StringVar(&skip, "skip", "", "comma-separated paths to leave out: direct, relay, pgbouncer, jitgate")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("rounds", func() { c.rounds = 1 })
		def("duration", func() { c.duration = 3 * time.Second })
		def("exec-runs", func() { c.execRuns = 8 })
		def("grants", func() { c.grants = 300 })
		def("benchtime", func() { c.benchTime = "100ms" })
		def("benchcount", func() { c.benchCnt = 1 })
		def("scale", func() { c.scale = 2 })
		def("profile", func() { c.profile = false })
	}
	if c.jitgate == "" {
		return nil, errors.New("-jitgate BIN is required (scripts/bench.sh builds it)")
	}
	abs, err := filepath.Abs(c.jitgate)
	if err != nil {
		return nil, err
	}
	c.jitgate = abs
	for _, s := range strings.Split(clients, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "%d", &n); err != nil || n < 1 {
			return nil, fmt.Errorf("-clients %q: want positive integers", clients)
		}
		c.clients = append(c.clients, n)
	}
	for _, k := range strings.Split(scriptKeys, ",") {
		sc, ok := scriptByKey(strings.TrimSpace(k))
		if !ok {
			return nil, fmt.Errorf("-scripts %q: unknown workload %q (want select, tpcb, select-prepared)", scriptKeys, k)
		}
		c.scripts = append(c.scripts, sc)
	}
	c.skipPaths = map[string]bool{}
	for _, s := range strings.Split(skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !validPath(s) {
				return nil, fmt.Errorf("-skip %q: unknown path (want direct, relay, pgbouncer, jitgate)", s)
			}
			c.skipPaths[s] = true
		}
	}
	switch {
	case c.rounds < 1:
		return nil, errors.New("-rounds must be at least 1")
	case c.duration < time.Second:
		return nil, errors.New("-duration must be at least 1s")
	case c.execRuns < 1 || c.grants < 1 || c.grantConc < 1:
		return nil, errors.New("-exec-runs, -grants and -grant-concurrency must be positive")
	}
	return c, nil
}

// runRelay is the relay child process: it prints its address, then relays until
// stdin closes (the parent died or stopped it) or a signal arrives.
func runRelay(args []string) int {
	fs := flag.NewFlagSet("jgbench relay", flag.ContinueOnError)
	up := fs.String("upstream", "", "host:port to relay to")
	if err := fs.Parse(args); err != nil || *up == "" {
		fmt.Fprintln(os.Stderr, "jgbench relay: -upstream HOST:PORT is required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "jgbench relay:", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	if err := (&harness.Relay{Upstream: *up}).Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "jgbench relay:", err)
		return 1
	}
	return 0
}
