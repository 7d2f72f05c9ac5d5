package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jitgate/jitgate/bench/harness"
	"github.com/jitgate/jitgate/broker/audit"
)

// The paths a pgbench run can take to PostgreSQL.
const (
	pathDirect    = "direct"
	pathRelay     = "relay"
	pathPgbouncer = "pgbouncer"
	pathJitgate   = "jitgate"
)

var allPaths = []string{pathDirect, pathRelay, pathPgbouncer, pathJitgate}

func validPath(p string) bool {
	for _, q := range allPaths {
		if p == q {
			return true
		}
	}
	return false
}

// script is a pgbench workload.
type script struct {
	key   string   // as named by -scripts
	name  string   // as shown in the report
	flags []string // the pgbench flags choosing it (none for the default script)
}

// scripts are the workloads -scripts can pick from; the first two are the default.
var scripts = []script{
	{"select", "select-only (-S)", []string{"-S"}},
	{"tpcb", "tpcb-like (default)", nil},
	// Extended protocol with prepared statements: the statement text repeats,
	// so the guard's and the masker's caches hit; the relay cost shows alone.
	{"select-prepared", "select-only prepared (-S -M prepared)", []string{"-S", "-M", "prepared"}},
}

func scriptByKey(k string) (script, bool) {
	for _, s := range scripts {
		if s.key == k {
			return s, true
		}
	}
	return script{}, false
}

// pgConfig is one cell of the matrix: a script (by key) and a client count.
type pgConfig struct {
	key     string
	clients int
}

func (c pgConfig) script() script {
	s, _ := scriptByKey(c.key)
	return s
}

// pgRun is one pgbench run of one path.
type pgRun struct {
	result  harness.PgbenchResult
	err     error
	grantID string // jitgate path only
	rec     *harness.RecordingSize
	// settle is how long after the session ended the broker took to write the
	// grant's last audit event (session.ended): the per-statement
	// command.allowed events are appended after the client has gone.
	settle time.Duration
	// settleErr says the broker did not finish within settleTimeout.
	settleErr error
}

// settleTimeout bounds the wait for a session's audit backlog.
const settleTimeout = 5 * time.Minute

// pgMatrix holds every run: runs[config][path][round].
type pgMatrix struct {
	configs  []pgConfig
	paths    []string
	rounds   int
	runs     map[pgConfig]map[string][]pgRun
	commands map[pgConfig]map[string]string
}

func (m *pgMatrix) tps(c pgConfig, path string) []float64 {
	var out []float64
	for _, r := range m.runs[c][path] {
		if r.err != nil {
			out = append(out, math.NaN())
			continue
		}
		out = append(out, r.result.TPS)
	}
	return out
}

func (m *pgMatrix) latency(c pgConfig, path string) []float64 {
	var out []float64
	for _, r := range m.runs[c][path] {
		if r.err == nil {
			out = append(out, r.result.LatencyMs)
		}
	}
	return out
}

// pgbenchArgs are the flags shared by every path (connection flags aside).
func pgbenchArgs(c pgConfig, d time.Duration) []string {
	threads := min(c.clients, 2)
	args := []string{"-n"}
	args = append(args, c.script().flags...)
	return append(args, "-c", strconv.Itoa(c.clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(int(d.Seconds())))
}

var sessionLine = regexp.MustCompile(`session (\S+) open at`)

// pgbenchCommand builds the command for one path. display is what the report
// shows: the real command with the password left out.
func (s *stack) pgbenchCommand(ctx context.Context, bin string, path string, c pgConfig, d time.Duration) (cmd *exec.Cmd, display string) {
	base := pgbenchArgs(c, d)
	hostArgs := func(addr string) []string {
		h, p, _ := net.SplitHostPort(addr)
		return []string{"-h", h, "-p", p, "-U", staticUser}
	}
	static := cleanEnv("PGPASSWORD="+s.staticPW, "PGSSLMODE=disable")
	switch path {
	case pathDirect, pathRelay, pathPgbouncer:
		addr := map[string]string{pathDirect: s.pg.Addr(), pathRelay: s.relayAddr, pathPgbouncer: s.bouncer}[path]
		args := append(append(append([]string{}, base...), hostArgs(addr)...), benchDB)
		cmd = exec.CommandContext(ctx, "pgbench", args...)
		cmd.Env = static
		return cmd, "PGPASSWORD=… pgbench " + strings.Join(args, " ")
	case pathJitgate:
		self, _ := os.Executable()
		args := []string{"connect", "--target", targetName, "--access", "write", "--ttl", "20m", "--", self, "conn-limit", "-limit", "16", "--", "pgbench"}
		args = append(args, base...)
		cmd = exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(s.jitgateEnv(), adminDSNEnv+"="+s.pg.AdminDSN(benchDB))
		shown := append([]string{"connect", "--target", targetName, "--access", "write", "--ttl", "20m", "--", "jgbench", "conn-limit", "-limit", "16", "--", "pgbench"}, base...)
		return cmd, "jitgate " + strings.Join(shown, " ")
	}
	panic("unknown path " + path)
}

// runMatrix runs every configuration rounds times through every path. Within a
// round the paths of one configuration run back to back, in an order that
// rotates with the round, so slow drifts in the machine's load hit each path
// alike.
func runMatrix(ctx context.Context, cfg *config, s *stack, rawDir string) (*pgMatrix, error) {
	m := &pgMatrix{rounds: cfg.rounds, runs: map[pgConfig]map[string][]pgRun{}, commands: map[pgConfig]map[string]string{}}
	for _, p := range allPaths {
		if !cfg.skipPaths[p] {
			m.paths = append(m.paths, p)
		}
	}
	for _, sc := range cfg.scripts {
		for _, n := range cfg.clients {
			c := pgConfig{sc.key, n}
			m.configs = append(m.configs, c)
			m.runs[c] = map[string][]pgRun{}
			m.commands[c] = map[string]string{}
		}
	}
	total := len(m.configs) * len(m.paths) * cfg.rounds
	done := 0
	for round := 0; round < cfg.rounds; round++ {
		for ci, c := range m.configs {
			for k := range m.paths {
				path := m.paths[(k+round+ci)%len(m.paths)]
				if err := ctx.Err(); err != nil {
					return m, err
				}
				done++
				s.log.Info("pgbench", "run", fmt.Sprintf("%d/%d", done, total), "round", round+1, "script", c.script().name, "clients", c.clients, "path", path)
				run := s.runPgbench(ctx, cfg, path, c, m, rawDir, round)
				if run.err != nil {
					s.log.Warn("pgbench run failed", "path", path, "err", run.err)
				}
				m.runs[c][path] = append(m.runs[c][path], run)
			}
		}
	}
	return m, nil
}

func (s *stack) runPgbench(ctx context.Context, cfg *config, path string, c pgConfig, m *pgMatrix, rawDir string, round int) pgRun {
	rctx, cancel := context.WithTimeout(ctx, cfg.duration+2*time.Minute)
	defer cancel()
	if path == pathJitgate {
		if err := s.refreshToken(rctx); err != nil {
			return pgRun{err: err}
		}
	}
	cmd, display := s.pgbenchCommand(rctx, cfg.jitgate, path, c, cfg.duration)
	m.commands[c][path] = display
	out, err := cmd.CombinedOutput()
	name := fmt.Sprintf("pgbench-%s-c%d-%s-r%d.txt", c.key, c.clients, path, round+1)
	_ = os.WriteFile(filepath.Join(rawDir, name), append([]byte(display+"\n\n"), out...), 0o644)
	run := pgRun{}
	if mm := sessionLine.FindSubmatch(out); mm != nil {
		run.grantID = string(mm[1])
	}
	res, perr := harness.ParsePgbench(out)
	switch {
	case err != nil:
		run.err = fmt.Errorf("%v: %s", err, lastLines(out, 3))
	case perr != nil:
		run.err = fmt.Errorf("%v: %s", perr, lastLines(out, 3))
	default:
		run.result = res
	}
	if run.grantID != "" {
		// Nothing else may run while the broker still appends this session's
		// audit events: it would load the machine under the next path.
		t0 := time.Now()
		run.settleErr = s.waitSessionEnded(ctx, run.grantID, settleTimeout)
		run.settle = time.Since(t0)
		if run.settleErr != nil {
			s.log.Warn("audit backlog", "grant", run.grantID, "err", run.settleErr)
		} else {
			s.log.Info("audit backlog written", "grant", run.grantID, "took", run.settle.Round(time.Millisecond))
		}
		// Measure the recording now and remove it: a full run writes gigabytes.
		p := filepath.Join(s.dataDir, "recordings", run.grantID+".jgr")
		if rs, err := harness.MeasureRecording(p); err == nil {
			run.rec = &rs
		} else {
			s.log.Warn("recording", "grant", run.grantID, "err", err)
		}
		_ = os.Remove(p)
	}
	return run
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// recordingStats sums the recordings of the jitgate runs, per script, with
// the audit backlog each session left behind.
func recordingStats(m *pgMatrix) map[string]recordingRow {
	out := map[string]recordingRow{}
	for _, c := range m.configs {
		for _, r := range m.runs[c][pathJitgate] {
			if r.rec == nil || r.err != nil {
				continue
			}
			t := out[c.script().name]
			t.bytes += r.rec.Bytes
			t.raw += r.rec.RawBytes
			t.statements += r.rec.Statements
			t.events += r.rec.Events
			if r.settleErr == nil {
				t.settleSec = append(t.settleSec, r.settle.Seconds())
				t.settleTotal += r.settle
				t.settleStatements += r.rec.Statements
			} else {
				t.settleFailed++
			}
			out[c.script().name] = t
		}
	}
	return out
}

// waitSessionEnded polls the tail of the audit log until the grant's
// session.ended event is there.
func (s *stack) waitSessionEnded(ctx context.Context, grantID string, within time.Duration) error {
	path := filepath.Join(s.dataDir, "audit.jsonl")
	deadline := time.Now().Add(within)
	for {
		evs, err := harness.TailEvents(path, 256<<10)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.GrantID == grantID && ev.Type == audit.SessionEnded {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no session.ended audit event for %s within %s", grantID, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
