package filesink_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record/filesink"
)

func newSink(t *testing.T) *filesink.Sink {
	t.Helper()
	s, err := filesink.New(filesink.Config{Dir: filepath.Join(t.TempDir(), "recordings")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestStoreIsAtomicAndNeverOverwrites(t *testing.T) {
	t.Parallel()
	s := newSink(t)
	ctx := context.Background()
	if err := s.Store(ctx, "g1.jgr", strings.NewReader("evidence")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.URI("g1.jgr"))
	if err != nil || string(b) != "evidence" {
		t.Fatalf("stored %q, %v", b, err)
	}
	st, _ := os.Stat(s.URI("g1.jgr"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	// A retried upload of the same bytes succeeds; different bytes never replace evidence.
	if err := s.Store(ctx, "g1.jgr", strings.NewReader("evidence")); err != nil {
		t.Fatalf("same bytes again: %v", err)
	}
	if err := s.Store(ctx, "g1.jgr", strings.NewReader("forged")); !errors.Is(err, filesink.ErrExists) {
		t.Fatalf("different bytes: %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(s.URI("g1.jgr")); string(b) != "evidence" {
		t.Fatalf("the stored recording changed to %q", b)
	}
	if got := names(t, s.Dir()); len(got) != 1 {
		t.Fatalf("directory holds %v", got)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestFailedStoreLeavesNothing(t *testing.T) {
	t.Parallel()
	s := newSink(t)
	if err := s.Store(context.Background(), "g2.jgr", &failingReader{n: 300 << 10}); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("failing reader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Store(ctx, "g3.jgr", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if got := names(t, s.Dir()); len(got) != 0 {
		t.Fatalf("failed stores left %v", got)
	}
}

func TestKeysAreCheckedNames(t *testing.T) {
	t.Parallel()
	s := newSink(t)
	for _, key := range []string{"", ".", "..", "../escape.jgr", "a/b.jgr", `a\b.jgr`, ".hidden.jgr", "nul\x00.jgr", "line\n.jgr", strings.Repeat("k", 256)} {
		if err := s.Store(context.Background(), key, strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "unusable key") {
			t.Errorf("key %q: %v", key, err)
		}
		if _, err := s.Open(key); err == nil {
			t.Errorf("Open(%q) succeeded", key)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Dir()), "escape.jgr")); !os.IsNotExist(err) {
		t.Fatal("a key escaped the directory")
	}
	if _, err := filesink.New(filesink.Config{}); err == nil {
		t.Fatal("New without a directory succeeded")
	}
	if err := s.Store(context.Background(), "ok.jgr", strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	f, err := s.Open("ok.jgr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "y" {
		t.Fatalf("Open read %q", b)
	}
}

// TestFind: a stored key is found at its path; a missing one is not, without
// an error; an unusable key is refused.
func TestFind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := filesink.New(filesink.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store(t.Context(), "g_1.jgr", strings.NewReader("sealed")); err != nil {
		t.Fatal(err)
	}
	if loc, found, err := s.Find(t.Context(), "g_1.jgr"); err != nil || !found || loc != filepath.Join(dir, "g_1.jgr") {
		t.Fatalf("Find stored: %q %v %v", loc, found, err)
	}
	if _, found, err := s.Find(t.Context(), "g_2.jgr"); err != nil || found {
		t.Fatalf("Find missing: %v %v", found, err)
	}
	if _, _, err := s.Find(t.Context(), "../g_1.jgr"); err == nil {
		t.Fatal("a key with a separator was accepted")
	}
}
