package http_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestAllowedGetIsMasked(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	resp, body := p.get(t, "/v1/users")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	noSecrets(t, "response body", body)
	if !jsonValid(body) {
		t.Fatalf("masked body is not JSON: %s", body)
	}
	var doc struct {
		Users []struct {
			ID      int
			Email   string
			Profile struct{ Password, Note string }
			Token   string
			Escaped string
		}
		Count      int
		CardNumber string `json:"card_number"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	// Field rules redact whole values; detectors mask inside other strings;
	// everything else passes unchanged.
	if doc.Users[0].Email != "********" || doc.Users[1].Email != "********" {
		t.Errorf("emails by field path: %q %q", doc.Users[0].Email, doc.Users[1].Email)
	}
	if doc.Users[0].Profile.Password != "********" {
		t.Errorf("password at depth: %q", doc.Users[0].Profile.Password)
	}
	if doc.Users[0].Profile.Note != "card **** **** **** ****" {
		t.Errorf("card in text: %q", doc.Users[0].Profile.Note)
	}
	if doc.Users[1].Escaped == "alice@example.com" || !strings.Contains(doc.Users[1].Escaped, "@") {
		t.Errorf("\\u0040-escaped email: %q", doc.Users[1].Escaped)
	}
	if doc.Count != 2 || doc.Users[1].ID != 2 || doc.CardNumber != "****************" {
		t.Errorf("doc %+v", doc)
	}
	// Headers: Set-Cookie dropped, other values masked, length not stale.
	if c := resp.Header.Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("Set-Cookie forwarded: %q", c)
	}
	if v := resp.Header.Get("X-Debug-Owner"); v == "" || strings.Contains(v, email) {
		t.Errorf("X-Debug-Owner = %q", v)
	}
	if resp.ContentLength != -1 && resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length %d for a %d-byte body", resp.ContentLength, len(body))
	}

	// The upstream saw the injected token and never the grant secret or the
	// agent's cookie.
	reqs := up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Header.Get("Authorization") != "Bearer "+apiToken {
		t.Errorf("upstream Authorization = %q", r.Header.Get("Authorization"))
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(v, grantSecret) {
				t.Errorf("upstream saw the grant secret in %s", k)
			}
		}
	}
	if r.URI != "/v1/users" || r.Header.Get("Accept-Encoding") != "identity" {
		t.Errorf("upstream request %s, Accept-Encoding %q", r.URI, r.Header.Get("Accept-Encoding"))
	}
}

func TestInjectionHeaderAndStrippedAgentHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{mutate: func(c *httpengine.Config) { c.Header = "X-API-Key" }})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+"/v1/flags", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+grantSecret)
	req.Header.Set("Authorization", "Bearer agent-own-token")
	req.Header.Set("X-API-Key", "agent-chosen-key")
	req.Header.Set("Cookie", "session=stolen")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("Range", "bytes=0-10")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "hop")
	req.Header.Set("X-Request-Id", "keep-me")
	req.Host = "admin.internal"
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got, want := up.requests()[0].Host, strings.TrimPrefix(up.srv.URL, "http://"); got != want {
		t.Errorf("upstream Host %q, want the target's %q", got, want)
	}
	h := up.requests()[0].Header
	want := map[string]string{"X-Api-Key": apiToken, "Authorization": "", "Cookie": "", "X-Forwarded-For": "",
		"Range": "", "X-Hop": "", "Proxy-Authorization": "", "X-Request-Id": "keep-me"}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
}

func TestSecretSplitAcrossChunks(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	for _, ct := range []string{"text/plain", "application/json"} {
		for _, pad := range []int{0, 10, 8<<10 - 12, 8<<10 + 3, 20 << 10} {
			whole := splitBody(pad, ct == "application/json")
			want := string(p.m.Text([]byte(whole)))
			if ct == "application/json" {
				want = `["` + string(p.m.Text([]byte(splitBody(pad, false)))) + `",1]` + "\n"
			}
			start := pad + len(" card ")
			if ct == "application/json" {
				start += 2
			}
			for at := start - 2; at <= start+len(card)+1; at++ {
				path := fmt.Sprintf("/v1/split?at=%d&pad=%d&type=%s", at, pad, url.QueryEscape(ct))
				_, body := p.get(t, path)
				noSecrets(t, path, body)
				if body != want {
					t.Fatalf("%s: output differs from masking the whole body", path)
				}
			}
		}
	}
}

func TestStreamingTextIsRelayedWithoutWaitingForTheEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{mutate: func(c *httpengine.Config) { c.FlushDelay = 5 * time.Millisecond }})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+"/v1/hold", nil)
	req.Header.Set("Authorization", "Bearer "+grantSecret)
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The upstream holds the rest until the first line reached the agent.
	line, err := br.ReadString('\n')
	if err != nil || line != "first line\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(up.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "second line **** **** **** ****\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	auth := "Authorization: Bearer " + grantSecret + "\r\n"
	cases := []struct {
		name, request string
		status        int
		reason        string
	}{
		{"dotdot", "GET /v1/users/../admin/x HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "dot segment"},
		{"encoded dotdot", "GET /v1/users/%2e%2e/admin/x HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "encoded dot"},
		{"encoded slash", "GET /v1/users%2f..%2fadmin HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "encoded slash"},
		{"double slash", "GET /v1//admin/x HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "empty path segment"},
		{"backslash", "GET /v1/users/..\\admin HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "backslash"},
		{"double encoding", "GET /v1/users/%252e%252e/admin HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "double encoding"},
		{"overlong", "GET /v1/users/%c0%ae%c0%ae/admin HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "valid UTF-8"},
		{"path parameter", "GET /v1/admin;jsessionid=1/x HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "path parameter"},
		{"deny wins", "GET /v1/admin/users HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, `deny * /v1/admin/**`},
		{"deny folds case", "GET /v1/ADMIN/users HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, `deny * /v1/admin/**`},
		{"method not allowed", "DELETE /v1/users HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "no allow rule matches DELETE /v1/users"},
		{"mixed-case method", "Get /v1/users HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "not upper case"},
		{"override header", "POST /v1/items/1 HTTP/1.1\r\nHost: p\r\nX-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n" + auth + "\r\n", 403, "method override header"},
		{"override param", "POST /v1/items/1?_method=DELETE HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n" + auth + "\r\n", 403, "method override parameter"},
		{"trace", "TRACE /v1/users HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "TRACE is always refused"},
		{"connect", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nProxy-Authorization: Bearer " + grantSecret + "\r\n\r\n", 403, "CONNECT is always refused"},
		{"websocket", "GET /v1/users HTTP/1.1\r\nHost: p\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" + auth + "\r\n", 403, "protocol upgrades"},
		{"other host", "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\nProxy-Authorization: Bearer " + grantSecret + "\r\n\r\n", 403, "is not this grant's target"},
		{"https absolute", "GET https://config-api/v1/users HTTP/1.1\r\nHost: config-api\r\nProxy-Authorization: Bearer " + grantSecret + "\r\n\r\n", 403, "only http:// URLs"},
		{"absolute traversal", "GET http://config-api/v1/../v1/admin/x HTTP/1.1\r\nHost: config-api\r\nProxy-Authorization: Bearer " + grantSecret + "\r\n\r\n", 403, "dot segment"},
		{"target port", "GET http://config-api:9/v1/users HTTP/1.1\r\nHost: config-api\r\nProxy-Authorization: Bearer " + grantSecret + "\r\n\r\n", 403, "is not this grant's target"},
		{"not a write grant path", "POST /v1/users HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n" + auth + "\r\n{}", 403, "no allow rule matches POST"},
		{"binary", "GET /v1/binary HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", 403, "does not allow binary responses"},
	}
	before := len(up.requests())
	for _, c := range cases {
		resp, body := p.raw(t, c.request)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.status, body)
			continue
		}
		msg := errorOf(t, body)
		if !strings.HasPrefix(msg, "blocked by policy: ") || !strings.Contains(msg, c.reason) {
			t.Errorf("%s: error %q, want it to contain %q", c.name, msg, c.reason)
		}
		noSecrets(t, c.name, body)
	}
	// Only the binary request reached the upstream (its response is what was refused).
	var got []string
	for _, r := range up.requests()[before:] {
		got = append(got, r.Method+" "+r.URI)
	}
	if len(got) != 1 || got[0] != "GET /v1/binary" {
		t.Fatalf("refused requests reached the upstream: %q", got)
	}
	// Requests the HTTP parser itself rejects never get that far either.
	for _, bad := range []string{"GET /v1/a b HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n", "GET /v1/\x00 HTTP/1.1\r\nHost: p\r\n" + auth + "\r\n"} {
		resp, _ := p.raw(t, bad)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d", bad, resp.StatusCode)
		}
	}
	if n := len(up.requests()); n != before+1 {
		t.Fatalf("upstream saw %d more requests", n-before-1)
	}
	// Every refusal was recorded with its reason.
	refused := 0
	for _, ev := range p.events(t) {
		if ev.Type == record.Verdict && ev.Allowed != nil && !*ev.Allowed && ev.Reason != "" {
			refused++
		}
	}
	if refused != len(cases)-1 { // the binary response was refused after an allowed verdict
		t.Fatalf("recorded %d refusals, want %d", refused, len(cases)-1)
	}
}

func TestReadGrantCapsMethods(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{access: spec.Read, rules: []httprule.Rule{{Methods: []string{"*"}, Path: "/**", Effect: "allow"}}})
	resp, body := p.raw(t, "POST /v1/items/1 HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\nAuthorization: Bearer "+grantSecret+"\r\n\r\n")
	if resp.StatusCode != 403 || !strings.Contains(errorOf(t, body), "not allowed on a read grant") {
		t.Fatalf("POST on a read guard: %d %s", resp.StatusCode, body)
	}
	// The grant's own access level caps methods even when the guard was
	// built without it.
	p = startProxy(t, up, opts{grant: spec.Read, rules: []httprule.Rule{{Methods: []string{"*"}, Path: "/**", Effect: "allow"}}})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp, body = p.raw(t, m+" /v1/items/1 HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\nAuthorization: Bearer "+grantSecret+"\r\n\r\n")
		if resp.StatusCode != 403 || errorOf(t, body) != "blocked by policy: "+m+" is not allowed on a read grant (GET, HEAD and OPTIONS only)" {
			t.Fatalf("%s on a read grant: %d %s", m, resp.StatusCode, body)
		}
	}
	if resp, _ = p.raw(t, "GET /v1/flags HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "+grantSecret+"\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("GET on a read grant: %d", resp.StatusCode)
	}
	if n := len(up.requests()); n != 1 {
		t.Fatalf("upstream saw %d requests, want only the GET", n)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{maxBody: 1024})
	auth := "Authorization: Bearer " + grantSecret + "\r\n"
	big := strings.Repeat("a", 2048)
	resp, body := p.raw(t, "POST /v1/items/1 HTTP/1.1\r\nHost: p\r\nContent-Type: text/plain\r\nContent-Length: 2048\r\n"+auth+"\r\n"+big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, body), "exceeds the limit of 1024 bytes") {
		t.Fatalf("declared oversize body: %d %s", resp.StatusCode, body)
	}
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big)
	resp, body = p.raw(t, "POST /v1/items/1 HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n"+auth+"\r\n"+chunked)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, body), "exceeds the limit of 1024 bytes") {
		t.Fatalf("chunked oversize body: %d %s", resp.StatusCode, body)
	}
	if n := len(up.requests()); n != 0 {
		t.Fatalf("oversize bodies reached the upstream (%d requests)", n)
	}
	ok := `{"name":"widget","card":"` + card + `","password":"` + password + `"}`
	resp, _ = p.raw(t, fmt.Sprintf("PUT /v1/items/1 HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s", len(ok), auth, ok))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("body within the limit: %d", resp.StatusCode)
	}
	if r := up.requests(); len(r) != 1 || r[0].Body != ok || r[0].Method != "PUT" {
		t.Fatalf("upstream got %+v", r)
	}
	// The recorded request body is masked like a response.
	found := false
	for _, ev := range p.events(t) {
		if ev.Type == record.Rows && ev.Tag == "request" {
			found = true
			s := *ev.Rows[0][0]
			noSecrets(t, "recorded request body", s)
			if !strings.Contains(s, `"name":"widget"`) || ev.RowCount != int64(len(ok)) {
				t.Fatalf("recorded request body %q (%d bytes)", s, ev.RowCount)
			}
		}
	}
	if !found {
		t.Fatal("request body not recorded")
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	basic := func(user, pw string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw)) }
	cases := []struct {
		header, value string
		status        int
	}{
		{"", "", http.StatusUnauthorized},
		{"Authorization", "Bearer wrong", http.StatusUnauthorized},
		{"Authorization", "Bearer " + grantSecret + "x", http.StatusUnauthorized},
		{"Authorization", "Bearer " + grantSecret[:10], http.StatusUnauthorized},
		{"Authorization", "Token " + grantSecret, http.StatusUnauthorized},
		{"Proxy-Authorization", basic("g", "nope"), http.StatusProxyAuthRequired},
		{"Authorization", "Bearer " + grantSecret, http.StatusOK},
		{"Proxy-Authorization", "Bearer " + grantSecret, http.StatusOK},
		{"Proxy-Authorization", basic(p.grant.ID, grantSecret), http.StatusOK},
		{"Authorization", basic("anyone", grantSecret), http.StatusOK},
	}
	for _, c := range cases {
		req := "GET /v1/flags HTTP/1.1\r\nHost: p\r\n"
		if c.header != "" {
			req += c.header + ": " + c.value + "\r\n"
		}
		resp, body := p.raw(t, req+"\r\n")
		if resp.StatusCode != c.status {
			t.Errorf("%s %q: status %d, want %d", c.header, c.value, resp.StatusCode, c.status)
			continue
		}
		if c.status != http.StatusOK {
			if !strings.Contains(errorOf(t, body), "authentication required") || !resp.Close {
				t.Errorf("%s %q: body %s, close %v", c.header, c.value, body, resp.Close)
			}
		}
	}
	if n := len(up.requests()); n != 4 {
		t.Fatalf("upstream saw %d requests, want the 4 authenticated ones", n)
	}
}

func TestResponseEncodingsAndTypes(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	resp, body := p.get(t, "/v1/gzip")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !jsonValid(body) || !strings.Contains(body, `"count":2`) {
		t.Fatalf("gzip: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	noSecrets(t, "gzip body", body)

	resp, body = p.get(t, "/v1/brotli")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(errorOf(t, body), `"br"-encoded body`) {
		t.Fatalf("brotli: %d %s", resp.StatusCode, body)
	}
	resp, body = p.get(t, "/v1/ndjson")
	if resp.StatusCode != 200 || body != `{"email":"*****@*******.***"}`+"\n"+`{"password":"********"}`+"\n" {
		t.Fatalf("ndjson: %q", body)
	}
	resp, body = p.get(t, "/v1/plainjson")
	if resp.StatusCode != 200 || body != `{"password":"********"}`+"\n" {
		t.Fatalf("JSON served as text/plain: %q", body)
	}
	_, body = p.get(t, "/v1/text")
	noSecrets(t, "text body", body)
	if !strings.HasPrefix(body, "card **** **** **** ****\n") {
		t.Fatalf("text: %q", body)
	}
	// A body that claims JSON but is not cuts the connection.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+"/v1/notjson", nil)
	req.Header.Set("Authorization", "Bearer "+grantSecret)
	r, err := p.client().Do(req)
	if err == nil {
		_, err = io.ReadAll(r.Body)
		r.Body.Close()
	}
	if err == nil {
		t.Fatal("invalid JSON body was delivered as complete")
	}
	// HEAD passes without a body.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodHead, "http://"+p.addr+"/v1/flags", nil)
	req.Header.Set("Authorization", "Bearer "+grantSecret)
	if r, err = p.client().Do(req); err != nil || r.StatusCode != 200 {
		t.Fatalf("HEAD: %v", err)
	}
	r.Body.Close()
}

func TestBinaryAllowed(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{mutate: func(c *httpengine.Config) { c.AllowBinary = true }})
	resp, body := p.get(t, "/v1/binary")
	if resp.StatusCode != 200 || body != "\x00\x01binary "+card {
		t.Fatalf("binary: %d %q", resp.StatusCode, body)
	}
	for _, ev := range p.events(t) {
		if ev.Type == record.Rows && ev.Tag == "response" && (*ev.Rows[0][0] != "[binary body not recorded]" || ev.RowCount != int64(len(body))) {
			t.Fatalf("binary body recorded as %q (%d)", *ev.Rows[0][0], ev.RowCount)
		}
	}
}

func TestExec(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	res, err := p.eng.Exec(t.Context(), "GET /v1/users")
	if err != nil {
		t.Fatal(err)
	}
	if res.Tag != "HTTP 200" || !jsonValid(res.Output) || !strings.Contains(res.Output, `"email":"********"`) || res.Truncated {
		t.Fatalf("result %+v", res)
	}
	noSecrets(t, "exec output", res.Output)
	if len(res.Notices) != 1 || res.Notices[0] != "Content-Type: application/json" {
		t.Errorf("notices %q", res.Notices)
	}

	res, err = p.eng.Exec(t.Context(), "PUT /v1/items/9\nContent-Type: application/json\n\n{\"n\":1}")
	if err != nil || res.Tag != "HTTP 200" {
		t.Fatalf("PUT: %+v %v", res, err)
	}
	last := up.requests()[len(up.requests())-1]
	if last.Method != "PUT" || last.Body != `{"n":1}` || last.Header.Get("Content-Type") != "application/json" || last.Header.Get("Authorization") != "Bearer "+apiToken {
		t.Fatalf("upstream got %+v", last)
	}
	res, err = p.eng.Exec(t.Context(), "GET /v1/nothing-here")
	if err != nil || res.Tag != "HTTP 200" {
		t.Fatalf("unknown path: %+v %v", res, err)
	}

	n := len(up.requests())
	for op, want := range map[string]string{
		"DELETE /v1/users":                    "no allow rule matches DELETE /v1/users",
		"GET /v1/../v1/admin/x":               "dot segment",
		"get /v1/users":                       "not upper case",
		"GET /v1/users\nX-HTTP-Method: PUT\n": "method override header",
		"GET":                                 "want \"METHOD /path\"",
		"GET /v1/binary":                      "does not allow binary responses",
	} {
		_, err := p.eng.Exec(t.Context(), op)
		if !errors.Is(err, session.ErrBlocked) || !strings.Contains(err.Error(), want) {
			t.Errorf("Exec(%q) = %v, want ErrBlocked with %q", op, err, want)
		}
	}
	if got := len(up.requests()) - n; got != 1 { // only /v1/binary reached the target
		t.Fatalf("refused operations reached the upstream %d times", got)
	}
}

func TestExecOutputCap(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{mutate: func(c *httpengine.Config) { c.MaxExecOutput = 1000 }})
	res, err := p.eng.Exec(t.Context(), "GET /v1/big?n=100000") // 10 MB upstream
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || len(res.Output) != 1000 {
		t.Fatalf("truncated %v, %d bytes", res.Truncated, len(res.Output))
	}
}

func TestExecUpstreamDown(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	up.srv.Close()
	_, err := p.eng.Exec(t.Context(), "GET /v1/flags")
	if err == nil || errors.Is(err, session.ErrBlocked) || !strings.Contains(err.Error(), "upstream") {
		t.Fatalf("Exec with the target down: %v", err)
	}
}

func TestRecording(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	p.get(t, "/v1/users?owner="+url.QueryEscape(email))
	p.raw(t, "DELETE /v1/users HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "+grantSecret+"\r\n\r\n")
	evs := p.events(t)
	b, _ := json.Marshal(evs)
	noSecrets(t, "recording", string(b))
	if strings.Contains(string(b), grantSecret) || strings.Contains(string(b), apiToken) {
		t.Fatal("recording holds a credential")
	}
	var seq []string
	for _, ev := range evs {
		switch ev.Type {
		case record.Query, record.Result:
			seq = append(seq, string(ev.Type)+" "+ev.Statement+" "+ev.Tag)
		case record.Verdict:
			seq = append(seq, fmt.Sprintf("verdict %v %s", *ev.Allowed, ev.Tag))
		case record.Rows:
			seq = append(seq, "rows "+ev.Tag)
		}
	}
	want := []string{
		"query GET /v1/users?owner=alice%40example.com http", // an escaped address is not recognised in a URL
		"verdict true allow GET,HEAD /v1/**",
		"rows response",
		"result GET /v1/users?owner=alice%40example.com HTTP 200",
		"query DELETE /v1/users http",
		"verdict false ",
		"result DELETE /v1/users HTTP 403",
	}
	if strings.Join(seq, "\n") != strings.Join(want, "\n") {
		t.Fatalf("recorded:\n%s\nwant:\n%s", strings.Join(seq, "\n"), strings.Join(want, "\n"))
	}
	for _, ev := range evs {
		if ev.Type == record.Result && strings.HasPrefix(ev.Statement, "GET") && ev.Reason != "1 Set-Cookie header(s) dropped" {
			t.Errorf("result reason %q", ev.Reason)
		}
	}
}

func TestDeadlineClosesEverything(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- p.eng.Serve(ctx, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /v1/hold HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "+grantSecret+"\r\n\r\n")
	<-up.held // the upstream is now blocked mid-body
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve returned %v", err)
	}
	// The agent's connection is closed: reading ends.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the agent connection stayed open after the deadline")
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	gd, _ := httprule.New(httprule.Config{})
	rec, err := record.Open(t.TempDir(), record.Header{GrantID: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	good := func() httpengine.Config {
		return httpengine.Config{Guard: gd, Recorder: rec, Grant: &spec.Grant{ID: "g",
			Target: spec.Target{Address: "127.0.0.1:1"}, Credential: spec.Credential{Token: "t"}}}
	}
	cases := []struct {
		mutate func(*httpengine.Config)
		want   string
	}{
		{func(c *httpengine.Config) { c.Grant = nil }, "no grant"},
		{func(c *httpengine.Config) { c.Grant.Credential.Token = "" }, "no API token"},
		{func(c *httpengine.Config) { c.Grant.Target.Protocol = spec.Postgres }, "not http"},
		{func(c *httpengine.Config) { c.Grant.Mode = spec.Session }, "no client secret"},
		{func(c *httpengine.Config) { c.Grant.Target.Address = "" }, "no target address"},
		{func(c *httpengine.Config) { c.Grant.Target.Address = "ftp://h" }, "not http or https"},
		{func(c *httpengine.Config) { c.Grant.Target.Address = "http://h/api" }, "without path"},
		{func(c *httpengine.Config) { c.Grant.Target.Address = "http://u:p@h" }, "user information"},
		{func(c *httpengine.Config) { c.Guard = nil }, "no guard"},
		{func(c *httpengine.Config) { c.Recorder = nil }, "no recorder"},
		{func(c *httpengine.Config) { c.Header = "Bad Name: x" }, "Header"},
		{func(c *httpengine.Config) { c.Header = "Host" }, "cannot carry the credential"},
		{func(c *httpengine.Config) { c.Grant.Credential.Token = "a\r\nX-Evil: 1" }, "line break"},
		{func(c *httpengine.Config) { c.MaskJSONFields = []string{"$.a[x]"} }, "not *, an index"},
		{func(c *httpengine.Config) { c.MaskJSONFields = []string{"$"} }, "whole document"},
		{func(c *httpengine.Config) { c.MaskJSONFields = []string{"a.b"} }, "bare name"},
	}
	for _, c := range cases {
		cfg := good()
		c.mutate(&cfg)
		if _, err := httpengine.New(cfg); !errors.Is(err, httpengine.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v", c.want, err)
		}
	}
	if _, err := httpengine.New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
}
