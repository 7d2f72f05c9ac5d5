package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// results is everything the report is made of; a nil part did not run.
type results struct {
	cfg        *config
	mach       *machine
	versions   map[string]string
	matrix     *pgMatrix
	recordings map[string]recordingRow
	exec       *execResult
	grants     *grantResult
	profile    *profileResult
	gobench    *goBenchResult
	transfer   *transferResult // scp and HTTP through the proxy (transfer.go)
	failures   []string
	rawDir     string
}

type recordingRow struct {
	bytes, raw, statements, events int64
	// The audit backlog: seconds per run, and in total over the statements of
	// the runs that settled.
	settleSec        []float64
	settleTotal      time.Duration
	settleStatements int64
	settleFailed     int
}

func run(ctx context.Context, cfg *config, log *slog.Logger) error {
	mach := machineInfo(ctx, cfg.repo)
	dir := cfg.workDir
	if dir == "" {
		d, err := os.MkdirTemp("", "jgbench-")
		if err != nil {
			return err
		}
		dir = d
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	raw := filepath.Join(dir, "raw")
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return err
	}
	res := &results{cfg: cfg, mach: mach, versions: map[string]string{}, rawDir: raw}
	s := &stack{log: log, dir: dir, versions: res.versions}
	defer s.stop()
	fail := func(phase string, err error) {
		log.Error(phase+" failed", "err", err)
		res.failures = append(res.failures, fmt.Sprintf("%s: %v", phase, err))
	}
	if err := s.startPostgres(ctx, cfg.scale); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := s.startRelay(ctx); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if !cfg.skipPaths[pathPgbouncer] {
		if err := s.startPgbouncer(ctx); err != nil {
			return fmt.Errorf("pgbouncer: %w", err)
		}
	}
	if err := s.startJitgate(ctx, cfg.jitgate); err != nil {
		return fmt.Errorf("jitgate: %w", err)
	}
	if out, err := versionOf(ctx, "pgbench", "--version"); err == nil {
		res.versions["pgbench"] = out
	}

	mach.mark("pgbench matrix")
	m, err := runMatrix(ctx, cfg, s, raw)
	res.matrix = m
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		fail("pgbench", err)
	}
	res.recordings = recordingStats(m)

	mach.mark("exec mode")
	if res.exec, err = runExec(ctx, cfg, s); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fail("exec mode", err)
	}
	mach.mark("grant issuance")
	if res.grants, err = runGrants(ctx, cfg, s); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fail("grant issuance", err)
	}
	if cfg.profile {
		mach.mark("profile")
		res.profile = runProfile(ctx, cfg, s, raw)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	s.stop() // nothing of ours runs during the Go benchmarks

	if cfg.goBench {
		mach.mark("go benchmarks")
		log.Info("go test -bench", "benchtime", cfg.benchTime, "count", cfg.benchCnt)
		if res.gobench, err = runGoBench(ctx, cfg, raw); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fail("go benchmarks", err)
		} else if res.gobench.failed != "" {
			fail("go benchmarks", errors.New(res.gobench.failed))
		}
	}
	if cfg.goBench {
		mach.mark("ssh and http throughput")
		log.Info("scp and HTTP benchmarks (go test -bench)")
		if res.transfer, err = runTransfer(ctx, cfg, raw); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fail("ssh and http throughput", err)
		} else if res.transfer.failed != "" {
			fail("ssh and http throughput", errors.New(res.transfer.failed))
		}
	}
	mach.mark("end")
	mach.finished = time.Now()

	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, []byte(renderReport(res)), 0o644); err != nil {
		return err
	}
	log.Info("wrote report", "path", cfg.out, "took", time.Since(mach.started).Round(time.Second))
	if cfg.keep {
		log.Info("kept scratch directory", "dir", dir)
	}
	if len(res.failures) > 0 {
		return fmt.Errorf("%d phase(s) failed (see %s): %v", len(res.failures), cfg.out, res.failures)
	}
	return nil
}
