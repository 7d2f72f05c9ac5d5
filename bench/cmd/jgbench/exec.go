package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitgate/jitgate/bench/harness"
)

// execResult compares `jitgate exec` with `psql -c` and breaks jitgate's time
// into the stages the broker audits.
type execResult struct {
	jitgateMs, psqlMs   []float64
	jitgateCmd, psqlCmd string
	// apiMs is the same grant driven over the HTTP API from this process (no
	// CLI process start); helpMs is `jitgate --help`, the CLI's start floor.
	apiMs, helpMs   []float64
	apiCmd, helpCmd string
	// spanMs is each grant's broker span: first to last audit event.
	spanMs     []float64
	stages     map[string][]float64 // stage → per-grant ms
	stageOrder []string
	errors     []string
}

// runExec times runs of each, interleaved (jitgate, psql, jitgate, ...) after
// a few untimed warm-up runs of each.
func runExec(ctx context.Context, cfg *config, s *stack) (*execResult, error) {
	r := &execResult{stages: map[string][]float64{}}
	if err := s.refreshToken(ctx); err != nil {
		return r, err
	}
	jargs := []string{"exec", "--target", targetName, "--sql", execSQL, "--format", "json", "-q"}
	pargs := []string{"-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", fmt.Sprint(s.pg.Port), "-U", staticUser, "-d", benchDB, "-c", execSQL}
	r.jitgateCmd = "jitgate " + shellJoin(jargs)
	r.psqlCmd = "PGPASSWORD=… psql " + shellJoin(pargs)
	r.helpCmd = "jitgate --help"
	r.apiCmd = fmt.Sprintf("POST %s/v1/grants {exec, same SQL} then POST /v1/grants/{id}/run (Go net/http, keep-alive)", s.broker)
	api := &http.Client{Timeout: time.Minute}
	defer api.CloseIdleConnections()
	apiOne := func() (float64, error) {
		t0 := time.Now()
		var g struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if err := s.apiJSON(ctx, api, "POST", "/v1/grants", map[string]string{"target": targetName, "mode": "exec", "sql": execSQL}, &g); err != nil {
			return 0, err
		}
		if g.State != "approved" {
			return 0, fmt.Errorf("api exec: grant %s is %s", g.ID, g.State)
		}
		var res json.RawMessage
		if err := s.apiJSON(ctx, api, "POST", "/v1/grants/"+g.ID+"/run", nil, &res); err != nil {
			return 0, err
		}
		el := time.Since(t0)
		if !strings.Contains(string(res), "Lovelace") || strings.Contains(string(res), "ada@example.com") {
			return 0, fmt.Errorf("api exec: result without rows or unmasked: %.200s", res)
		}
		return float64(el.Microseconds()) / 1000, nil
	}
	helpOne := func() (float64, error) {
		cmd := exec.CommandContext(ctx, cfg.jitgate, "--help")
		cmd.Env = cleanEnv()
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("jitgate --help: %v", err)
		}
		return float64(time.Since(t0).Microseconds()) / 1000, nil
	}
	timeOne := func(name string, args []string, env []string) (float64, error) {
		c, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(c, name, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		err := cmd.Run()
		el := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("%s: %v: %s", name, err, lastLines(out.Bytes(), 3))
		}
		// Masked for jitgate, raw for psql: both must have returned the rows.
		if !strings.Contains(out.String(), "Lovelace") {
			return 0, fmt.Errorf("%s: no rows in output: %s", name, lastLines(out.Bytes(), 3))
		}
		if name != "psql" && strings.Contains(out.String(), "ada@example.com") {
			return 0, fmt.Errorf("jitgate exec returned an unmasked email: masking is off, the comparison is void")
		}
		return float64(el.Microseconds()) / 1000, nil
	}
	jenv := s.jitgateEnv()
	penv := cleanEnv("PGPASSWORD="+s.staticPW, "PGSSLMODE=disable")
	warm := min(3, cfg.execRuns)
	for i := 0; i < warm+cfg.execRuns; i++ {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		jm, jerr := timeOne(cfg.jitgate, jargs, jenv)
		pm, perr := timeOne("psql", pargs, penv)
		am, aerr := apiOne()
		hm, herr := helpOne()
		for _, e := range []error{jerr, perr, aerr, herr} {
			if e != nil {
				r.errors = append(r.errors, e.Error())
			}
		}
		if len(r.errors) > 3 {
			return r, fmt.Errorf("exec mode: too many failures: %s", strings.Join(r.errors, "; "))
		}
		if i < warm {
			continue
		}
		if jerr == nil {
			r.jitgateMs = append(r.jitgateMs, jm)
		}
		if perr == nil {
			r.psqlMs = append(r.psqlMs, pm)
		}
		if aerr == nil {
			r.apiMs = append(r.apiMs, am)
		}
		if herr == nil {
			r.helpMs = append(r.helpMs, hm)
		}
	}
	// Stage timings of every exec grant of execSQL that ran (warm-ups too: the
	// broker's stages do not depend on the CLI's warm caches).
	f, err := os.Open(filepath.Join(s.dataDir, "audit.jsonl"))
	if err != nil {
		return r, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	gs, err := harness.AuditStages(f)
	if err != nil {
		return r, err
	}
	seen := map[string]bool{}
	for _, g := range gs {
		if g.Mode != "exec" || g.Statement != execSQL {
			continue
		}
		if _, ran := g.Stages["launch_and_run"]; !ran {
			continue
		}
		r.spanMs = append(r.spanMs, float64(g.Last.Sub(g.First).Microseconds())/1000)
		for k, v := range g.Stages {
			r.stages[k] = append(r.stages[k], v)
			if !seen[k] {
				seen[k] = true
				r.stageOrder = append(r.stageOrder, k)
			}
		}
	}
	order := map[string]int{"policy": 0, "credential": 1, "launch": 2, "launch_and_run": 3, "revoke": 4}
	sort.SliceStable(r.stageOrder, func(i, j int) bool {
		oi, ok1 := order[r.stageOrder[i]]
		oj, ok2 := order[r.stageOrder[j]]
		if !ok1 {
			oi = 99
		}
		if !ok2 {
			oj = 99
		}
		return oi < oj
	})
	return r, nil
}

func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t'\"*$()<>|&;,") {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// grantResult is the grant-issuance throughput and its HTTP floor.
type grantResult struct {
	n, conc        int
	grantsPerSec   float64
	grantMs        []float64
	healthzPerSec  float64
	healthzMs      []float64
	failures       int
	firstFailure   string
	command, hzCmd string
}

// runGrants POSTs n auto-approved exec grants (never run, so nothing is
// launched) from conc workers over keep-alive connections, then GETs /healthz
// n times the same way: the second number is what the HTTP server alone allows.
func runGrants(ctx context.Context, cfg *config, s *stack) (*grantResult, error) {
	r := &grantResult{n: cfg.grants, conc: cfg.grantConc}
	if err := s.refreshToken(ctx); err != nil {
		return r, err
	}
	body, _ := json.Marshal(map[string]string{"target": targetName, "mode": "exec", "sql": grantSQL, "reason": "bench"})
	r.command = fmt.Sprintf("%d × POST %s/v1/grants %s, %d in parallel (Go net/http, keep-alive)", cfg.grants, s.broker, body, cfg.grantConc)
	r.hzCmd = fmt.Sprintf("%d × GET %s/healthz, %d in parallel", cfg.grants, s.broker, cfg.grantConc)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.grantConc, MaxConnsPerHost: cfg.grantConc}}
	defer client.CloseIdleConnections()
	check := func(method, url string, payload []byte, wantState bool) error {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(raw)))
		}
		if wantState {
			var g struct {
				State string `json:"state"`
			}
			if err := json.Unmarshal(raw, &g); err != nil || g.State != "approved" {
				return fmt.Errorf("grant not auto-approved: %s", strings.TrimSpace(string(raw)))
			}
		}
		return nil
	}
	blast := func(method, url string, payload []byte, wantState bool) (float64, []float64) {
		var (
			next  atomic.Int64
			mu    sync.Mutex
			lat   []float64
			wg    sync.WaitGroup
			fails atomic.Int64
		)
		t0 := time.Now()
		for range cfg.grantConc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []float64
				for next.Add(1) <= int64(cfg.grants) && ctx.Err() == nil {
					t := time.Now()
					if err := check(method, url, payload, wantState); err != nil {
						if fails.Add(1) == 1 {
							mu.Lock()
							r.firstFailure = err.Error()
							mu.Unlock()
						}
						continue
					}
					mine = append(mine, float64(time.Since(t).Microseconds())/1000)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		el := time.Since(t0).Seconds()
		r.failures += int(fails.Load())
		return float64(len(lat)) / el, lat
	}
	// Warm the connection pool and the verifier's key cache.
	for range cfg.grantConc {
		_ = check("GET", s.broker+"/healthz", nil, false)
	}
	r.grantsPerSec, r.grantMs = blast("POST", s.broker+"/v1/grants", body, true)
	r.healthzPerSec, r.healthzMs = blast("GET", s.broker+"/healthz", nil, false)
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if r.failures > 0 {
		return r, fmt.Errorf("%d of %d requests failed; first: %s", r.failures, 2*cfg.grants, r.firstFailure)
	}
	return r, nil
}

// apiJSON calls the broker's HTTP API with the bench token and decodes the
// answer into out.
func (s *stack) apiJSON(ctx context.Context, c *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.broker+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %.300s", method, path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}
