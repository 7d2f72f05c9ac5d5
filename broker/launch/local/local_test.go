package local

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TestFakeProxy is the proxy the launcher starts in these tests: this test
// binary run with "-test.run=^TestFakeProxy$ -- fakeproxy". It reads the spec
// from stdin like the real one, reports ready (naming its pid) and exit.
// Run normally it does nothing.
func TestFakeProxy(t *testing.T) {
	if flag.Arg(0) != "fakeproxy" {
		return
	}
	raw, _ := io.ReadAll(os.Stdin)
	if len(raw) == 0 {
		os.Exit(0) // released spare
	}
	var g spec.Grant
	if err := json.Unmarshal(raw, &g); err != nil {
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	_ = enc.Encode(spec.Status{Type: spec.StatusReady, GrantID: g.ID, Addr: fmt.Sprintf("pid:%d", os.Getpid())})
	_ = enc.Encode(spec.Status{Type: spec.StatusExit, GrantID: g.ID, Recording: g.ID + ".jgr"})
	os.Exit(0)
}

func newTestLauncher(t *testing.T, spare bool) *Launcher {
	t.Helper()
	l, err := New(Config{Executable: os.Args[0], Args: []string{"-test.run=^TestFakeProxy$", "--", "fakeproxy"},
		Spare: spare, Logger: slog.New(slog.DiscardHandler), Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func sparePID(l *Launcher) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare == nil {
		return 0
	}
	return l.spare.cmd.Process.Pid
}

func waitSpare(t *testing.T, l *Launcher, not int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pid := sparePID(l); pid != 0 && pid != not {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no spare proxy started")
	return 0
}

func launchOne(t *testing.T, l *Launcher, id string) spec.Status {
	t.Helper()
	h, err := l.Launch(context.Background(), &spec.Grant{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Ready(context.Background())
	if err != nil || st.GrantID != id {
		t.Fatalf("ready %+v, %v", st, err)
	}
	exit, err := h.Wait(context.Background())
	if err != nil || exit.Recording != id+".jgr" {
		t.Fatalf("exit %+v, %v", exit, err)
	}
	return st
}

// TestSpare: a warmed launcher hands the first grant to the process it
// started ahead, starts the next spare, replaces a spare that died while it
// waited, and releases the spare at Close (it exits having held no spec).
func TestSpare(t *testing.T) {
	t.Parallel()
	l := newTestLauncher(t, true)
	l.Warm()
	first := waitSpare(t, l, 0)
	if st := launchOne(t, l, "g_one"); st.Addr != fmt.Sprintf("pid:%d", first) {
		t.Fatalf("g_one served by %s, want the spare pid %d", st.Addr, first)
	}
	second := waitSpare(t, l, first)

	// A spare that dies while it waits is replaced, and the grant still runs.
	if err := syscall.Kill(second, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if st := launchOne(t, l, "g_two"); st.GrantID != "g_two" {
		t.Fatalf("after the spare died: %+v", st)
	}
	third := waitSpare(t, l, second)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(third, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("released spare %d still running", third)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if pid := sparePID(l); pid != 0 {
		t.Errorf("a spare (%d) was started after Close", pid)
	}
}

// TestNoSpare: without Spare every launch starts its own process and none is
// kept waiting.
func TestNoSpare(t *testing.T) {
	t.Parallel()
	l := newTestLauncher(t, false)
	l.Warm()
	a, b := launchOne(t, l, "g_a"), launchOne(t, l, "g_b")
	if a.Addr == b.Addr {
		t.Errorf("two grants served by one process %s", a.Addr)
	}
	if pid := sparePID(l); pid != 0 {
		t.Errorf("a spare %d was kept without Spare", pid)
	}
}
