package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

const testAudience = "api://jitgate"

// clock is a settable test clock: no test depends on wall-clock speed.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingTransport counts requests per URL path and forwards them.
type countingTransport struct {
	n    atomic.Int64
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// env is one running dev issuer with a verifier trusting it.
type env struct {
	iss    *devissuer.Issuer
	key    crypto.Signer
	kid    string
	alg    string
	clock  *clock
	v      *identity.Verifier
	cfg    identity.IssuerConfig
	client *countingTransport
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
)

// testKeys returns one RSA and one EC key shared by all tests (RSA key
// generation is slow; the keys are never mutated).
func testKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return rsaKey, ecKey
}

type envOpt func(*identity.IssuerConfig, *identity.Options)

func newEnv(t testing.TB, alg string, opts ...envOpt) *env {
	t.Helper()
	rk, ek := testKeys(t)
	var key crypto.Signer = rk
	if alg == "ES256" {
		key = ek
	}
	c := newClock()
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: alg, Key: key, KeyID: "key-1", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ct := &countingTransport{base: http.DefaultTransport}
	cfg := identity.IssuerConfig{Name: "dev", Issuer: iss.URL(), Audience: testAudience, DevOnly: true}
	o := identity.Options{Now: c.Now, HTTPClient: &http.Client{Transport: ct, Timeout: 10 * time.Second}}
	for _, f := range opts {
		f(&cfg, &o)
	}
	v, err := identity.NewVerifier([]identity.IssuerConfig{cfg}, o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{iss: iss, key: key, kid: "key-1", alg: alg, clock: c, v: v, cfg: cfg, client: ct}
}

// claims returns a valid claim set for the env.
func (e *env) claims() map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": e.iss.URL(), "sub": "agent-1", "aud": testAudience,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"groups": []string{"ai-agents"},
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw builds a compact JWS by hand so tests can craft any header and any
// payload bytes (duplicate keys included), signed with key for alg.
func signRaw(t testing.TB, key any, alg string, header map[string]any, payload []byte) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for k, v := range header {
		h[k] = v
	}
	input := b64(mustJSON(t, h)) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		var r, s []byte
		rr, ss, e := ecdsa.Sign(rand.Reader, k, sum[:])
		err = e
		if err == nil {
			r, s = rr.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))
			sig = append(r, s...)
		}
	case []byte: // HMAC
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case nil:
		sig = nil
	default:
		t.Fatalf("signRaw: key type %T", key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// sign signs claims with the env's real key and kid.
func (e *env) sign(t testing.TB, header map[string]any, claims map[string]any) string {
	h := map[string]any{"kid": e.kid}
	for k, v := range header {
		h[k] = v
	}
	return signRaw(t, e.key, e.alg, h, mustJSON(t, claims))
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
