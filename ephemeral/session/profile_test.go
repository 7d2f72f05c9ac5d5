package session

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestStartProfile(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	stop, err := startProfile("")
	if err != nil {
		t.Fatal(err)
	}
	stop(log) // no profile: nothing to stop

	path := filepath.Join(t.TempDir(), "cpu.pprof")
	stop, err = startProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop(log)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("profile is not a gzipped pprof: % x", b[:min(len(b), 8)])
	}
	// An existing file is never overwritten.
	if _, err := startProfile(path); err == nil {
		t.Fatal("startProfile overwrote an existing file")
	}
}
