package identity_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

// attackerServer serves a JWKS with the attacker's key and counts requests:
// the verifier must never fetch from it.
func attackerServer(t *testing.T, key *ecdsa.PrivateKey) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "evil", Algorithm: "ES256", Use: "sig"}}}
		_ = jsonEncode(w, set)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestVerifyRefusesAttacks(t *testing.T) {
	t.Parallel()
	rsaEnv := newEnv(t, "RS256")
	ecEnv := newEnv(t, "ES256")
	ecOnly := newEnv(t, "ES256", func(c *identity.IssuerConfig, _ *identity.Options) { c.Algorithms = []string{"ES256"} })
	evil, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evilSrv, evilHits := attackerServer(t, evil)

	rsaPubDER, err := x509.MarshalPKIXPublicKey(rsaEnv.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPubDER})
	evilJWK := jose.JSONWebKey{Key: evil.Public(), KeyID: "key-1", Algorithm: "ES256"}
	evilJWKJSON, _ := evilJWK.MarshalJSON()
	var evilJWKMap map[string]any
	_ = jsonUnmarshal(evilJWKJSON, &evilJWKMap)

	type tc struct {
		name  string
		env   *env
		token func(t *testing.T, e *env) string
		want  string
	}
	cases := []tc{
		{"alg none", rsaEnv, func(t *testing.T, e *env) string {
			return signRaw(t, nil, "none", nil, mustJSON(t, e.claims()))
		}, "unsigned token"},
		{"alg None with junk signature", rsaEnv, func(t *testing.T, e *env) string {
			tok := signRaw(t, nil, "None", nil, mustJSON(t, e.claims()))
			return tok + "AAAA"
		}, "unsigned token"},
		{"alg NONE", rsaEnv, func(t *testing.T, e *env) string {
			return signRaw(t, nil, "NONE", map[string]any{"kid": e.kid}, mustJSON(t, e.claims())) + "eA"
		}, "unsigned token"},
		{"RS/HS confusion: HS256 keyed with the public key PEM", rsaEnv, func(t *testing.T, e *env) string {
			return signRaw(t, rsaPubPEM, "HS256", map[string]any{"kid": e.kid}, mustJSON(t, e.claims()))
		}, `algorithm "HS256" not allowed`},
		{"RS/HS confusion: HS256 keyed with the public key DER", rsaEnv, func(t *testing.T, e *env) string {
			return signRaw(t, rsaPubDER, "HS256", map[string]any{"kid": e.kid}, mustJSON(t, e.claims()))
		}, `algorithm "HS256" not allowed`},
		{"ES256 with r=s=0", ecEnv, func(t *testing.T, e *env) string {
			tok := e.sign(t, nil, e.claims())
			return tok[:strings.LastIndex(tok, ".")+1] + b64(make([]byte, 64))
		}, "signature invalid"},
		{"ES256 with a truncated signature", ecEnv, func(t *testing.T, e *env) string {
			tok := e.sign(t, nil, e.claims())
			return tok[:strings.LastIndex(tok, ".")+1] + b64(make([]byte, 8))
		}, "signature invalid"},
		{"ES256 with an ASN.1 (DER) signature of the right input", ecEnv, func(t *testing.T, e *env) string {
			tok := e.sign(t, nil, e.claims())
			dot := strings.LastIndex(tok, ".")
			sum := sha256.Sum256([]byte(tok[:dot]))
			der, err := e.key.Sign(rand.Reader, sum[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			return tok[:dot+1] + b64(der)
		}, "signature invalid"},
		{"kid that is not a string", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, map[string]any{"kid": 1}, e.claims())
		}, "kid is not a string"},
		{"RS256 token with a valid signature over other claims", rsaEnv, func(t *testing.T, e *env) string {
			a := strings.Split(e.sign(t, nil, e.claims()), ".")
			b := strings.Split(e.sign(t, nil, with(e.claims(), "sub", "admin")), ".")
			return a[0] + "." + b[1] + "." + a[2]
		}, "signature invalid"},
		{"RS256 token with a flipped payload byte", rsaEnv, func(t *testing.T, e *env) string {
			tok := e.sign(t, nil, e.claims())
			parts := strings.Split(tok, ".")
			parts[1] = b64(mustJSON(t, with(e.claims(), "sub", "admin")))
			return strings.Join(parts, ".")
		}, "signature invalid"},
		{"kid with a path", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, map[string]any{"kid": "../../../../etc/passwd"}, e.claims())
		}, `unknown key id "../../../../etc/passwd"`},
		{"kid with SQL", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, map[string]any{"kid": "x' UNION SELECT 'secret"}, e.claims())
		}, "unknown key id"},
		{"jku pointing at an attacker key set", ecEnv, func(t *testing.T, e *env) string {
			return signRaw(t, evil, "ES256", map[string]any{"kid": "evil", "jku": evilSrv.URL}, mustJSON(t, e.claims()))
		}, `unknown key id "evil"`},
		{"x5u pointing at an attacker", ecEnv, func(t *testing.T, e *env) string {
			return signRaw(t, evil, "ES256", map[string]any{"kid": "evil", "x5u": evilSrv.URL}, mustJSON(t, e.claims()))
		}, `unknown key id "evil"`},
		{"embedded attacker jwk reusing the real kid", ecEnv, func(t *testing.T, e *env) string {
			return signRaw(t, evil, "ES256", map[string]any{"kid": "key-1", "jwk": evilJWKMap}, mustJSON(t, e.claims()))
		}, "signature invalid"},
		{"embedded attacker jwk without kid", ecEnv, func(t *testing.T, e *env) string {
			return signRaw(t, evil, "ES256", map[string]any{"jwk": evilJWKMap}, mustJSON(t, e.claims()))
		}, "signature invalid"},
		{"expired", rsaEnv, func(t *testing.T, e *env) string {
			now := e.clock.Now()
			return e.sign(t, nil, with(e.claims(), "iat", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Hour).Unix()))
		}, "token expired"},
		{"expired just beyond the clock skew", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "exp", e.clock.Now().Add(-31*time.Second).Unix()))
		}, "token expired"},
		{"nbf in the future", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "nbf", e.clock.Now().Add(time.Hour).Unix()))
		}, "token not yet valid"},
		{"iat in the future", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "iat", e.clock.Now().Add(time.Hour).Unix()))
		}, "issued in the future"},
		{"missing exp", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "exp", nil))
		}, "no expiry (exp)"},
		{"exp as a string", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "exp", "9999999999"))
		}, "exp is not a NumericDate"},
		{"missing sub", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "sub", nil))
		}, "no subject"},
		{"iss with a trailing slash", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "iss", e.iss.URL()+"/"))
		}, "unknown issuer"},
		{"iss with https instead of http", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "iss", strings.Replace(e.iss.URL(), "http://", "https://", 1)))
		}, "unknown issuer"},
		{"iss of another authorization server of the same org", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "iss", e.iss.URL()+"/oauth2/other"))
		}, "unknown issuer"},
		{"iss differing in case", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "iss", strings.ToUpper(e.iss.URL())))
		}, "unknown issuer"},
		{"missing iss", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "iss", nil))
		}, "no issuer"},
		{"wrong aud", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "aud", "api://other"))
		}, "audience mismatch"},
		{"aud list without ours", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "aud", []string{"a", "b"}))
		}, "audience mismatch"},
		{"missing aud", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "aud", nil))
		}, "audience mismatch"},
		{"wrong azp", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "aud", []string{testAudience, "other-client"}, "azp", "other-client"))
		}, "authorized party mismatch"},
		{"oversize", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "pad", strings.Repeat("A", 20<<10)))
		}, "token too large"},
		{"10k dots", rsaEnv, func(t *testing.T, e *env) string {
			return strings.Repeat(".", 10_000)
		}, "exactly 3 dot-separated parts"},
		{"four parts (JWE shape)", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, e.claims()) + ".AAAA"
		}, "exactly 3 dot-separated parts"},
		{"whitespace around the token", rsaEnv, func(t *testing.T, e *env) string {
			return " " + e.sign(t, nil, e.claims()) + "\n"
		}, "outside base64url"},
		{"padding characters", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, e.claims()) + "=="
		}, "outside base64url"},
		{"duplicate sub in the payload", rsaEnv, func(t *testing.T, e *env) string {
			c := e.claims()
			payload := fmt.Sprintf(`{"iss":%q,"sub":"agent-1","aud":%q,"exp":%d,"sub":"admin"}`, c["iss"], testAudience, c["exp"])
			return signRaw(t, e.key, "RS256", map[string]any{"kid": e.kid}, []byte(payload))
		}, `duplicate JSON key "sub"`},
		{"duplicate aud differing in case", rsaEnv, func(t *testing.T, e *env) string {
			c := e.claims()
			payload := fmt.Sprintf(`{"iss":%q,"sub":"agent-1","aud":%q,"exp":%d,"AUD":"api://other"}`, c["iss"], testAudience, c["exp"])
			return signRaw(t, e.key, "RS256", map[string]any{"kid": e.kid}, []byte(payload))
		}, `duplicate JSON key "AUD"`},
		{"duplicate nested key", rsaEnv, func(t *testing.T, e *env) string {
			c := e.claims()
			payload := fmt.Sprintf(`{"iss":%q,"sub":"agent-1","aud":%q,"exp":%d,"x":{"a":1,"a":2}}`, c["iss"], testAudience, c["exp"])
			return signRaw(t, e.key, "RS256", map[string]any{"kid": e.kid}, []byte(payload))
		}, `duplicate JSON key "a"`},
		{"duplicate alg in the header", rsaEnv, func(t *testing.T, e *env) string {
			tok := e.sign(t, nil, e.claims())
			parts := strings.Split(tok, ".")
			parts[0] = b64([]byte(`{"alg":"RS256","kid":"key-1","alg":"none"}`))
			return strings.Join(parts, ".")
		}, `duplicate JSON key "alg"`},
		{"payload is not an object", rsaEnv, func(t *testing.T, e *env) string {
			return signRaw(t, e.key, "RS256", map[string]any{"kid": e.kid}, []byte(`["iss"]`))
		}, "not a JSON object"},
		{"critical header", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, map[string]any{"crit": []string{"exp"}, "exp": 1}, e.claims())
		}, "critical header"},
		{"groups of the wrong type", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "groups", map[string]any{"admin": true}))
		}, `groups claim "groups" is not a list of strings`},
		{"groups holding a number", rsaEnv, func(t *testing.T, e *env) string {
			return e.sign(t, nil, with(e.claims(), "groups", []any{"a", 1}))
		}, "holds a non-string"},
		{"RS256 signature over an ES256 issuer", ecEnv, func(t *testing.T, e *env) string {
			rk, _ := testKeys(t)
			return signRaw(t, rk, "RS256", map[string]any{"kid": e.kid}, mustJSON(t, e.claims()))
		}, `key "key-1" does not fit algorithm RS256`},
		{"RS256 over an issuer that allows only ES256", ecOnly, func(t *testing.T, e *env) string {
			rk, _ := testKeys(t)
			return signRaw(t, rk, "RS256", map[string]any{"kid": e.kid}, mustJSON(t, e.claims()))
		}, `algorithm "RS256" not allowed for issuer dev (allowed: ES256)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token(t, c.env)
			id, err := c.env.v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatalf("token accepted: %+v", id)
			}
			if !errors.Is(err, identity.ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), tok) && len(tok) > 20 {
				t.Errorf("error echoes the token")
			}
		})
	}
	if n := evilHits.Load(); n != 0 {
		t.Errorf("verifier fetched from the attacker's jku/x5u %d times", n)
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "ES256", func(c *identity.IssuerConfig, _ *identity.Options) {
		c.GroupsClaim = "roles"
		c.HumanWhen = "token_type=human"
		c.AuthorizedParty = "cli-client"
	})
	now := e.clock.Now()
	cases := []struct {
		name   string
		claims map[string]any
		groups []string
		human  bool
	}{
		{"groups from a custom claim", with(e.claims(), "roles", []string{"dba", "ai-agents"}, "azp", "cli-client"), []string{"dba", "ai-agents"}, false},
		{"single group as a string", with(e.claims(), "roles", "dba", "azp", "cli-client"), []string{"dba"}, false},
		{"human marker", with(e.claims(), "token_type", "human", "azp", "cli-client"), nil, true},
		{"expired within the clock skew", with(e.claims(), "azp", "cli-client", "exp", now.Add(-20*time.Second).Unix()), nil, false},
		{"nbf within the clock skew", with(e.claims(), "azp", "cli-client", "nbf", now.Add(20*time.Second).Unix()), nil, false},
		{"aud as a list", with(e.claims(), "azp", "cli-client", "aud", []string{"x", testAudience}), nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := e.v.Verify(context.Background(), e.sign(t, nil, c.claims))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(id.Groups) != fmt.Sprint(c.groups) || id.Human != c.human {
				t.Errorf("groups %v human %v, want %v %v", id.Groups, id.Human, c.groups, c.human)
			}
			if id.Subject != "agent-1" || id.IssuerName != "dev" || !id.DevOnly || id.Key() != e.iss.URL()+"|agent-1" {
				t.Errorf("identity %+v", id)
			}
		})
	}
	// AuthorizedParty set: a token without azp is refused.
	_, err := e.v.Verify(context.Background(), e.sign(t, nil, e.claims()))
	if err == nil || !strings.Contains(err.Error(), "authorized party mismatch") {
		t.Errorf("token without azp: %v", err)
	}
}

func TestVerifyGitHubActionsClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "RS256")
	gh := with(e.claims(),
		"sub", "repo:octo-org/octo-repo:pull_request",
		"repository", "octo-org/octo-repo",
		"repository_owner", "octo-org",
		"ref", "refs/pull/42/merge",
		"sha", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
		"event_name", "pull_request",
		"job_workflow_ref", "octo-org/octo-repo/.github/workflows/ci.yml@refs/pull/42/merge",
		"actor", "octocat",
		"run_id", "1234567890",
		"run_attempt", "1",
		"runner_environment", "github-hosted",
		"groups", nil,
	)
	id, err := e.v.Verify(context.Background(), e.sign(t, nil, gh))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"repository", "ref", "sha", "event_name", "job_workflow_ref", "actor", "run_id"} {
		if id.Claims[k] != gh[k] {
			t.Errorf("claim %s = %v, want %v", k, id.Claims[k], gh[k])
		}
	}
	if _, ok := id.Claims["exp"].(int64); !ok {
		t.Errorf("exp claim is %T, want int64", id.Claims["exp"])
	}
	if len(id.Groups) != 0 || id.Human {
		t.Errorf("groups %v human %v", id.Groups, id.Human)
	}
	if !id.Expiry.Equal(time.Unix(gh["exp"].(int64), 0)) {
		t.Errorf("expiry %v", id.Expiry)
	}
}

// A flood of unknown kids costs at most one key-set fetch per interval.
func TestUnknownKidFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "RS256")
	ctx := context.Background()
	if _, err := e.v.Verify(ctx, e.sign(t, nil, e.claims())); err != nil {
		t.Fatal(err)
	}
	if n := e.iss.JWKSFetches(); n != 1 {
		t.Fatalf("fetches after first token = %d, want 1", n)
	}
	flood := func() {
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok := e.sign(t, map[string]any{"kid": fmt.Sprintf("kid-%d", i)}, e.claims())
				if _, err := e.v.Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), "unknown key id") {
					t.Errorf("forged kid: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	flood()
	if n := e.iss.JWKSFetches(); n != 1 {
		t.Fatalf("fetches after a flood within the interval = %d, want 1", n)
	}
	e.clock.Advance(identity.DefaultMinRefreshInterval)
	flood()
	if n := e.iss.JWKSFetches(); n != 2 {
		t.Fatalf("fetches after a flood in the next interval = %d, want 2", n)
	}
}

// A rotated key is accepted after one refresh, once the interval allows it.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "RS256")
	ctx := context.Background()
	oldTok := e.sign(t, nil, e.claims())
	if _, err := e.v.Verify(ctx, oldTok); err != nil {
		t.Fatal(err)
	}
	if err := e.iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	newTok, err := e.iss.Token("agent-1", nil, testAudience, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Within the interval the new kid is unknown and no fetch happens.
	if _, err := e.v.Verify(ctx, newTok); err == nil || !strings.Contains(err.Error(), "unknown key id") {
		t.Fatalf("new kid within the interval: %v", err)
	}
	e.clock.Advance(identity.DefaultMinRefreshInterval)
	if _, err := e.v.Verify(ctx, newTok); err != nil {
		t.Fatalf("rotated key not accepted after refresh: %v", err)
	}
	if n := e.iss.JWKSFetches(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}
	// The old key is still published until RemoveOld, so old tokens verify.
	if _, err := e.v.Verify(ctx, oldTok); err != nil {
		t.Errorf("old token after rotation: %v", err)
	}
	// Once removed and refreshed, the old key is gone.
	e.iss.RemoveOld()
	e.clock.Advance(identity.DefaultMinRefreshInterval)
	_, _ = e.v.Verify(ctx, e.sign(t, map[string]any{"kid": "trigger-refresh"}, e.claims()))
	if _, err := e.v.Verify(ctx, oldTok); err == nil || !strings.Contains(err.Error(), "unknown key id") {
		t.Errorf("old token after RemoveOld: %v", err)
	}
}

func TestIssuerUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more

	rk, _ := testKeys(t)
	c := newClock()
	ct := &countingTransport{base: http.DefaultTransport}
	v, err := identity.NewVerifier([]identity.IssuerConfig{{Name: "down", Issuer: url, Audience: testAudience, DevOnly: true}},
		identity.Options{Now: c.Now, HTTPClient: &http.Client{Transport: ct}})
	if err != nil {
		t.Fatal(err)
	}
	if ct.n.Load() != 0 {
		t.Fatal("NewVerifier did network I/O")
	}
	claims := map[string]any{"iss": url, "sub": "a", "aud": testAudience, "exp": c.Now().Add(time.Minute).Unix()}
	tok := signRaw(t, rk, "RS256", map[string]any{"kid": "k"}, mustJSON(t, claims))
	for i := range 3 {
		_, err := v.Verify(context.Background(), tok)
		if err == nil || !errors.Is(err, identity.ErrInvalidToken) || !strings.Contains(err.Error(), "issuer unreachable") {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if n := ct.n.Load(); n != 1 {
		t.Errorf("discovery attempts within one interval = %d, want 1", n)
	}
	c.Advance(identity.DefaultMinRefreshInterval)
	_, _ = v.Verify(context.Background(), tok)
	if n := ct.n.Load(); n != 2 {
		t.Errorf("discovery attempts after the interval = %d, want 2", n)
	}
}

// An issuer that is up but serves a broken key set or discovery document.
func TestIssuerMisbehaves(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		handler func(base string) http.HandlerFunc
		want    string
	}{
		{"jwks 500", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/jwks" {
					http.Error(w, "boom", 500)
					return
				}
				_ = jsonEncode(w, map[string]string{"issuer": base, "jwks_uri": base + "/jwks"})
			}
		}, "issuer unreachable: key set"},
		{"jwks not a key set", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/jwks" {
					_, _ = w.Write([]byte(`{"nope":1}`))
					return
				}
				_ = jsonEncode(w, map[string]string{"issuer": base, "jwks_uri": base + "/jwks"})
			}
		}, `no "keys" member`},
		{"discovery names another issuer", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				_ = jsonEncode(w, map[string]string{"issuer": base + "/", "jwks_uri": base + "/jwks"})
			}
		}, "discovery document names issuer"},
		{"discovery without jwks_uri", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				_ = jsonEncode(w, map[string]string{"issuer": base})
			}
		}, "no usable jwks_uri"},
		{"huge discovery document", func(base string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(`{"issuer":"` + strings.Repeat("a", 2<<20) + `"}`))
			}
		}, "larger than"},
	}
	rk, _ := testKeys(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var base string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.handler(base)(w, r) }))
			defer srv.Close()
			base = srv.URL
			clk := newClock()
			v, err := identity.NewVerifier([]identity.IssuerConfig{{Name: "x", Issuer: base, Audience: testAudience, DevOnly: true}}, identity.Options{Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			claims := map[string]any{"iss": base, "sub": "a", "aud": testAudience, "exp": clk.Now().Add(time.Minute).Unix()}
			_, err = v.Verify(context.Background(), signRaw(t, rk, "RS256", map[string]any{"kid": "k"}, mustJSON(t, claims)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestVerifyCanceledContextIsNotCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "ES256")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.v.Verify(ctx, e.sign(t, nil, e.claims())); err == nil {
		t.Fatal("verified with a canceled context before any key was known")
	}
	if _, err := e.v.Verify(context.Background(), e.sign(t, nil, e.claims())); err != nil {
		t.Fatalf("a canceled request poisoned the issuer: %v", err)
	}
}

func TestNewVerifierRefusesBadConfig(t *testing.T) {
	t.Parallel()
	good := identity.IssuerConfig{Name: "okta", Issuer: "https://example.okta.com/oauth2/default", Audience: "api://jitgate"}
	mod := func(f func(*identity.IssuerConfig)) []identity.IssuerConfig {
		c := good
		f(&c)
		return []identity.IssuerConfig{c}
	}
	cases := []struct {
		name    string
		issuers []identity.IssuerConfig
		opts    identity.Options
		want    string
	}{
		{"no issuers", nil, identity.Options{}, "no issuers"},
		{"alg none", mod(func(c *identity.IssuerConfig) { c.Algorithms = []string{"none"} }), identity.Options{}, "unsigned tokens are never accepted"},
		{"alg NoNe", mod(func(c *identity.IssuerConfig) { c.Algorithms = []string{"RS256", "NoNe"} }), identity.Options{}, "unsigned tokens are never accepted"},
		{"alg HS256", mod(func(c *identity.IssuerConfig) { c.Algorithms = []string{"HS256"} }), identity.Options{}, "symmetric algorithms are never accepted"},
		{"alg hs512", mod(func(c *identity.IssuerConfig) { c.Algorithms = []string{"hs512"} }), identity.Options{}, "symmetric algorithms are never accepted"},
		{"alg unknown", mod(func(c *identity.IssuerConfig) { c.Algorithms = []string{"rs256"} }), identity.Options{}, "not supported"},
		{"skew too large", mod(func(c *identity.IssuerConfig) { c.ClockSkew = 6 * time.Minute }), identity.Options{}, "exceeds the maximum"},
		{"skew negative", mod(func(c *identity.IssuerConfig) { c.ClockSkew = -time.Second }), identity.Options{}, "negative"},
		{"http issuer", mod(func(c *identity.IssuerConfig) { c.Issuer = "http://example.okta.com" }), identity.Options{}, "scheme must be https"},
		{"dev issuer not on loopback", mod(func(c *identity.IssuerConfig) { c.Issuer = "http://10.0.0.1:8080"; c.DevOnly = true }), identity.Options{}, "loopback"},
		{"no audience", mod(func(c *identity.IssuerConfig) { c.Audience = " " }), identity.Options{}, "audience is required"},
		{"pipe in issuer", mod(func(c *identity.IssuerConfig) { c.Issuer = "https://a.example/x|y" }), identity.Options{}, "must not contain '|'"},
		{"query in issuer", mod(func(c *identity.IssuerConfig) { c.Issuer = "https://a.example/?x=1" }), identity.Options{}, "without user info, query or fragment"},
		{"bad name", mod(func(c *identity.IssuerConfig) { c.Name = "Okta Prod" }), identity.Options{}, "issuer name"},
		{"bad human_when", mod(func(c *identity.IssuerConfig) { c.HumanWhen = "human" }), identity.Options{}, "want claim=value"},
		{"duplicate name", []identity.IssuerConfig{good, {Name: "okta", Issuer: "https://b.example", Audience: "x"}}, identity.Options{}, "duplicate issuer name"},
		{"duplicate URL", []identity.IssuerConfig{good, {Name: "okta2", Issuer: good.Issuer, Audience: "x"}}, identity.Options{}, "configured twice"},
		{"negative token limit", []identity.IssuerConfig{good}, identity.Options{MaxTokenBytes: -1}, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := identity.NewVerifier(c.issuers, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestDevIssuerTokenEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "ES256")
	resp, err := http.PostForm(e.iss.URL()+"/token", map[string][]string{
		"sub": {"dev-agent"}, "aud": {testAudience}, "groups": {"ai-agents, dba"},
		"claim": {"repository=org/repo", "event_name=push"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := jsonDecode(resp.Body, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d err %v", resp.StatusCode, err)
	}
	id, err := e.v.Verify(context.Background(), out.IDToken)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "dev-agent" || fmt.Sprint(id.Groups) != "[ai-agents dba]" || id.Claims["repository"] != "org/repo" || !id.DevOnly {
		t.Errorf("identity %+v", id)
	}
	// Missing sub is refused.
	resp2, err := http.PostForm(e.iss.URL()+"/token", map[string][]string{"aud": {testAudience}})
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Errorf("token without sub: status %d", resp2.StatusCode)
	}
}

func TestDevIssuerTokenEndpointRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	iss, err := devissuer.New(devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	iss.SetURL("http://127.0.0.1:1")
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("sub=a&aud=b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = "192.0.2.7:5555"
	rec := httptest.NewRecorder()
	iss.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "loopback clients only") {
		t.Errorf("non-loopback /token: %d %s", rec.Code, rec.Body)
	}
	if _, _, err := devissuer.Start("0.0.0.0:0", devissuer.Options{}); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Errorf("Start on 0.0.0.0: %v", err)
	}
}
