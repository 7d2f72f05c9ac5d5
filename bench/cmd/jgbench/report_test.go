package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/bench/harness"
)

// fakeResults is a run whose ratios are known: jitgate is 0.95× the relay and
// 1.1× pgbouncer in every round but the tpcb/8 one, where it is 0.5× pgbouncer.
func fakeResults() *results {
	cfg := &config{rounds: 2, duration: 10 * time.Second, scale: 10, clients: []int{1, 8}, scripts: scripts[:2]}
	m := &pgMatrix{rounds: 2, paths: allPaths, runs: map[pgConfig]map[string][]pgRun{}, commands: map[pgConfig]map[string]string{}}
	for _, sc := range cfg.scripts {
		for _, n := range cfg.clients {
			c := pgConfig{sc.key, n}
			m.configs = append(m.configs, c)
			m.runs[c] = map[string][]pgRun{}
			m.commands[c] = map[string]string{}
			bouncer := 1000.0
			if sc.key == "tpcb" && n == 8 {
				bouncer = 2090
			}
			for p, tps := range map[string]float64{pathDirect: 2000, pathRelay: 1100, pathPgbouncer: bouncer, pathJitgate: 1045} {
				for range 2 {
					m.runs[c][p] = append(m.runs[c][p], pgRun{result: harness.PgbenchResult{TPS: tps, LatencyMs: 1, Transactions: 10}})
				}
				m.commands[c][p] = "pgbench " + p
			}
		}
	}
	// One failed round of the relay: left out, not counted as zero.
	c0 := m.configs[0]
	m.runs[c0][pathRelay][1] = pgRun{err: errors.New("exit status 1: connection refused")}
	return &results{
		cfg: cfg, matrix: m, versions: map[string]string{"pgbouncer": "PgBouncer 1.18.0"},
		mach: &machine{started: time.Unix(0, 0), finished: time.Unix(60, 0), nproc: 2, cpu: "test", loads: []phaseLoad{{"start", "9.1 8 7"}}},
		exec: &execResult{jitgateMs: []float64{250, 260, 270}, psqlMs: []float64{100, 100, 100}, jitgateCmd: "jitgate exec", psqlCmd: "psql -c",
			stages: map[string][]float64{"policy": {1, 1, 1}, "credential": {40, 40, 40}}, stageOrder: []string{"policy", "credential"},
			spanMs: []float64{190, 200, 210}},
		recordings: map[string]recordingRow{"select-only (-S)": {bytes: 3100, raw: 42100, statements: 100, events: 400}},
	}
}

func line(t *testing.T, report, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no line starting with %q in:\n%s", prefix, report)
	return ""
}

func TestReportTargets(t *testing.T) {
	t.Parallel()
	out := renderReport(fakeResults())
	bouncer := line(t, out, "| session proxy TPS ≥ 1× pgbouncer")
	if !strings.Contains(bouncer, "worst 0.50× (tpcb-like (default) c=8)") || !strings.Contains(bouncer, "**missed**") {
		t.Errorf("pgbouncer target: %s", bouncer)
	}
	relay := line(t, out, "| session proxy TPS ≥ 0.9× the plain relay")
	if !strings.Contains(relay, "worst 0.95×") || !strings.Contains(relay, "**met**") {
		t.Errorf("relay target: %s", relay)
	}
	exec := line(t, out, "| exec mode p50 ≤ 3×")
	if !strings.Contains(exec, "2.60×") || !strings.Contains(exec, "**met**") {
		t.Errorf("exec target: %s", exec)
	}
	if l := line(t, out, "| masking, card MB/s, RS256"); !strings.Contains(l, "not measured") {
		t.Errorf("Go benchmark targets without Go benchmarks: %s", l)
	}
	// The relay's failed round is shown as failed and named, not averaged in.
	row := line(t, out, "| select-only (-S) | 1 | relay |")
	if !strings.Contains(row, "| 1100 | 1100, failed |") {
		t.Errorf("relay row with a failed round: %s", row)
	}
	if !strings.Contains(out, "relay round 2: exit status 1: connection refused") {
		t.Error("the failed run is not listed")
	}
	if l := line(t, out, "| select-only (-S) | 100 |"); !strings.Contains(l, "| 31 | 421 | 13.58× | 4.0 |") {
		t.Errorf("recording row: %s", l)
	}
	if l := line(t, out, "| rest inside the broker"); !strings.Contains(l, "| 159 |") {
		t.Errorf("unstaged rest inside the broker: %s", l)
	}
	if l := line(t, out, "| rest outside it"); !strings.Contains(l, "| 60.0 |") || !strings.Contains(l, "| 23% |") {
		t.Errorf("rest outside the broker: %s", l)
	}
}

func TestReportGoBenchTargets(t *testing.T) {
	t.Parallel()
	r := fakeResults()
	in := `pkg: github.com/jitgate/jitgate/ephemeral/mask
BenchmarkDetectors/credit_card/scanner-2 10 1 ns/op 350.0 MB/s
BenchmarkDetectors/credit_card/regexp-2 10 1 ns/op 25.0 MB/s
BenchmarkDetectors/email/scanner-2 10 1 ns/op 900.0 MB/s
BenchmarkDetectors/email/regexp-2 10 1 ns/op 100.0 MB/s
pkg: github.com/jitgate/jitgate/broker/identity
BenchmarkVerifyRS256/verifier-2 10 61000 ns/op
BenchmarkVerifyRS256/go-jose-baseline-2 10 50000 ns/op
`
	rs, err := harness.ParseGoBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r.gobench = &goBenchResult{command: "go test -bench .", set: harness.NewGoBenchSet(rs)}
	out := renderReport(r)
	if l := line(t, out, "| masking ≥ 10× Go regexp"); !strings.Contains(l, "worst 9.00× (email)") || !strings.Contains(l, "**missed**") {
		t.Errorf("masking target: %s", l)
	}
	if l := line(t, out, "| card detector ≥ 300 MB/s"); !strings.Contains(l, "350 MB/s") || !strings.Contains(l, "**met**") {
		t.Errorf("card target: %s", l)
	}
	if l := line(t, out, "| RS256 verification ≤ 60 µs/op"); !strings.Contains(l, "61.0 µs") || !strings.Contains(l, "**missed**") {
		t.Errorf("RS256 target: %s", l)
	}
	if l := line(t, out, "| RS256 |"); !strings.Contains(l, "1.22×") {
		t.Errorf("RS256 row: %s", l)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args    []string
		wantErr string
		check   func(*config) bool
	}{
		{args: nil, wantErr: "-jitgate BIN is required"},
		{args: []string{"-jitgate", "x", "-clients", "1,zero"}, wantErr: "-clients"},
		{args: []string{"-jitgate", "x", "-skip", "pgpool"}, wantErr: "unknown path"},
		{args: []string{"-jitgate", "x", "-scripts", "select,ycsb"}, wantErr: "unknown workload"},
		{args: []string{"-jitgate", "x", "-rounds", "0"}, wantErr: "-rounds"},
		{args: []string{"-jitgate", "x"}, check: func(c *config) bool {
			return c.rounds == 3 && c.duration == 8*time.Second && len(c.clients) == 2 && c.profile && c.benchCnt == 3 &&
				len(c.scripts) == 2 && c.scripts[0].key == "select" && c.scripts[1].key == "tpcb"
		}},
		{args: []string{"-jitgate", "x", "-quick"}, check: func(c *config) bool {
			return c.rounds == 1 && c.duration == 3*time.Second && !c.profile && c.benchCnt == 1
		}},
		{args: []string{"-jitgate", "x", "-quick", "-rounds", "2", "-skip", "pgbouncer"}, check: func(c *config) bool {
			return c.rounds == 2 && c.skipPaths[pathPgbouncer]
		}},
	} {
		cfg, err := parseFlags(c.args)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: err = %v, want %q", c.args, err, c.wantErr)
			}
			continue
		}
		if err != nil || !c.check(cfg) {
			t.Errorf("%v: %+v, %v", c.args, cfg, err)
		}
	}
}

func TestSummariseProfile(t *testing.T) {
	t.Parallel()
	table := `    15.47%     0.10%  [.] github.com/jitgate/jitgate/ephemeral/guard.(*Session).Check
    11.56%     0.00%  [.] github.com/pganalyze/pg_query_go/v6.Parse
     5.01%     0.13%  [.] github.com/jitgate/jitgate/ephemeral/record.(*Recorder).Write
     4.55%     0.23%  [.] github.com/jitgate/jitgate/ephemeral/record.(*Recorder).writeLocked`
	got := strings.Join(summarise(table), "; ")
	want := "guard verdicts 15.47%; pg_query parsing (guard and masking lineage together) 11.56%; recording 5.01%"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
