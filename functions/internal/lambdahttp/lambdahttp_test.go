package lambdahttp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/jitgate/jitgate/functions/internal/lambdahttp"
)

func load(t *testing.T, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

type seen struct {
	method, uri, path, rawQuery, auth, cookie, multi, remote, host, ctype string
	body                                                                  []byte
	contentLength                                                         int64
	deadline                                                              time.Time
}

func recorder(s *seen, status int, hdr http.Header, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.method, s.uri, s.path, s.rawQuery = r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery
		s.auth, s.cookie, s.multi = r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("X-Multi")
		s.remote, s.host, s.ctype, s.contentLength = r.RemoteAddr, r.Host, r.Header.Get("Content-Type"), r.ContentLength
		s.body, _ = io.ReadAll(r.Body)
		s.deadline, _ = r.Context().Deadline()
		for k, vs := range hdr {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

func TestAPIGatewayV2Request(t *testing.T) {
	t.Parallel()
	ev := load(t, "apigw-v2-post.json")
	var s seen
	hdr := http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}, "X-Two": {"x", "y"}}
	h := lambdahttp.Handler(recorder(&s, 201, hdr, []byte(`{"id":"g_1"}`)), lambdahttp.Options{})
	deadline := time.Now().Add(time.Minute).Round(0)
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()
	resp, err := h(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := seen{method: "POST", uri: "/v1/grants?dry=1&tag=a&tag=b", path: "/v1/grants", rawQuery: "dry=1&tag=a&tag=b",
		auth: "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln", cookie: "session=abc; theme=dark", multi: "one,two",
		remote: "203.0.113.7:0", host: "abc123.execute-api.us-east-1.amazonaws.com", ctype: "application/json",
		body: []byte(`{"target":"orders-db","sql":"SELECT 1","reason":"check"}`), contentLength: 56, deadline: deadline}
	if s.method != want.method || s.uri != want.uri || s.path != want.path || s.rawQuery != want.rawQuery || s.auth != want.auth ||
		s.cookie != want.cookie || s.multi != want.multi || s.remote != want.remote || s.host != want.host || s.ctype != want.ctype ||
		!bytes.Equal(s.body, want.body) || s.contentLength != want.contentLength || !s.deadline.Equal(want.deadline) {
		t.Errorf("handler saw\n %+v\nwant\n %+v", s, want)
	}
	if resp.StatusCode != 201 || resp.Body != `{"id":"g_1"}` || resp.IsBase64Encoded {
		t.Errorf("response %d %q base64=%v", resp.StatusCode, resp.Body, resp.IsBase64Encoded)
	}
	if strings.Join(resp.Cookies, " ") != "a=1 b=2" || resp.Headers["Set-Cookie"] != "" || resp.Headers["X-Two"] != "x,y" {
		t.Errorf("response cookies %v headers %v", resp.Cookies, resp.Headers)
	}
}

func TestFunctionURLBase64Request(t *testing.T) {
	t.Parallel()
	ev := load(t, "function-url-get-base64.json")
	var s seen
	h := lambdahttp.Handler(recorder(&s, 200, http.Header{"Content-Type": {"application/octet-stream"}}, []byte{0, 1, 2, 255}), lambdahttp.Options{})
	resp, err := h(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.body, []byte{0, 1, 2, 255}) || s.method != "GET" || s.rawQuery != "wait=20s" {
		t.Errorf("handler saw %s %q body %v", s.method, s.rawQuery, s.body)
	}
	// An escaped slash stays escaped: one path segment, not two.
	if s.uri != "/v1/grants/g_abc%2Fdef?wait=20s" || s.path != "/v1/grants/g_abc/def" {
		t.Errorf("uri %q path %q", s.uri, s.path)
	}
	if !resp.IsBase64Encoded || resp.Body != base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255}) {
		t.Errorf("binary response %q base64=%v", resp.Body, resp.IsBase64Encoded)
	}
}

func TestRefusedEvents(t *testing.T) {
	t.Parallel()
	called := false
	h := lambdahttp.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }), lambdahttp.Options{MaxBody: 16})
	base := load(t, "apigw-v2-post.json")
	tests := []struct {
		name   string
		mod    func(*events.APIGatewayV2HTTPRequest)
		status int
		want   string
	}{
		{"not an http event", func(e *events.APIGatewayV2HTTPRequest) { e.RequestContext.HTTP.Method = "" }, 400, "not an API Gateway v2"},
		{"bad base64", func(e *events.APIGatewayV2HTTPRequest) { e.IsBase64Encoded, e.Body = true, "!!" }, 400, "does not decode"},
		{"too large", func(e *events.APIGatewayV2HTTPRequest) {}, 413, "larger than 16 bytes"},
		{"relative path", func(e *events.APIGatewayV2HTTPRequest) { e.RawPath, e.Body = "v1/grants", "" }, 400, "does not start with /"},
	}
	for _, tc := range tests {
		ev := base
		tc.mod(&ev)
		resp, err := h(t.Context(), ev)
		if err != nil || resp.StatusCode != tc.status || !strings.Contains(resp.Body, tc.want) {
			t.Errorf("%s: %d %q, %v; want %d %q", tc.name, resp.StatusCode, resp.Body, err, tc.status, tc.want)
		}
	}
	if called {
		t.Error("the handler ran for a refused event")
	}
}

func TestOversizedResponse(t *testing.T) {
	t.Parallel()
	resp := lambdahttp.Response(200, http.Header{"Content-Type": {"application/json"}}, make([]byte, lambdahttp.MaxResponse+1))
	if resp.StatusCode != 502 || !strings.Contains(resp.Body, "limit") {
		t.Errorf("oversized response: %d %q", resp.StatusCode, resp.Body[:min(len(resp.Body), 80)])
	}
}

// FuzzRequest: no event makes the adapter panic, and an accepted event keeps
// its method and body exactly.
func FuzzRequest(f *testing.F) {
	f.Add("GET", "/v1/grants", "state=pending", "", false)
	f.Add("POST", "/v1/grants/%2e%2e/approve", "a=%zz", "AAEC", true)
	f.Add("PUT", "//x", "", "{}", false)
	f.Fuzz(func(t *testing.T, method, path, query, body string, b64 bool) {
		ev := events.APIGatewayV2HTTPRequest{RawPath: path, RawQueryString: query, Body: body, IsBase64Encoded: b64,
			Headers: map[string]string{"authorization": "Bearer x"}}
		ev.RequestContext.HTTP.Method = method
		req, err := lambdahttp.Request(context.Background(), ev, 1<<20)
		if err != nil {
			return
		}
		got, _ := io.ReadAll(req.Body)
		want := []byte(body)
		if b64 {
			want, _ = base64.StdEncoding.DecodeString(body)
		}
		if req.Method != method || !bytes.Equal(got, want) || req.Header.Get("Authorization") != "Bearer x" {
			t.Fatalf("method %q→%q body %q→%q", method, req.Method, want, got)
		}
	})
}
