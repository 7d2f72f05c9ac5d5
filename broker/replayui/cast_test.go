package replayui_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/replayui"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
)

// castSecret stands in for a value the masker replaced before it was
// recorded: the cast holds only the masked form.
const (
	castMasked = "password=********"
	castPrompt = "root@box:~# "
)

// newCastFixture records a terminal session of grant id: the recording seals
// one cast of about six seconds (a shell typing and printing), and a stray
// cast is left next to it unsealed.
func newCastFixture(t *testing.T, id string) *fixture {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), key: signer{priv}}
	r, err := record.Create(context.Background(), record.Config{Dir: f.dir, Signer: f.key, FlushInterval: -1,
		Header: record.Header{GrantID: id, Identity: "https://issuer#alice", Target: "box", Rule: "admins-shell", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	name := id + ".conn1.ch0.cast"
	if err := r.Write(record.Event{Type: record.Verdict, Conn: 1, Tag: "shell", Statement: name, Allowed: &yes, Reason: "interactive shell: recorded, not filtered"}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { return at }
	w, err := asciicast.Create(filepath.Join(f.dir, name), asciicast.Header{Width: 80, Height: 24, Title: "jitgate " + id}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, out := range []string{castPrompt, "cat /etc/app.conf\r\n", castMasked + "\r\n", castPrompt, "\x1b]52;c;ZXZpbA==\x07", "exit\r\n"} {
		at = at.Add(time.Duration(500+i*500) * time.Millisecond)
		if err := w.Output([]byte(out)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, id+".conn9.ch0.cast"), []byte("{\"version\":2,\"width\":80,\"height\":24}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.path = r.Path()
	return f
}

func TestTerminalPage(t *testing.T) {
	t.Parallel()
	f := newCastFixture(t, "g-term")
	h := f.handler(t, f.key.PublicKey(), nil)
	res, body := get(t, h, "GET", "/g-term")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	for _, want := range []string{
		`<div class="player" data-src="g-term/casts/g-term.conn1.ch0.cast"></div>`,
		`<script src="static/asciinema-player.min.js"></script>`, `<script src="static/replay.js"></script>`,
		`<link rel="stylesheet" href="static/asciinema-player.css">`,
		`class="cast cast-sealed"`, `class="cast cast-unsealed"`, "g-term.conn9.ch0.cast", "NOT played: the recording does not seal this file",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, `data-src="g-term/casts/g-term.conn9`) {
		t.Error("the unsealed cast is offered to the player")
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self' 'wasm-unsafe-eval';", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "'unsafe-eval'") {
		t.Errorf("CSP %q allows inline or eval'd script", csp)
	}

	res, cast := get(t, h, "GET", "/g-term/casts/g-term.conn1.ch0.cast")
	if res.StatusCode != 200 || !strings.Contains(cast, castMasked) || !strings.HasPrefix(cast, `{"version":2`) {
		t.Fatalf("cast: %d %q", res.StatusCode, cast)
	}
	for path, status := range map[string]int{
		"/g-term/casts/g-term.conn9.ch0.cast":  http.StatusConflict, // unsealed
		"/g-term/casts/g-other.conn1.ch0.cast": http.StatusBadRequest,
		"/g-term/casts/..%2fg-term.jgr":        http.StatusBadRequest,
		"/g-term/casts/g-term.jgr":             http.StatusBadRequest,
		"/g-term/casts/g-term.conn2.ch0.cast":  http.StatusNotFound,
		"/g-term/other/g-term.conn1.ch0.cast":  http.StatusBadRequest,
		"/static/asciinema-player.min.js":      http.StatusOK,
		"/static/replay.js":                    http.StatusOK,
		"/static/nothing.js":                   http.StatusNotFound,
	} {
		if res, _ := get(t, h, "GET", path); res.StatusCode != status {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, status)
		}
	}

	// Authorize runs for casts as for the page.
	deny := f.handler(t, f.key.PublicKey(), func(*http.Request, string) error { return replayui.ErrForbidden })
	if res, body := get(t, deny, "GET", "/g-term/casts/g-term.conn1.ch0.cast"); res.StatusCode != http.StatusForbidden || strings.Contains(body, castMasked) {
		t.Errorf("unauthorized cast: %d", res.StatusCode)
	}

	// An edited cast is named and neither offered nor served.
	p := filepath.Join(f.dir, "g-term.conn1.ch0.cast")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "app.conf", "app.cnf", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, h, "GET", "/g-term")
	if !strings.Contains(body, `class="cast cast-mismatch"`) || strings.Contains(body, `data-src=`) {
		t.Errorf("edited cast: page does not refuse it")
	}
	if res, _ := get(t, h, "GET", "/g-term/casts/g-term.conn1.ch0.cast"); res.StatusCode != http.StatusConflict {
		t.Errorf("edited cast served: %d", res.StatusCode)
	}
}
