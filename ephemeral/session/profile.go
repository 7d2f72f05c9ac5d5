package session

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
)

// startProfile starts a Go CPU profile into path (a new file) when path is
// set; the returned function stops it. For benchmarks: the launcher drops
// environment variables on purpose, so the profile is asked for in the spec.
func startProfile(path string) (func(*slog.Logger), error) {
	if path == "" {
		return func(*slog.Logger) {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("session: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("session: profile: %w", err)
	}
	return func(log *slog.Logger) {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("cpu profile not written", "path", path, "err", err)
			return
		}
		log.Info("cpu profile written", "path", path)
	}, nil
}
