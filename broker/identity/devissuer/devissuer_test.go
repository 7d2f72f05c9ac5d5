package devissuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func get(t *testing.T, h http.Handler, path string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
	}
	return rec.Code
}

func TestSignFillsClaims(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	iss, err := devissuer.New(devissuer.Options{Algorithm: "ES256", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Sign(nil); err == nil || !strings.Contains(err.Error(), "URL not set") {
		t.Fatalf("Sign without URL: %v", err)
	}
	iss.SetURL("http://127.0.0.1:9/")
	tok, err := iss.Sign(map[string]any{"sub": "a"})
	if err != nil {
		t.Fatal(err)
	}
	c := payload(t, tok)
	if c["iss"] != "http://127.0.0.1:9" || c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Add(devissuer.DefaultTTL).Unix()) {
		t.Errorf("claims %v", c)
	}
	tok, err = iss.Sign(map[string]any{"sub": "a", "exp": 5, "iss": "other"})
	if err != nil {
		t.Fatal(err)
	}
	if c := payload(t, tok); c["exp"] != float64(5) || c["iss"] != "other" {
		t.Errorf("given claims overwritten: %v", c)
	}
}

func TestDiscoveryAndRotation(t *testing.T) {
	t.Parallel()
	iss, err := devissuer.New(devissuer.Options{Algorithm: "RS256"})
	if err != nil {
		t.Fatal(err)
	}
	iss.SetURL("http://127.0.0.1:9")
	h := iss.Handler()
	var doc map[string]any
	if code := get(t, h, "/.well-known/openid-configuration", &doc); code != 200 {
		t.Fatalf("discovery status %d", code)
	}
	if doc["issuer"] != "http://127.0.0.1:9" || doc["jwks_uri"] != "http://127.0.0.1:9/jwks" ||
		doc["authorization_endpoint"] != "http://127.0.0.1:9/authorize" || doc["token_endpoint"] != "http://127.0.0.1:9/token" {
		t.Errorf("discovery %v", doc)
	}
	if m, _ := doc["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Errorf("discovery code_challenge_methods_supported %v, want [S256]", doc["code_challenge_methods_supported"])
	}
	kids := func() []string {
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
				D   string `json:"d"`
			} `json:"keys"`
		}
		get(t, h, "/jwks", &set)
		var out []string
		for _, k := range set.Keys {
			if k.D != "" {
				t.Fatal("JWKS publishes a private key")
			}
			out = append(out, k.Kid)
		}
		return out
	}
	first := iss.KeyID()
	if got := kids(); len(got) != 1 || got[0] != first {
		t.Fatalf("kids %v", got)
	}
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	if got := kids(); len(got) != 2 || got[0] != iss.KeyID() || got[1] != first {
		t.Fatalf("kids after rotate %v", got)
	}
	iss.RemoveOld()
	if got := kids(); len(got) != 1 || got[0] != iss.KeyID() {
		t.Fatalf("kids after RemoveOld %v", got)
	}
	if n := iss.JWKSFetches(); n != 3 {
		t.Errorf("JWKSFetches = %d, want 3", n)
	}
	// httptest requests come from 192.0.2.1: not loopback.
	if code := get(t, h, "/authorize", nil); code != http.StatusForbidden {
		t.Errorf("/authorize from a non-loopback client: status %d, want 403", code)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cases := []struct {
		name string
		opts devissuer.Options
		want string
	}{
		{"HS256", devissuer.Options{Algorithm: "HS256"}, "want RS256 or ES256"},
		{"none", devissuer.Options{Algorithm: "none"}, "want RS256 or ES256"},
		{"P-384 key for ES256", devissuer.Options{Algorithm: "ES256", Key: ec}, "does not fit"},
		{"EC key for RS256", devissuer.Options{Algorithm: "RS256", Key: ec}, "does not fit"},
	}
	for _, c := range cases {
		if _, err := devissuer.New(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(iss.URL() + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	stop()
	stop() // idempotent
	if _, err := http.Get(iss.URL() + "/jwks"); err == nil {
		t.Error("server still answers after stop")
	}
}

// Every log line of the dev issuer says DEV ONLY.
func TestLogLinesSayDevOnly(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Token("a", nil, "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	stop()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 4 {
		t.Fatalf("only %d log lines: %q", len(lines), lines)
	}
	for _, l := range lines {
		if !strings.Contains(l, "DEV ONLY") || !strings.Contains(l, "dev_only=true") {
			t.Errorf("log line without DEV ONLY marker: %s", l)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
