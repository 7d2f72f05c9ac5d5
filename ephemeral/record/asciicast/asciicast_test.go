package asciicast_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(250 * time.Millisecond)
	return c.t
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s.cast")
	clk := &clock{t: time.Unix(1700000000, 0)}
	w, err := asciicast.Create(path, asciicast.Header{Width: 120, Height: 40, Env: map[string]string{"TERM": "xterm"}}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Output([]byte("$ ")))
	must(w.Input([]byte("ls\r")))
	must(w.Output([]byte("caf\xc3"))) // é split across two writes
	must(w.Output([]byte("\xa9 \x1b]52;c;ZXZpbA==\x07\r\n")))
	must(w.Resize(100, 30))
	must(w.Output([]byte("bad \xff byte")))
	must(w.Mark("exit 0"))
	must(w.Close())
	must(w.Close()) // idempotent
	if err := w.Output([]byte("late")); !errors.Is(err, asciicast.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	f, _ := os.Open(path)
	defer f.Close()
	h, evs, err := asciicast.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || h.Width != 120 || h.Height != 40 || h.Timestamp != 1700000000 {
		t.Errorf("header %+v", h)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Code+":"+e.Data)
	}
	want := []string{"o:$ ", "i:ls\r", "o:caf", "o:é \x1b]52;c;ZXZpbA==\x07\r\n", "r:100x30", "o:bad \uFFFD byte", "m:exit 0"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Time <= evs[i-1].Time {
			t.Fatalf("times not increasing: %v", evs)
		}
	}
}

func TestCarryFlushedOnClose(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, _ := asciicast.NewWriter(&buf, asciicast.Header{}, nil)
	_ = w.Output([]byte("x\xe2\x82")) // incomplete €
	_ = w.Close()
	h, evs, err := asciicast.Read(&buf)
	if err != nil || h.Width != 80 || h.Height != 24 {
		t.Fatalf("read: %v %+v", err, h)
	}
	if len(evs) != 2 || evs[0].Data != "x" || evs[1].Data != "\uFFFD" {
		t.Fatalf("events %+v", evs)
	}
}

func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, _ := asciicast.NewWriter(&buf, asciicast.Header{Width: 80, Height: 24}, nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				_ = w.Output([]byte("out"))
				_ = w.Input([]byte("in"))
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := asciicast.Read(&buf)
	if err != nil || len(evs) != 800 {
		t.Fatalf("read %d events: %v", len(evs), err)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n--; f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteErrorIsSticky(t *testing.T) {
	t.Parallel()
	w, err := asciicast.NewWriter(&failWriter{n: 1}, asciicast.Header{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 40<<10)
	var werr error
	for i := 0; i < 3 && werr == nil; i++ {
		werr = w.Output(big)
	}
	if werr == nil || !strings.Contains(werr.Error(), "disk full") {
		t.Fatalf("write error %v", werr)
	}
	if err := w.Output([]byte("x")); err == nil || w.Err() == nil || w.Close() == nil {
		t.Fatal("error not sticky")
	}
}

func TestReadRejects(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"empty":        "",
		"version 1":    `{"version":1,"width":80,"height":24}`,
		"no size":      `{"version":2}`,
		"unknown key":  `{"version":2,"width":80,"height":24,"x":1}`,
		"bad event":    "{\"version\":2,\"width\":80,\"height\":24}\n[1,\"o\"]",
		"bad code":     "{\"version\":2,\"width\":80,\"height\":24}\n[1,\"x\",\"d\"]",
		"time back":    "{\"version\":2,\"width\":80,\"height\":24}\n[2,\"o\",\"a\"]\n[1,\"o\",\"b\"]",
		"not an array": "{\"version\":2,\"width\":80,\"height\":24}\n{}",
	} {
		if _, _, err := asciicast.Read(strings.NewReader(in)); err == nil {
			t.Errorf("Read(%s) succeeded", name)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add("{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"hi\"]\n[1,\"i\",\"x\"]")
	f.Add("{\"version\":2,\"width\":1,\"height\":1,\"env\":{\"A\":\"b\"}}\n")
	f.Fuzz(func(t *testing.T, in string) {
		h, evs, err := asciicast.Read(strings.NewReader(in))
		if err != nil {
			return
		}
		// What Read accepts survives a write and a re-read.
		var buf bytes.Buffer
		w, err := asciicast.NewWriter(&buf, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			switch e.Code {
			case asciicast.Output:
				_ = w.Output([]byte(e.Data))
			case asciicast.Input:
				_ = w.Input([]byte(e.Data))
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := asciicast.Read(&buf); err != nil {
			t.Fatalf("re-read of a written recording: %v", err)
		}
	})
}
