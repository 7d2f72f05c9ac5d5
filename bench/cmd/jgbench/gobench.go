package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jitgate/jitgate/bench/harness"
)

// goBenchPkgs are the packages whose benchmarks carry in-run baselines.
var goBenchPkgs = []string{"./ephemeral/mask", "./ephemeral/guard", "./broker/identity", "./ephemeral/engine/postgres", "./broker/audit", "./broker/credentials/local"}

type goBenchResult struct {
	command string
	set     *harness.GoBenchSet
	failed  string // go test's error and tail, when a package failed
}

// runGoBench runs the Go benchmarks once (with -count repeats) and parses them.
// A failing package does not void the others: go test prints the results of
// the packages that passed.
func runGoBench(ctx context.Context, cfg *config, rawDir string) (*goBenchResult, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", cfg.benchTime, "-count", fmt.Sprint(cfg.benchCnt)}, goBenchPkgs...)
	r := &goBenchResult{command: "go " + shellJoin(args)}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.repo
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_ = os.WriteFile(filepath.Join(rawDir, "go-bench.txt"), append([]byte(r.command+"\n\n"), out.Bytes()...), 0o644)
	if err != nil {
		r.failed = fmt.Sprintf("%v: %s", err, lastLines(out.Bytes(), 5))
	}
	rs, perr := harness.ParseGoBench(&out)
	if perr != nil {
		return r, perr
	}
	r.set = harness.NewGoBenchSet(rs)
	if len(rs) == 0 {
		return r, fmt.Errorf("go test -bench produced no results: %s", strings.TrimSpace(r.failed))
	}
	return r, nil
}
