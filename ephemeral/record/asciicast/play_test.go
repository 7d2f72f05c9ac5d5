package asciicast_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
)

func TestSanitizer(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, in, want string }{
		{"plain", "hello\r\n", "hello\r\n"},
		{"colors pass", "\x1b[1;31mred\x1b[0m", "\x1b[1;31mred\x1b[0m"},
		{"osc52 clipboard BEL", "a\x1b]52;c;ZXZpbA==\x07b", "ab"},
		{"osc52 clipboard ST", "a\x1b]52;c;ZXZpbA==\x1b\\b", "ab"},
		{"title", "\x1b]0;owned\x07$ ", "$ "},
		{"hyperlink", "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"dcs", "x\x1bPq#0;2;0;0;0\x1b\\y", "xy"},
		{"apc pm sos", "\x1b_a\x1b\\\x1b^b\x1b\\\x1bXc\x1b\\ok", "ok"},
		{"8-bit osc", "a\u009d52;c;x\u009cb", "ab"},
		{"can aborts", "a\x1b]52;c;x\x18b", "ab"},
		{"esc esc", "\x1b\x1b[0m", "\x1b[0m"},
		{"unterminated swallows", "a\x1b]52;c;ZXZp", "a"},
	} {
		var z asciicast.Sanitizer
		if got := z.Clean(c.in); got != c.want {
			t.Errorf("%s: Clean(%q) = %q, want %q", c.name, c.in, got, c.want)
		}
	}
	// A sequence cut across two events is removed across them.
	var z asciicast.Sanitizer
	got := z.Clean("a\x1b]52;c;ZX") + z.Clean("Zp\x07b\x1b") + z.Clean("]0;t\x1b") + z.Clean("\\c")
	if got != "abc" {
		t.Errorf("split sequences: %q, want abc", got)
	}
}

// FuzzSanitizer: no OSC, DCS, SOS, PM or APC introducer ever survives, and
// cleaning in two pieces equals cleaning at once.
func FuzzSanitizer(f *testing.F) {
	for _, s := range []string{"\x1b]52;c;ZXZpbA==\x07", "\x1bPq\x1b\\", "a\x1b\x1b]x", "\u009d1\u009c", "\x1b[0m"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, s string, cut int) {
		var z asciicast.Sanitizer
		out := z.Clean(s)
		for _, bad := range []string{"\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\u009d", "\u0090", "\u0098", "\u009e", "\u009f"} {
			if strings.Contains(out, bad) {
				t.Fatalf("Clean(%q) = %q keeps %q", s, out, bad)
			}
		}
		if cut < 0 {
			cut = -cut
		}
		rs := []rune(s)
		if len(rs) > 0 {
			cut %= len(rs) + 1
		} else {
			cut = 0
		}
		var a, b asciicast.Sanitizer
		whole := a.Clean(s)
		parts := b.Clean(string(rs[:cut])) + b.Clean(string(rs[cut:]))
		if whole != parts {
			t.Fatalf("Clean(%q) = %q, in two pieces at %d: %q", s, whole, cut, parts)
		}
	})
}

func TestPlay(t *testing.T) {
	t.Parallel()
	evs := []asciicast.Event{
		{Time: 0.5, Code: "o", Data: "$ "},
		{Time: 1.0, Code: "i", Data: "l"},
		{Time: 1.1, Code: "i", Data: "s\r"},
		{Time: 1.2, Code: "o", Data: "ls\r\nfile\x1b]52;c;ZXZpbA==\x07\r\n$ "},
		{Time: 11.2, Code: "r", Data: "100x30"},
		{Time: 12.2, Code: "i", Data: "exit\r"},
		{Time: 12.3, Code: "m", Data: "exit 0"},
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, c := range []struct {
		name   string
		opts   asciicast.PlayOptions
		sleeps []time.Duration
	}{
		{"recorded pace", asciicast.PlayOptions{}, []time.Duration{ms(500), ms(500), ms(100), ms(100), 10 * time.Second, time.Second, ms(100)}},
		{"twice as fast, idle capped at 2s", asciicast.PlayOptions{Speed: 2, IdleLimit: 2 * time.Second}, []time.Duration{ms(250), ms(250), ms(50), ms(50), time.Second, ms(500), ms(50)}},
		{"no wait", asciicast.PlayOptions{NoWait: true, Speed: 3}, nil},
	} {
		var out strings.Builder
		var slept []time.Duration
		c.opts.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
		if err := asciicast.Play(t.Context(), &out, evs, c.opts); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if out.String() != "$ ls\r\nfile\r\n$ " {
			t.Errorf("%s: output %q", c.name, out.String())
		}
		if len(slept) != len(c.sleeps) {
			t.Fatalf("%s: slept %v, want %v", c.name, slept, c.sleeps)
		}
		for i := range slept {
			if d := slept[i] - c.sleeps[i]; d > time.Microsecond || d < -time.Microsecond {
				t.Errorf("%s: sleep %d = %v, want %v", c.name, i, slept[i], c.sleeps[i])
			}
		}
	}

	// Step stops at each command the user sent (Enter), with the output
	// before it written.
	var out strings.Builder
	var seen []string
	err := asciicast.Play(t.Context(), &out, evs, asciicast.PlayOptions{NoWait: true, Step: func(context.Context) error {
		seen = append(seen, out.String())
		return nil
	}})
	if err != nil || len(seen) != 2 || seen[0] != "$ " || seen[1] != "$ ls\r\nfile\r\n$ " {
		t.Fatalf("step points %q, %v", seen, err)
	}
	stop := errors.New("viewer quit")
	if err := asciicast.Play(t.Context(), &out, evs, asciicast.PlayOptions{NoWait: true, Step: func(context.Context) error { return stop }}); !errors.Is(err, stop) {
		t.Fatalf("a failing step: %v", err)
	}
	for _, bad := range []float64{-1} {
		if err := asciicast.Play(t.Context(), &out, evs, asciicast.PlayOptions{Speed: bad}); err == nil {
			t.Errorf("speed %v accepted", bad)
		}
	}
}

// TestPauser: a paused playback writes nothing more until it is resumed,
// then carries on where it stopped; a paused playback ends with its context.
func TestPauser(t *testing.T) {
	t.Parallel()
	evs := []asciicast.Event{{Time: 0, Code: "o", Data: "a"}, {Time: 0.001, Code: "o", Data: "b"}, {Time: 0.002, Code: "o", Data: "c"}}
	var p asciicast.Pauser
	if !p.Toggle() {
		t.Fatal("Toggle did not pause")
	}
	w := &syncWriter{}
	done := make(chan error, 1)
	go func() { done <- asciicast.Play(t.Context(), w, evs, asciicast.PlayOptions{Sleep: p.Sleep}) }()
	// The first event has no pause before it; the second waits for resume.
	for w.String() != "a" {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("playback ended while paused: %v, wrote %q", err, w.String())
	case <-time.After(50 * time.Millisecond):
	}
	if w.String() != "a" {
		t.Fatalf("wrote %q while paused", w.String())
	}
	if p.Toggle() {
		t.Fatal("Toggle did not resume")
	}
	if err := <-done; err != nil || w.String() != "abc" {
		t.Fatalf("after resume: %v, %q", err, w.String())
	}

	var q asciicast.Pauser
	q.Toggle()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := q.Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("paused sleep with a done context: %v", err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
