package approvalui_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/approvalui"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/local"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
	launchlocal "github.com/jitgate/jitgate/broker/launch/local"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/bolt"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// The targets' credential sources point at a closed port: no test here runs a
// grant, so they are never contacted.
const testPolicy = `version: 1
issuers:
  - name: okta
    issuer: https://example.okta.com/oauth2/default
    audience: api://jitgate
targets:
  - name: test-db
    kind: postgres
    address: 127.0.0.1:1
    database: shop_test
    credentials: {source: local, admin_dsn: "postgres://x@127.0.0.1:1/postgres", read_role: r, write_role: w}
  - name: prod-db
    kind: postgres
    address: 127.0.0.1:1
    database: shop
    credentials: {source: local, admin_dsn: "postgres://x@127.0.0.1:1/postgres", read_role: r, write_role: w}
rules:
  - name: agents-write-needs-dba
    when: '"ai-agents" in identity.groups'
    targets: [test-db]
    access: write
    max_ttl: 10m
    approval: {approvers: {groups: [dba]}, quorum: 1, timeout: 15m}
  - name: prod-needs-two
    when: '"ai-agents" in identity.groups'
    targets: [prod-db]
    access: write
    approval: {approvers: {groups: [dba]}, quorum: 2, timeout: 15m, covers_next: 2, explain: true}
`

const insert = "INSERT INTO orders (user_id, item, amount) VALUES (1, 'slide rule', 3.50)"

// clock is the verifier's and the page's clock: real time plus an offset, so
// the dev issuer's real tokens can be made to expire.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type env struct {
	t      *testing.T
	svc    *broker.Service
	iss    *devissuer.Issuer
	issURL string
	ui     string // base URL of the page
	clock  *clock
	// rewriteNonce makes the issuer sign a nonce other than the one asked for.
	rewriteNonce atomic.Bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvRec(t, nil)
}

// newEnvRec is newEnv with a replay handler mounted (recordings_test.go).
func newEnvRec(t *testing.T, rec approvalui.Recordings) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}}
	iss, err := devissuer.New(devissuer.Options{Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	e.iss = iss
	issH := iss.Handler()
	issSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && r.URL.Path == "/authorize" && e.rewriteNonce.Load() {
			q := r.URL.Query()
			q.Set("nonce", "attacker-nonce")
			r.URL.RawQuery = q.Encode()
		}
		issH.ServeHTTP(w, r)
	}))
	t.Cleanup(issSrv.Close)
	iss.SetURL(issSrv.URL)
	e.issURL = issSrv.URL

	v, err := identity.NewVerifier([]identity.IssuerConfig{{Name: "dev", Issuer: issSrv.URL, Audience: "jitgate", DevOnly: true}},
		identity.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = newService(t, e.clock)

	uiSrv := httptest.NewUnstartedServer(nil)
	e.ui = "http://" + uiSrv.Listener.Addr().String() + "/ui"
	h, err := approvalui.New(approvalui.Config{
		Service: e.svc, Verifier: v, IssuerURL: issSrv.URL, ClientID: "jitgate", BaseURL: e.ui,
		CookieKey: []byte(strings.Repeat("k", 32)), Now: e.clock.Now, Recordings: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", h)
	uiSrv.Config.Handler = mux
	uiSrv.Start()
	t.Cleanup(uiSrv.Close)
	return e
}

func newService(t *testing.T, c *clock) *broker.Service {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "grants.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	al, err := audit.Open(filepath.Join(dir, "audit.jsonl"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	sources := map[string]credentials.Source{}
	for _, name := range []string{"test-db", "prod-db"} {
		src, err := local.NewPostgres(local.PostgresConfig{AdminDSN: "postgres://x@127.0.0.1:1/postgres", Database: "shop",
			Roles: map[spec.Access]string{spec.Read: "r", spec.Write: "w"}})
		if err != nil {
			t.Fatal(err)
		}
		sources[name] = src
	}
	ln, err := launchlocal.New(launchlocal.Config{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := broker.New(broker.Config{Policy: p, Store: st, Audit: al, Sources: sources, Launcher: ln, RecordDir: dir, Now: c.Now,
		Explainer: fixedEstimate(3)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// fixedEstimate stands in for EXPLAIN against the target.
type fixedEstimate float64

func (f fixedEstimate) Explain(context.Context, string, string) (float64, error) {
	return float64(f), nil
}

// ident is an identity as the Verifier makes it from the dev issuer's token.
func (e *env) ident(sub string, groups ...string) identity.Identity {
	return identity.Identity{IssuerName: "dev", Issuer: e.issURL, Subject: sub, Groups: groups, DevOnly: true,
		Claims: map[string]any{"repository": "acme/shop", "ref": "refs/pull/7/merge", "sha": "0123456789abcdef0123456789abcdef01234567"}}
}

// request files a pending grant as agent-1, the way `jitgate exec` does.
func (e *env) request(target, sql, reason string) *grant.Grant {
	e.t.Helper()
	g, err := e.svc.Request(context.Background(), e.ident("agent-1", "ai-agents"),
		broker.RequestInput{Target: target, Mode: spec.Exec, Operation: sql, Reason: reason})
	if err != nil {
		e.t.Fatal(err)
	}
	if g.State != grant.Pending {
		e.t.Fatalf("grant is %s, want pending", g.State)
	}
	return g
}

func (e *env) state(id string) grant.State {
	e.t.Helper()
	g, err := e.svc.Get(context.Background(), e.ident("root", "dba"), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return g.State
}

// browser is a cookie-keeping client that records every Set-Cookie.
type browser struct {
	t      *testing.T
	e      *env
	c      *http.Client
	mu     sync.Mutex
	cookie []*http.Cookie
}

type recorder struct {
	b *browser
}

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		r.b.mu.Lock()
		r.b.cookie = append(r.b.cookie, resp.Cookies()...)
		r.b.mu.Unlock()
	}
	return resp, err
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: e.t, e: e}
	b.c = &http.Client{Jar: jar, Transport: recorder{b}, Timeout: 10 * time.Second}
	return b
}

type page struct {
	status int
	body   string
	url    string
	header http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, string(body), resp.Request.URL.String(), resp.Header}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

// post submits a form as a browser on the page's origin does, unless hdr says otherwise.
func (b *browser) post(u string, form url.Values, hdr map[string]string) page {
	b.t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	pu, _ := url.Parse(b.e.ui)
	req.Header.Set("Origin", pu.Scheme+"://"+pu.Host)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return b.do(req)
}

var (
	requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)
	csrfField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn walks the OIDC sign-in from start (a page of the UI) and returns the
// page it lands on.
func (b *browser) signIn(start, sub, groups string) page {
	b.t.Helper()
	p := b.get(start)
	if p.status != 200 || !strings.Contains(p.body, "DEV ONLY sign-in") {
		b.t.Fatalf("GET %s did not lead to the sign-in form: %d %s\n%s", start, p.status, p.url, p.body)
	}
	m := requestField.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("sign-in form without request id:\n%s", p.body)
	}
	return b.post(b.e.issURL+"/authorize", url.Values{"request": {m[1]}, "sub": {sub}, "groups": {groups}}, map[string]string{"Origin": ""})
}

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("page without CSRF token:\n%s", body)
	}
	return m[1]
}

func wantIn(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func TestApproveThroughThePage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.request("test-db", insert, "backfill a missing order for PR 7")
	b := e.browser()
	p := b.signIn(e.ui+"/", "alice", "dba")
	if p.status != 200 || p.url != e.ui+"/" {
		t.Fatalf("after sign-in: %d at %s\n%s", p.status, p.url, p.body)
	}
	wantIn(t, "index", p.body,
		`id="signed-in-as">alice<`, "Waiting for your decision", g.ID,
		"agent-1", e.issURL+"|agent-1", "backfill a missing order for PR 7",
		`href="https://github.com/acme/shop/pull/7"`, "acme/shop#7",
		`href="https://github.com/acme/shop/commit/0123456789abcdef0123456789abcdef01234567"`,
		"test-db", "write", "10m0s", "Pending until", "(in 15m0s)",
		"INSERT INTO orders (user_id, item, amount) VALUES (1, &#39;slide rule&#39;, 3.50)",
		`<td class="kind">INSERT</td>`, `class-write">write</td>`, "0 of 1 approvals",
	)
	if strings.Contains(p.body, "nothing-pending") {
		t.Error("index says nothing is pending")
	}
	if strings.Contains(p.body, "Rows affected") || strings.Contains(p.body, "covers-next") {
		t.Error("index shows an estimate or coverage the rule did not ask for")
	}
	d := b.get(e.ui + "/grants/" + g.ID)
	if d.status != 200 {
		t.Fatalf("detail: %d\n%s", d.status, d.body)
	}
	wantIn(t, "detail", d.body, `id="approve"`, `id="deny"`, "agents-write-needs-dba", g.OperationHash, "group dba")
	res := b.post(e.ui+"/grants/"+g.ID+"/approve", url.Values{"csrf": {csrfOf(t, d.body)}, "reason": {"looks right"}}, nil)
	if res.status != 200 {
		t.Fatalf("approve: %d\n%s", res.status, res.body)
	}
	wantIn(t, "approve result", res.body, "You approved this grant", "state-approved", "looks right")
	if strings.Contains(res.body, `id="approve"`) {
		t.Error("approve button still shown after approval")
	}
	if s := e.state(g.ID); s != grant.Approved {
		t.Fatalf("grant is %s after approval, want approved", s)
	}
	// The index no longer lists it.
	if p := b.get(e.ui + "/"); !strings.Contains(p.body, "nothing-pending") || strings.Contains(p.body, g.ID) {
		t.Errorf("index still lists the approved grant:\n%s", p.body)
	}
	// Deciding again is a conflict, shown on the page.
	res = b.post(e.ui+"/grants/"+g.ID+"/approve", url.Values{"csrf": {csrfOf(t, d.body)}}, nil)
	if res.status != http.StatusConflict || !strings.Contains(res.body, "not pending") {
		t.Errorf("second approval: %d, want 409 'not pending'\n%s", res.status, res.body)
	}
}

// A requester who is also in the approver group sees its grant without an
// approve form, and the Service refuses the POST anyway.
func TestRequesterCannotApproveOwnGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.request("test-db", insert, "")
	b := e.browser()
	p := b.signIn(e.ui+"/", "agent-1", "ai-agents,dba")
	wantIn(t, "requester's index", p.body, "Your own pending requests", g.ID, "nothing-pending")
	d := b.get(e.ui + "/grants/" + g.ID)
	wantIn(t, "requester's detail", d.body, `id="own-grant"`)
	if strings.Contains(d.body, `id="approve"`) || strings.Contains(d.body, "approve-form") {
		t.Fatalf("the requester is shown an approve form:\n%s", d.body)
	}
	// Forge the POST the page did not offer, with a valid CSRF token.
	for _, action := range []string{"approve", "deny"} {
		res := b.post(e.ui+"/grants/"+g.ID+"/"+action, url.Values{"csrf": {csrfOf(t, d.body)}, "reason": {"mine"}}, nil)
		if res.status != http.StatusForbidden || !strings.Contains(res.body, "cannot approve or deny its own grant") {
			t.Errorf("requester %s: %d, want 403 'own grant'\n%s", action, res.status, res.body)
		}
	}
	if s := e.state(g.ID); s != grant.Pending {
		t.Fatalf("grant is %s, want pending", s)
	}
	// Someone outside the approver group cannot even see it.
	o := e.browser()
	o.signIn(e.ui+"/", "mallory", "devs")
	if p := o.get(e.ui + "/grants/" + g.ID); p.status != http.StatusForbidden || strings.Contains(p.body, insert) {
		t.Errorf("non-approver detail: %d\n%s", p.status, p.body)
	}
}

func TestPostGuards(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.request("test-db", insert, "")
	b := e.browser()
	b.signIn(e.ui+"/", "alice", "dba")
	csrf := csrfOf(t, b.get(e.ui+"/grants/"+g.ID).body)
	other := e.browser()
	other.signIn(e.ui+"/", "bob", "dba")
	otherCSRF := csrfOf(t, other.get(e.ui+"/grants/"+g.ID).body)
	if otherCSRF == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	approveURL := e.ui + "/grants/" + g.ID + "/approve"
	cases := []struct {
		name   string
		b      *browser
		form   url.Values
		hdr    map[string]string
		status int
		want   string
	}{
		{"no CSRF token", b, url.Values{}, nil, 403, "CSRF token is missing or wrong"},
		{"empty CSRF token", b, url.Values{"csrf": {""}}, nil, 403, "CSRF token is missing or wrong"},
		{"wrong CSRF token", b, url.Values{"csrf": {csrf[:len(csrf)-2] + "xx"}}, nil, 403, "CSRF token is missing or wrong"},
		{"another session's token", b, url.Values{"csrf": {otherCSRF}}, nil, 403, "CSRF token is missing or wrong"},
		{"token in the query only", b, url.Values{}, nil, 403, "CSRF token is missing or wrong"},
		{"other origin", b, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "http://evil.example"}, 403, "not &#34;http://127.0.0.1"},
		{"null origin", b, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null"}, 403, "from origin &#34;null&#34;"},
		{"cross-site fetch", b, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "", "Sec-Fetch-Site": "cross-site"}, 403, "cross-site request"},
		{"signed out", e.browser(), url.Values{"csrf": {csrf}}, nil, 401, "Sign in again"},
	}
	for _, c := range cases {
		u := approveURL
		if c.name == "token in the query only" {
			u += "?csrf=" + url.QueryEscape(csrf)
		}
		res := c.b.post(u, c.form, c.hdr)
		if res.status != c.status || !strings.Contains(res.body, c.want) {
			t.Errorf("%s: %d, want %d with %q\n%s", c.name, res.status, c.status, c.want, res.body)
		}
	}
	if s := e.state(g.ID); s != grant.Pending {
		t.Fatalf("a refused POST changed the grant to %s", s)
	}
	// GET on a POST endpoint does nothing either.
	if p := b.get(approveURL); p.status != http.StatusMethodNotAllowed && p.status != http.StatusNotFound {
		t.Errorf("GET approve: %d", p.status)
	}
	if s := e.state(g.ID); s != grant.Pending {
		t.Fatalf("GET changed the grant to %s", s)
	}
}

func TestDenyNeedsReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.request("test-db", insert, "")
	b := e.browser()
	b.signIn(e.ui+"/", "alice", "dba")
	csrf := csrfOf(t, b.get(e.ui+"/grants/"+g.ID).body)
	res := b.post(e.ui+"/grants/"+g.ID+"/deny", url.Values{"csrf": {csrf}, "reason": {"   "}}, nil)
	if res.status != 400 || !strings.Contains(res.body, "A denial needs a reason") || !strings.Contains(res.body, `id="deny"`) {
		t.Fatalf("deny without reason: %d\n%s", res.status, res.body)
	}
	if s := e.state(g.ID); s != grant.Pending {
		t.Fatalf("grant is %s after a refused denial", s)
	}
	res = b.post(e.ui+"/grants/"+g.ID+"/approve", url.Values{"csrf": {csrf}, "reason": {strings.Repeat("x", 2001)}}, nil)
	if res.status != 400 || !strings.Contains(res.body, "longer than 2000") {
		t.Fatalf("oversized reason: %d\n%s", res.status, res.body)
	}
	res = b.post(e.ui+"/grants/"+g.ID+"/deny", url.Values{"csrf": {csrf}, "reason": {"not on a Friday"}}, nil)
	if res.status != 200 || !strings.Contains(res.body, "You denied this grant") || !strings.Contains(res.body, "not on a Friday") {
		t.Fatalf("deny: %d\n%s", res.status, res.body)
	}
	if s := e.state(g.ID); s != grant.Denied {
		t.Fatalf("grant is %s, want denied", s)
	}
}

func TestQuorumOfTwo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.request("prod-db", "DELETE FROM orders WHERE id = 4", "")
	// The rule asks for EXPLAIN and lets the approval cover the next two.
	b := e.browser()
	p := b.signIn(e.ui+"/", "carol", "dba")
	wantIn(t, "index", p.body, "0 of 2 approvals", "about 3 rows (EXPLAIN, not executed)", "the next 2 identical ones")
	for i, who := range []string{"alice", "bob"} {
		b := e.browser()
		b.signIn(e.ui+"/grants/"+g.ID, who, "dba")
		d := b.get(e.ui + "/grants/" + g.ID)
		res := b.post(e.ui+"/grants/"+g.ID+"/approve", url.Values{"csrf": {csrfOf(t, d.body)}}, nil)
		want := []string{"Your approval is recorded: 1 of 2 needed", "You approved this grant"}[i]
		if res.status != 200 || !strings.Contains(res.body, want) {
			t.Fatalf("%s approves: %d, want %q\n%s", who, res.status, want, res.body)
		}
		if i == 0 {
			// The same approver cannot count twice; the page no longer offers it.
			if p := b.get(e.ui + "/grants/" + g.ID); !strings.Contains(p.body, `id="already-decided"`) || strings.Contains(p.body, `id="approve"`) {
				t.Errorf("first approver still offered a decision:\n%s", p.body)
			}
			res := b.post(e.ui+"/grants/"+g.ID+"/approve", url.Values{"csrf": {csrfOf(t, d.body)}}, nil)
			if res.status != http.StatusConflict || !strings.Contains(res.body, "already decided") {
				t.Errorf("double approval: %d\n%s", res.status, res.body)
			}
		}
	}
	if s := e.state(g.ID); s != grant.Approved {
		t.Fatalf("grant is %s after two approvals", s)
	}
}

func TestSignInRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	noFollow := func(b *browser) {
		b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}

	t.Run("next is never another site", func(t *testing.T) {
		for _, next := range []string{"//evil.example/", "https://evil.example/", "/ui/../../x", "/ui/grants/a/../../x", `/\evil.example`} {
			b := e.browser()
			p := b.signIn(e.ui+"/login?next="+url.QueryEscape(next), "alice", "dba")
			if p.url != e.ui+"/" {
				t.Errorf("next=%q landed on %s", next, p.url)
			}
		}
		g := e.request("test-db", insert, "")
		if p := e.browser().signIn(e.ui+"/grants/"+g.ID, "alice", "dba"); p.url != e.ui+"/grants/"+g.ID {
			t.Errorf("sign-in from a grant page landed on %s", p.url)
		}
	})

	t.Run("state mismatch", func(t *testing.T) {
		b := e.browser()
		b.get(e.ui + "/login") // sets the login cookie, shows the form
		p := b.get(e.ui + "/callback?code=x&state=forged")
		if p.status != 400 || !strings.Contains(p.body, "state mismatch") {
			t.Errorf("forged state: %d\n%s", p.status, p.body)
		}
	})

	t.Run("callback without a sign-in", func(t *testing.T) {
		p := e.browser().get(e.ui + "/callback?code=x&state=y")
		if p.status != 400 || !strings.Contains(p.body, "not started here") {
			t.Errorf("unsolicited callback: %d\n%s", p.status, p.body)
		}
	})

	t.Run("login CSRF: an attacker's code in the victim's callback", func(t *testing.T) {
		// The attacker signs in as mallory and stops before the callback.
		a := e.browser()
		noFollow(a)
		p := a.get(e.ui + "/login")
		authURL := p.header.Get("Location")
		a.c.CheckRedirect = nil
		form := a.get(authURL)
		m := requestField.FindStringSubmatch(form.body)
		noFollow(a)
		res := a.post(e.issURL+"/authorize", url.Values{"request": {m[1]}, "sub": {"mallory"}, "groups": {"dba"}}, map[string]string{"Origin": ""})
		cb, _ := url.Parse(res.header.Get("Location"))
		// The victim has started a sign-in of their own; the attacker's
		// callback link carries the attacker's state.
		v := e.browser()
		v.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		v.get(e.ui + "/login")
		v.c.CheckRedirect = nil
		p = v.get(cb.String())
		if p.status != 400 || !strings.Contains(p.body, "state mismatch") || strings.Contains(p.body, "signed-in-as") {
			t.Errorf("attacker's callback: %d\n%s", p.status, p.body)
		}
	})

	t.Run("nonce mismatch", func(t *testing.T) {
		e2 := newEnv(t)
		e2.rewriteNonce.Store(true)
		p := e2.browser().signIn(e2.ui+"/", "alice", "dba")
		if p.status != 401 || !strings.Contains(p.body, "nonce mismatch") || strings.Contains(p.body, "signed-in-as") {
			t.Errorf("wrong nonce: %d\n%s", p.status, p.body)
		}
	})

	t.Run("replayed callback", func(t *testing.T) {
		b := e.browser()
		noFollow(b)
		p := b.get(e.ui + "/login")
		b.c.CheckRedirect = nil
		form := b.get(p.header.Get("Location"))
		noFollow(b)
		res := b.post(e.issURL+"/authorize", url.Values{"request": {requestField.FindStringSubmatch(form.body)[1]}, "sub": {"alice"}, "groups": {"dba"}}, map[string]string{"Origin": ""})
		cb := res.header.Get("Location")
		if p := b.get(cb); p.status != http.StatusFound {
			t.Fatalf("first callback: %d\n%s", p.status, p.body)
		}
		// A fresh browser replaying the same URL has no sign-in state.
		if p := e.browser().get(cb); p.status != 400 {
			t.Errorf("replayed callback URL: %d\n%s", p.status, p.body)
		}
	})

	t.Run("tampered session cookie", func(t *testing.T) {
		b := e.browser()
		b.signIn(e.ui+"/", "alice", "dba")
		u, _ := url.Parse(e.ui + "/")
		var tampered []*http.Cookie
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "jitgate_ui_session" {
				v := []byte(c.Value)
				v[len(v)/2] ^= 1
				tampered = append(tampered, &http.Cookie{Name: c.Name, Value: string(v), Path: "/ui/"})
			}
		}
		if len(tampered) != 1 {
			t.Fatalf("session cookie not in the jar")
		}
		b.c.Jar.SetCookies(u, tampered)
		noFollow(b)
		p := b.get(e.ui + "/")
		if p.status != http.StatusFound || !strings.Contains(p.header.Get("Location"), "/ui/login") {
			t.Errorf("tampered cookie: %d %s", p.status, p.header.Get("Location"))
		}
	})
}

// The session ends when its ID token expires.
func TestSessionExpiresWithToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.browser()
	if p := b.signIn(e.ui+"/", "alice", "dba"); p.status != 200 {
		t.Fatalf("sign-in: %d", p.status)
	}
	var session *http.Cookie
	for _, c := range b.cookie {
		if c.Name == "jitgate_ui_session" && c.Value != "" {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no session cookie set")
	}
	if d := time.Until(session.Expires); d <= 0 || d > devissuer.DefaultTTL+time.Minute {
		t.Errorf("session cookie expires in %s, want about the token's %s", d, devissuer.DefaultTTL)
	}
	e.clock.Advance(devissuer.DefaultTTL + time.Minute)
	b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p := b.get(e.ui + "/")
	if p.status != http.StatusFound || !strings.HasPrefix(p.header.Get("Location"), e.ui+"/login") {
		t.Fatalf("expired session: %d %s, want a redirect to sign in", p.status, p.header.Get("Location"))
	}
}

func TestHeadersAndCookies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.browser()
	p := b.signIn(e.ui+"/", "alice", "dba")
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	} {
		if got := p.header.Get(k); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("CSP %q lacks frame-ancestors 'none'", p.header.Get("Content-Security-Policy"))
	}
	if strings.Contains(p.body, "<script") {
		t.Error("page contains a script")
	}
	css := b.get(e.ui + "/static/style.css")
	if css.status != 200 || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", css.status, css.header.Get("Content-Type"))
	}
	seen := map[string]bool{}
	for _, c := range b.cookie {
		if c.Name != "jitgate_ui_session" && c.Name != "jitgate_ui_login" {
			continue
		}
		seen[c.Name] = true
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/ui/" || c.Secure {
			t.Errorf("cookie %s: HttpOnly=%v SameSite=%v Path=%q Secure=%v; want HttpOnly, Lax, /ui/, not Secure on http",
				c.Name, c.HttpOnly, c.SameSite, c.Path, c.Secure)
		}
		if strings.Contains(c.Value, "eyJ") {
			t.Errorf("cookie %s carries a readable JWT", c.Name)
		}
	}
	if !seen["jitgate_ui_session"] || !seen["jitgate_ui_login"] {
		t.Errorf("cookies seen: %v", seen)
	}
	// Unknown paths are a 404 page with the same headers.
	if p := b.get(e.ui + "/nope"); p.status != 404 || p.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("unknown path: %d %v", p.status, p.header)
	}
	if p := b.get(e.ui + "/grants/..%2f..%2fetc"); p.status != 404 {
		t.Errorf("invalid grant id: %d", p.status)
	}
}

// Over https every cookie is Secure.
func TestSecureCookiesOnHTTPS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v, _ := identity.NewVerifier([]identity.IssuerConfig{{Name: "dev", Issuer: e.issURL, Audience: "jitgate", DevOnly: true}}, identity.Options{})
	h, err := approvalui.New(approvalui.Config{Service: e.svc, Verifier: v, IssuerURL: e.issURL, ClientID: "jitgate",
		BaseURL: "https://approvals.example/ui", CookieKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "https://approvals.example/ui/login", nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	loc, _ := url.Parse(rec.Header().Get("Location"))
	q := loc.Query()
	if q.Get("redirect_uri") != "https://approvals.example/ui/callback" || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" || q.Get("client_id") != "jitgate" {
		t.Errorf("authorization request %s", loc)
	}
	cs := rec.Result().Cookies()
	if len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly {
		t.Errorf("login cookie over https: %+v", cs)
	}
}

func TestEscaping(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evil := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	g, err := e.svc.Request(context.Background(), identity.Identity{IssuerName: "dev", Issuer: e.issURL, Subject: "agent-2", Groups: []string{"ai-agents"},
		Claims: map[string]any{"repository": `acme/shop"><script>`, "ref": "refs/pull/1/merge", "sha": "javascript:alert(3)", "email": evil}},
		broker.RequestInput{Target: "test-db", Mode: spec.Exec, Operation: "INSERT INTO orders (item) VALUES ('" + strings.ReplaceAll(evil, "'", "") + "')", Reason: evil})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.ui+"/", "alice", "dba")
	for _, u := range []string{e.ui + "/", e.ui + "/grants/" + g.ID} {
		p := b.get(u)
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, "<img") || strings.Contains(p.body, `href="javascript:`) {
			t.Errorf("%s renders markup from the request:\n%s", u, p.body)
		}
		wantIn(t, u, p.body, "&lt;script&gt;alert(1)&lt;/script&gt;")
		if strings.Contains(p.body, "github.com/acme") {
			t.Errorf("%s links a malformed repository", u)
		}
	}
}

func TestIssuerUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	v, _ := identity.NewVerifier([]identity.IssuerConfig{{Name: "dev", Issuer: deadURL, Audience: "jitgate", DevOnly: true}}, identity.Options{})
	h, err := approvalui.New(approvalui.Config{Service: e.svc, Verifier: v, IssuerURL: deadURL, ClientID: "jitgate",
		BaseURL: "http://127.0.0.1:1/ui", CookieKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:1/ui/login", nil))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "identity provider cannot be reached") {
		t.Errorf("login with the issuer down: %d %s", rec.Code, rec.Body)
	}
}

// The page accepts only tokens of its own issuer with its client id in "aud",
// even when the Verifier (which may trust GitHub Actions too, or be
// configured for another audience) accepts more.
func TestForeignTokenRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*identity.Identity)
		want   string
	}{
		{"other trusted issuer", func(id *identity.Identity) { id.Issuer = "https://token.actions.githubusercontent.com" }, "not the sign-in issuer"},
		{"other audience", func(id *identity.Identity) { id.Claims["aud"] = []any{"api://other"} }, "audience does not include client &#34;jitgate&#34;"},
		{"no audience", func(id *identity.Identity) { delete(id.Claims, "aud") }, "audience does not include"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			v, _ := identity.NewVerifier([]identity.IssuerConfig{{Name: "dev", Issuer: e.issURL, Audience: "jitgate", DevOnly: true}}, identity.Options{})
			uiSrv := httptest.NewUnstartedServer(nil)
			e.ui = "http://" + uiSrv.Listener.Addr().String() + "/ui"
			h, err := approvalui.New(approvalui.Config{Service: e.svc, Verifier: mutating{v, c.mutate}, IssuerURL: e.issURL,
				ClientID: "jitgate", BaseURL: e.ui, CookieKey: make([]byte, 32)})
			if err != nil {
				t.Fatal(err)
			}
			uiSrv.Config.Handler = h
			uiSrv.Start()
			defer uiSrv.Close()
			p := e.browser().signIn(e.ui+"/", "alice", "dba")
			if p.status != 401 || !strings.Contains(p.body, c.want) || strings.Contains(p.body, "signed-in-as") {
				t.Errorf("%d, want 401 with %q\n%s", p.status, c.want, p.body)
			}
		})
	}
}

// mutating is a Verifier that verifies for real, then changes the identity.
type mutating struct {
	v      *identity.Verifier
	mutate func(*identity.Identity)
}

func (m mutating) Verify(ctx context.Context, raw string) (identity.Identity, error) {
	id, err := m.v.Verify(ctx, raw)
	if err == nil {
		m.mutate(&id)
	}
	return id, err
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v, _ := identity.NewVerifier([]identity.IssuerConfig{{Name: "dev", Issuer: e.issURL, Audience: "jitgate", DevOnly: true}}, identity.Options{})
	good := approvalui.Config{Service: e.svc, Verifier: v, IssuerURL: e.issURL, ClientID: "jitgate", BaseURL: "http://127.0.0.1:8700/ui", CookieKey: make([]byte, 32)}
	cases := []struct {
		name string
		mod  func(*approvalui.Config)
		want string
	}{
		{"no service", func(c *approvalui.Config) { c.Service = nil }, "Service is required"},
		{"no verifier", func(c *approvalui.Config) { c.Verifier = nil }, "Verifier is required"},
		{"no issuer", func(c *approvalui.Config) { c.IssuerURL = "" }, "IssuerURL is required"},
		{"relative issuer", func(c *approvalui.Config) { c.IssuerURL = "example.com" }, "not an absolute http(s) URL"},
		{"no client", func(c *approvalui.Config) { c.ClientID = " " }, "ClientID is required"},
		{"short key", func(c *approvalui.Config) { c.CookieKey = make([]byte, 16) }, "CookieKey has 16 bytes"},
		{"no base", func(c *approvalui.Config) { c.BaseURL = "" }, "BaseURL"},
		{"relative base", func(c *approvalui.Config) { c.BaseURL = "/ui" }, "not an absolute http(s) URL"},
		{"base with query", func(c *approvalui.Config) { c.BaseURL = "http://127.0.0.1/ui?x=1" }, "no query"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		if _, err := approvalui.New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := approvalui.New(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}
