package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// profileResult is a system-wide perf profile taken while pgbench -S -c 8 ran
// through a live jitgate session proxy.
type profileResult struct {
	command   string
	proxyPID  int
	byProcess string // perf report --sort comm
	inclusive string // the proxy's own functions and pg_query, with callees
	self      string // the proxy's hottest symbols, self time
	summary   []string
	err       string
}

// profileParts are the functions whose inclusive share the summary names.
var profileParts = []struct{ label, sym string }{
	{"guard verdicts", "ephemeral/guard.(*Session).Check"},
	{"pg_query parsing (guard and masking lineage together)", "pg_query_go/v6.Parse"},
	{"pg_query normalizing (the guard's shape key)", "pg_query_go/v6.Normalize"},
	{"masking lineage (plan per statement)", "ephemeral/engine/postgres.(*conn).planFor"},
	{"recording", "ephemeral/record.(*Recorder).Write"},
	{"socket writes (flush)", "ephemeral/engine/postgres.(*msgWriter).flush"},
	{"message reads", "ephemeral/engine/postgres.(*msgReader).next"},
	{"garbage collection", "runtime.gcBgMarkWorker"},
}

// summarise picks the inclusive share of each profile part from perf's
// --children table ("  12.3%  0.1%  [.] symbol").
func summarise(table string) []string {
	var out []string
	for _, p := range profileParts {
		for _, l := range strings.Split(table, "\n") {
			f := strings.Fields(l)
			if len(f) >= 4 && strings.HasSuffix(f[len(f)-1], p.sym) {
				out = append(out, fmt.Sprintf("%s %s", p.label, f[0]))
				break
			}
		}
	}
	return out
}

// runProfile needs perf; cmd/jitgate has no flag or variable to make the proxy
// write a Go CPU profile itself, so perf samples the real process from outside
// (Go binaries carry frame pointers and symbols).
func runProfile(ctx context.Context, cfg *config, s *stack, rawDir string) *profileResult {
	r := &profileResult{}
	perf, err := exec.LookPath("perf")
	if err != nil {
		r.err = "perf is not installed (apt-get install linux-perf); no profile taken"
		return r
	}
	d := max(cfg.duration, 10*time.Second) + 4*time.Second
	c := pgConfig{"select", 8}
	if err := s.refreshToken(ctx); err != nil {
		r.err = err.Error()
		return r
	}
	cctx, cancel := context.WithTimeout(ctx, d+2*time.Minute)
	defer cancel()
	cmd, display := s.pgbenchCommand(cctx, cfg.jitgate, pathJitgate, c, d)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.err = err.Error()
		return r
	}
	defer func() { _ = cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for r.proxyPID == 0 && time.Now().Before(deadline) {
		r.proxyPID = findProxy(s.devPID)
		time.Sleep(100 * time.Millisecond)
	}
	if r.proxyPID == 0 {
		r.err = "could not find the proxy process (a child of jitgate dev running __proxy)"
		return r
	}
	time.Sleep(2 * time.Second) // let pgbench connect and warm up
	data := filepath.Join(rawDir, "perf.data")
	secs := int((d - 4*time.Second).Seconds())
	rec := exec.CommandContext(ctx, perf, "record", "-a", "-g", "-F", "499", "-o", data, "--", "sleep", strconv.Itoa(secs))
	if b, err := rec.CombinedOutput(); err != nil {
		r.err = fmt.Sprintf("perf record: %v: %s", err, lastLines(b, 3))
		return r
	}
	r.command = fmt.Sprintf("perf record -a -g -F 499 -- sleep %d   # while: %s", secs, display)
	report := func(filter func(string) bool, n int, args ...string) string {
		a := append([]string{"report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0"}, args...)
		b, err := exec.CommandContext(ctx, perf, a...).Output()
		if err != nil {
			return fmt.Sprintf("perf report %s: %v", strings.Join(args, " "), err)
		}
		return trimPerf(string(b), filter, n)
	}
	pid := strconv.Itoa(r.proxyPID)
	r.byProcess = report(nil, 12, "--no-children", "--sort", "comm")
	r.inclusive = report(func(l string) bool {
		return strings.Contains(l, "jitgate/jitgate/") || strings.Contains(l, "pg_query_go/v6.Parse") || strings.Contains(l, "runtime.gcBgMarkWorker ") ||
			strings.HasSuffix(l, "runtime.gcBgMarkWorker")
	}, 30, "--children", "--pid", pid, "--percentage", "relative", "--sort", "sym")
	r.summary = summarise(r.inclusive)
	r.self = report(nil, 25, "--no-children", "--pid", pid, "--percentage", "relative", "--sort", "sym")
	_ = os.WriteFile(filepath.Join(rawDir, "perf-report.txt"), []byte(r.byProcess+"\n\n"+r.inclusive+"\n\n"+r.self), 0o644)
	return r
}

// findProxy returns the pid of a child of parent whose command line is the
// hidden proxy entry point, or 0.
func findProxy(parent int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cl, []byte("__proxy")) && servesGrant(pid) {
			return pid
		}
	}
	return 0
}

// servesGrant: the proxy has a recording open, so it is not the spare the
// broker keeps waiting for a spec.
func servesGrant(pid int) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasSuffix(t, ".jgr") {
			return true
		}
	}
	return false
}

// trimPerf keeps perf's table lines (no comments, no blanks) that pass filter
// (nil keeps all), at most n.
func trimPerf(s string, filter func(string) bool, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, " ")
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if filter != nil && !filter(l) {
			continue
		}
		keep = append(keep, l)
		if len(keep) == n {
			break
		}
	}
	return strings.Join(keep, "\n")
}
