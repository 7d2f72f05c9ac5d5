package devissuer_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

const (
	clientID    = "jitgate"
	redirectURI = "http://127.0.0.1:8700/ui/callback"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
)

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type flow struct {
	t     *testing.T
	iss   *devissuer.Issuer
	h     http.Handler
	clock *fakeClock
}

func newFlow(t *testing.T) *flow {
	t.Helper()
	c := &fakeClock{t: time.Now()}
	iss, err := devissuer.New(devissuer.Options{Algorithm: "ES256", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	iss.SetURL("http://127.0.0.1:9/dev/oidc")
	return &flow{t: t, iss: iss, h: iss.Handler(), clock: c}
}

// do serves one request from a loopback client (or from remote, when set).
func (f *flow) do(method, target string, form url.Values, remote string) *httptest.ResponseRecorder {
	f.t.Helper()
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	if remote != "" {
		r.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec
}

func authorizeQuery(mod func(url.Values)) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"state": {"st-1"}, "nonce": {"n-1"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"},
	}
	if mod != nil {
		mod(q)
	}
	return "/authorize?" + q.Encode()
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// signIn runs GET /authorize and submits the form; it returns the code.
func (f *flow) signIn(sub, groups string) string {
	f.t.Helper()
	rec := f.do("GET", authorizeQuery(nil), nil, "")
	if rec.Code != 200 {
		f.t.Fatalf("GET /authorize: %d %s", rec.Code, rec.Body)
	}
	m := requestField.FindStringSubmatch(rec.Body.String())
	if m == nil {
		f.t.Fatalf("sign-in form without request field:\n%s", rec.Body)
	}
	rec = f.do("POST", "/authorize", url.Values{"request": {m[1]}, "sub": {sub}, "groups": {groups}}, "")
	if rec.Code != http.StatusFound {
		f.t.Fatalf("POST /authorize: %d %s", rec.Code, rec.Body)
	}
	loc, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		f.t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
		f.t.Fatalf("redirected to %s, want %s", got, redirectURI)
	}
	if loc.Query().Get("state") != "st-1" || loc.Query().Get("code") == "" {
		f.t.Fatalf("redirect %s lacks code or state", loc)
	}
	return loc.Query().Get("code")
}

func exchangeForm(code string, mod func(url.Values)) url.Values {
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
		"client_id": {clientID}, "code_verifier": {verifier}}
	if mod != nil {
		mod(v)
	}
	return v
}

func decodeBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return m
}

func TestAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	rec := f.do("GET", authorizeQuery(nil), nil, "")
	body := rec.Body.String()
	for _, want := range []string{"DEV ONLY sign-in", `name="sub"`, `name="groups"`, `action="authorize"`} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in form lacks %q", want)
		}
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self' http://127.0.0.1:8700") {
		t.Errorf("sign-in form CSP %q", csp)
	}
	if rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("sign-in form X-Frame-Options %q", rec.Header().Get("X-Frame-Options"))
	}

	code := f.signIn("alice", "dba, ops")
	rec = f.do("POST", "/token", exchangeForm(code, nil), "")
	if rec.Code != 200 {
		t.Fatalf("exchange: %d %s", rec.Code, rec.Body)
	}
	out := decodeBody(t, rec)
	if out["token_type"] != "Bearer" || out["access_token"] == nil {
		t.Errorf("token response %v", out)
	}
	c := payload(t, out["id_token"].(string))
	if c["sub"] != "alice" || c["aud"] != clientID || c["nonce"] != "n-1" || c["iss"] != "http://127.0.0.1:9/dev/oidc" {
		t.Errorf("id_token claims %v", c)
	}
	if g, _ := c["groups"].([]any); len(g) != 2 || g[0] != "dba" || g[1] != "ops" {
		t.Errorf("groups %v, want [dba ops]", c["groups"])
	}
	// Single use: the same code again is refused.
	rec = f.do("POST", "/token", exchangeForm(code, nil), "")
	if rec.Code != 400 || decodeBody(t, rec)["error"] != "invalid_grant" {
		t.Fatalf("replayed code: %d %s, want 400 invalid_grant", rec.Code, rec.Body)
	}
}

// The token from the code flow verifies with the broker's real Verifier, with
// the audience set to the client id, over a real loopback listener.
func TestCodeFlowTokenVerifies(t *testing.T) {
	t.Parallel()
	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(iss.URL() + authorizeQuery(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := requestField.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no form: %s", b)
	}
	resp, err = noRedirect.PostForm(iss.URL()+"/authorize", url.Values{"request": {m[1]}, "sub": {"alice"}, "groups": {"dba"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	resp, err = http.PostForm(iss.URL()+"/token", exchangeForm(loc.Query().Get("code"), nil))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		IDToken string `json:"id_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	v, err := identity.NewVerifier([]identity.IssuerConfig{{Name: "dev", Issuer: iss.URL(), Audience: clientID, DevOnly: true}}, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), out.IDToken)
	if err != nil {
		t.Fatalf("verify code-flow token: %v", err)
	}
	if id.Subject != "alice" || len(id.Groups) != 1 || id.Groups[0] != "dba" || id.Claims["nonce"] != "n-1" {
		t.Errorf("identity %+v", id)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	cases := []struct {
		name string
		mod  func(url.Values)
		want string
	}{
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain"); q.Set("code_challenge", verifier) }, `"plain" is refused: only S256`},
		{"no PKCE method", func(q url.Values) { q.Del("code_challenge_method") }, "code_challenge_method is required"},
		{"no challenge", func(q url.Values) { q.Del("code_challenge") }, "code_challenge must be"},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, "code_challenge must be"},
		{"challenge with bad characters", func(q url.Values) { q.Set("code_challenge", strings.Repeat("a", 42)+"/") }, "code_challenge must be"},
		{"implicit flow", func(q url.Values) { q.Set("response_type", "id_token") }, `response_type "id_token"`},
		{"token flow", func(q url.Values) { q.Set("response_type", "token") }, `response_type "token"`},
		{"no client", func(q url.Values) { q.Del("client_id") }, "client_id is required"},
		{"no redirect", func(q url.Values) { q.Del("redirect_uri") }, "redirect_uri is required"},
		{"remote redirect", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, "loopback addresses only"},
		{"redirect to a look-alike", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1.evil.example/cb") }, "loopback addresses only"},
		{"redirect with user info", func(q url.Values) { q.Set("redirect_uri", "http://evil.example@127.0.0.1/cb") }, "no user info"},
		{"javascript redirect", func(q url.Values) { q.Set("redirect_uri", "javascript:alert(1)") }, "want an http or https URL"},
		{"redirect with fragment", func(q url.Values) { q.Set("redirect_uri", redirectURI+"#x") }, "fragment"},
		{"repeated redirect", func(q url.Values) { q.Add("redirect_uri", "http://127.0.0.1:1/x") }, "redirect_uri is repeated"},
		{"huge state", func(q url.Values) { q.Set("state", strings.Repeat("s", 600)) }, "limited to 512 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := f.do("GET", authorizeQuery(c.mod), nil, "")
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), c.want) {
				t.Fatalf("status %d body %q, want 400 with %q", rec.Code, rec.Body, c.want)
			}
			if loc := rec.Header().Get("Location"); loc != "" {
				t.Fatalf("refusal redirects to %s", loc)
			}
		})
	}
	// Non-loopback clients get neither the form nor a code.
	if rec := f.do("GET", authorizeQuery(nil), nil, "192.0.2.7:5000"); rec.Code != 403 {
		t.Errorf("non-loopback GET /authorize: %d", rec.Code)
	}
	if rec := f.do("POST", "/authorize", url.Values{"request": {"x"}, "sub": {"a"}}, "[2001:db8::1]:5000"); rec.Code != 403 {
		t.Errorf("non-loopback POST /authorize: %d", rec.Code)
	}
	// A submission needs a request id from a form this issuer served, once.
	if rec := f.do("POST", "/authorize", url.Values{"request": {"forged"}, "sub": {"alice"}}, ""); rec.Code != 400 || !strings.Contains(rec.Body.String(), "unknown or expired sign-in request") {
		t.Errorf("forged request id: %d %s", rec.Code, rec.Body)
	}
	rec := f.do("GET", authorizeQuery(nil), nil, "")
	id := requestField.FindStringSubmatch(rec.Body.String())[1]
	if rec := f.do("POST", "/authorize", url.Values{"request": {id}, "sub": {"  "}}, ""); rec.Code != 400 || !strings.Contains(rec.Body.String(), "subject is required") {
		t.Errorf("empty subject: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do("POST", "/authorize", url.Values{"request": {id}, "sub": {"alice"}}, ""); rec.Code != 400 {
		t.Errorf("request id reused after a failed submission: %d, want 400", rec.Code)
	}
	// A sign-in form expires.
	rec = f.do("GET", authorizeQuery(nil), nil, "")
	id = requestField.FindStringSubmatch(rec.Body.String())[1]
	f.clock.Advance(devissuer.AuthorizeTTL + time.Second)
	if rec := f.do("POST", "/authorize", url.Values{"request": {id}, "sub": {"alice"}}, ""); rec.Code != 400 {
		t.Errorf("expired sign-in form: %d, want 400", rec.Code)
	}
}

func TestCodeExchangeRefusals(t *testing.T) {
	t.Parallel()
	otherVerifier := strings.Repeat("x", 43)
	cases := []struct {
		name string
		mod  func(url.Values)
		wait time.Duration
		want string
	}{
		{"wrong verifier", func(v url.Values) { v.Set("code_verifier", otherVerifier) }, 0, "code_verifier does not match"},
		{"verifier is the challenge (plain downgrade)", func(v url.Values) { v.Set("code_verifier", challenge(verifier)) }, 0, "code_verifier does not match"},
		{"no verifier", func(v url.Values) { v.Del("code_verifier") }, 0, "code_verifier is missing"},
		{"other redirect_uri", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:8700/ui/other") }, 0, "redirect_uri does not match"},
		{"no redirect_uri", func(v url.Values) { v.Del("redirect_uri") }, 0, "redirect_uri does not match"},
		{"other client", func(v url.Values) { v.Set("client_id", "other") }, 0, "client_id does not match"},
		{"expired code", nil, devissuer.CodeTTL + time.Second, "authorization code expired"},
		{"unknown code", func(v url.Values) { v.Set("code", "nope") }, 0, "unknown or already used"},
		{"repeated code", func(v url.Values) { v.Add("code", "nope") }, 0, "code is repeated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFlow(t)
			code := f.signIn("alice", "dba")
			f.clock.Advance(c.wait)
			rec := f.do("POST", "/token", exchangeForm(code, c.mod), "")
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), c.want) {
				t.Fatalf("status %d body %s, want 400 with %q", rec.Code, rec.Body, c.want)
			}
			// A failed attempt with the code burns it: the right request now
			// fails too. (The last two cases never presented the code.)
			rec = f.do("POST", "/token", exchangeForm(code, nil), "")
			if presented := !strings.Contains(c.name, "code"); presented || c.wait > 0 {
				if rec.Code != 400 || !strings.Contains(rec.Body.String(), "unknown or already used") {
					t.Fatalf("code usable after a failed exchange: %d %s", rec.Code, rec.Body)
				}
			} else if rec.Code != 200 {
				t.Fatalf("code burned by a request that did not present it: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestTokenEndpointGrantTypes(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	// The dev token endpoint (no grant_type) still works.
	rec := f.do("POST", "/token", url.Values{"sub": {"agent-1"}, "aud": {"jitgate"}, "groups": {"ai-agents"}}, "")
	if rec.Code != 200 {
		t.Fatalf("dev token: %d %s", rec.Code, rec.Body)
	}
	if c := payload(t, decodeBody(t, rec)["id_token"].(string)); c["sub"] != "agent-1" || c["nonce"] != nil {
		t.Errorf("dev token claims %v", c)
	}
	for _, gt := range []string{"password", "client_credentials", "implicit", ""} {
		rec := f.do("POST", "/token", url.Values{"grant_type": {gt}, "sub": {"a"}, "aud": {"b"}}, "")
		if rec.Code != 400 || decodeBody(t, rec)["error"] != "unsupported_grant_type" {
			t.Errorf("grant_type %q: %d %s, want 400 unsupported_grant_type", gt, rec.Code, rec.Body)
		}
	}
	// The code exchange is loopback-only too.
	code := f.signIn("alice", "dba")
	if rec := f.do("POST", "/token", exchangeForm(code, nil), "192.0.2.7:5000"); rec.Code != 403 {
		t.Errorf("non-loopback exchange: %d", rec.Code)
	}
	// Basic authentication carrying the client id is accepted (x/oauth2's default).
	code = f.signIn("alice", "dba")
	form := exchangeForm(code, func(v url.Values) { v.Del("client_id") })
	r := httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(clientID, "")
	r.RemoteAddr = "127.0.0.1:1"
	rec = httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	if rec.Code != 200 {
		t.Errorf("exchange with Basic client id: %d %s", rec.Code, rec.Body)
	}
}

// FuzzAuthorize: whatever the query, GET /authorize never panics, never
// redirects, and serves the sign-in form only for an S256 request with a
// loopback redirect_uri.
func FuzzAuthorize(f *testing.F) {
	f.Add(strings.TrimPrefix(authorizeQuery(nil), "/authorize?"))
	f.Add(strings.TrimPrefix(authorizeQuery(func(q url.Values) { q.Set("code_challenge_method", "plain") }), "/authorize?"))
	f.Add("response_type=code&client_id=a&redirect_uri=http://[::1]/x&code_challenge_method=S256&code_challenge=" + strings.Repeat("A", 43))
	f.Add("redirect_uri=http%3A%2F%2Flocalhost%2Fcb&redirect_uri=https://evil")
	iss, err := devissuer.New(devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		f.Fatal(err)
	}
	iss.SetURL("http://127.0.0.1:9")
	h := iss.Handler()
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest("GET", "/authorize", nil)
		r.URL.RawQuery = query
		r.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Header().Get("Location") != "" {
			t.Fatalf("GET /authorize redirected for %q", query)
		}
		if rec.Code != 200 {
			return
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("form served for an unparseable query %q", query)
		}
		if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" {
			t.Fatalf("form served without S256 code flow: %q", query)
		}
		u, err := url.Parse(q.Get("redirect_uri"))
		if err != nil {
			t.Fatalf("form served for a bad redirect_uri: %q", query)
		}
		if h := u.Hostname(); h != "localhost" && !strings.HasPrefix(h, "127.") && h != "::1" && !strings.HasPrefix(h, "::ffff:127.") {
			t.Fatalf("form served for a non-loopback redirect_uri %q", u)
		}
	})
}
