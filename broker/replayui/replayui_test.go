package replayui_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/replayui"
	"github.com/jitgate/jitgate/ephemeral/record"
)

type signer struct{ priv ed25519.PrivateKey }

func (s signer) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, msg), nil
}
func (s signer) PublicKey() crypto.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

const (
	xss     = `<script>alert("owned")</script>`
	escSeq  = "\x1b]52;c;ZXZpbA==\x07"
	blocked = "write statement on a read grant"
)

// fixture writes one recording of a small SQL session with hostile values.
type fixture struct {
	dir  string
	key  signer
	path string
}

func newFixture(t *testing.T, id string) *fixture {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: t.TempDir(), key: signer{priv}}
	r, err := record.Create(context.Background(), record.Config{Dir: f.dir, Signer: f.key, FlushInterval: -1,
		Header: record.Header{GrantID: id, Identity: "https://issuer#agent-" + xss, Target: "shop", Rule: "agents-read", Mode: "session", LeaseID: "lease-9"}})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	one, card, empty := "1", "****1111"+escSeq, ""
	for _, ev := range []record.Event{
		{Type: record.Query, Conn: 1, Statement: "SELECT id, card, note FROM users WHERE name = '" + xss + "'"},
		{Type: record.Verdict, Conn: 1, Allowed: &yes},
		{Type: record.Rows, Conn: 1, Columns: []string{"id", "card", "note"}, Rows: [][]*string{{&one, &card, nil}, {&one, &empty, &one}}, RowCount: 5},
		{Type: record.Result, Conn: 1, Tag: "SELECT 5"},
		{Type: record.Query, Conn: 2, Statement: "DELETE FROM users"},
		{Type: record.Verdict, Conn: 2, Allowed: &no, Reason: blocked},
		{Type: record.Error, Conn: 2, Error: "42501 jitgate: blocked"},
	} {
		if err := r.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	f.path = r.Path()
	return f
}

func (f *fixture) handler(t *testing.T, pub crypto.PublicKey, auth func(*http.Request, string) error) http.Handler {
	t.Helper()
	if auth == nil {
		auth = func(*http.Request, string) error { return nil }
	}
	h, err := replayui.New(replayui.Config{Dirs: []string{filepath.Join(f.dir, "nothing-here"), f.dir}, PublicKey: pub, Authorize: auth})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "http://broker"+path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestPageShowsTheSessionEscaped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "g-page")
	res, body := get(t, f.handler(t, f.key.PublicKey(), nil), "GET", "/g-page")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`class="banner ok"`, "Verified: 2 chunks, 9 events, complete, signed by " + record.KeyID(f.key.PublicKey()),
		"&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;", // in the statement and the identity
		"BLOCKED: " + blocked, "ERROR: 42501 jitgate: blocked", "SELECT 5",
		`<td class="null">NULL</td>`, `****1111\x1b]52;c;ZXZpbA==\x07`, "5 rows in all; 2 recorded", "lease-9",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "\x1b") || strings.Contains(body, "\x07") {
		t.Fatal("the page carries a script tag or raw control characters")
	}
	// The CSP allows exactly the page's own style, by hash, and nothing else.
	csp := res.Header.Get("Content-Security-Policy")
	start, end := strings.Index(body, "<style>")+len("<style>"), strings.Index(body, "</style>")
	sum := sha256.Sum256([]byte(body[start:end]))
	for _, want := range []string{"default-src 'none'", "script-src 'none'", "frame-ancestors 'none'",
		"style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if res.Header.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, res.Header.Get(k), v)
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "g-ref")
	var asked []string
	auth := func(r *http.Request, id string) error {
		asked = append(asked, id)
		if r.Header.Get("X-Test-Deny") != "" || id == "g-other" {
			return replayui.ErrForbidden
		}
		return nil
	}
	h := f.handler(t, f.key.PublicKey(), auth)
	cases := []struct {
		method, path string
		status       int
	}{
		{"GET", "/g-other", http.StatusForbidden},
		{"GET", "/g-missing", http.StatusNotFound},
		{"GET", "/../g-ref", http.StatusBadRequest},
		{"GET", "/..%2fg-ref", http.StatusBadRequest},
		{"GET", "/sub/g-ref", http.StatusBadRequest},
		{"GET", "/", http.StatusBadRequest},
		{"GET", "/.g-ref", http.StatusBadRequest},
		{"POST", "/g-ref", http.StatusMethodNotAllowed},
		{"GET", "/g-ref", http.StatusOK},
	}
	for _, c := range cases {
		res, body := get(t, h, c.method, c.path)
		if res.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, res.StatusCode, c.status)
		}
		if c.status != 200 && strings.Contains(body, "DELETE FROM") {
			t.Errorf("%s %s: refused but shows the recording", c.method, c.path)
		}
	}
	if strings.Join(asked, ",") != "g-other,g-missing,g-ref" {
		t.Fatalf("Authorize was asked about %v (it must run before any file is looked at, and only for good ids)", asked)
	}
	if _, err := replayui.New(replayui.Config{Dirs: []string{f.dir}}); err == nil {
		t.Fatal("New without Authorize succeeded")
	}
}

func TestVerificationStates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "g-state")
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(f.dir, name+record.Ext), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flipped := append([]byte(nil), b...)
	flipped[len(flipped)-40] ^= 1 // inside the final seal
	write("g-flipped", flipped)
	write("g-cut", b[:len(b)-30])
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		id    string
		key   crypto.PublicKey
		class string
		text  string
	}{
		{"g-state", f.key.PublicKey(), "ok", "Verified"},
		{"g-state", nil, "unverified", "the signature was not checked"},
		{"g-state", other.Public().(ed25519.PublicKey), "broken", "BROKEN at the header"},
		{"g-flipped", f.key.PublicKey(), "broken", "BROKEN at chunk 1"},
		{"g-cut", f.key.PublicKey(), "incomplete", "Incomplete: chunks 0–0 verify"},
	}
	for _, c := range cases {
		res, body := get(t, f.handler(t, c.key, nil), "GET", "/"+c.id)
		if res.StatusCode != 200 || !strings.Contains(body, `class="banner `+c.class+`"`) || !strings.Contains(body, c.text) {
			t.Errorf("%s: status %d, banner %q", c.id, res.StatusCode, banner(body))
		}
		// A broken chunk's events are not shown as if they were evidence.
		if c.class == "broken" && strings.Contains(body, "DELETE FROM") {
			t.Errorf("%s: shows events of a chunk that failed verification", c.id)
		}
	}
}

func banner(body string) string {
	i := strings.Index(body, `id="verification"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</p>")
	return body[i : i+j]
}
