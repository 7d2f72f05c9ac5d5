package httprule_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func testGuard(t *testing.T) *httprule.Guard {
	t.Helper()
	g, err := httprule.New(httprule.Config{Rules: []httprule.Rule{
		{Methods: []string{"GET", "HEAD"}, Path: "/v1/flags", Effect: "allow"},
		{Methods: []string{"GET"}, Path: "/v1/users/{id}", Effect: "allow"},
		{Methods: []string{"put"}, Path: "/v1/items/*", Effect: "allow"},
		{Methods: []string{"*"}, Path: "/v1/files/**", Effect: "allow"},
		{Methods: []string{"*"}, Path: "/v1/open/**", Effect: "allow"},
		{Methods: []string{"*"}, Path: "/v1/open/admin/**", Effect: "deny"},
		{Methods: []string{"DELETE"}, Path: "/v1/files/**", Effect: "deny"},
		{Methods: []string{"GET"}, Path: "/", Effect: "allow"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCheck(t *testing.T) {
	t.Parallel()
	g := testGuard(t)
	cases := []struct {
		method, path string
		allowed      bool
		reason       string // substring of the refusal reason
	}{
		// Allowed.
		{"GET", "/v1/flags", true, ""},
		{"HEAD", "/v1/flags", true, ""},
		{"GET", "/v1/flags?env=prod&x=1", true, ""},
		{"GET", "/v1/flags/", true, ""}, // trailing slash ignored for matching
		{"GET", "/v1/users/42", true, ""},
		{"GET", "/v1/users/caf%C3%A9", true, ""}, // encoded UTF-8 is fine
		{"GET", "/v1/users/%41", true, ""},       // encoded unreserved byte
		{"PUT", "/v1/items/7", true, ""},
		{"GET", "/v1/files", true, ""}, // ** matches nothing too
		{"GET", "/v1/files/a/b/c.txt", true, ""},
		{"POST", "/v1/files/a", true, ""},
		{"GET", "/", true, ""},
		{"GET", "/v1/open/adminx", true, ""},
		{"GET", "/v1/users/v1.2", true, ""},

		// Not allowed by any rule.
		{"POST", "/v1/flags", false, "no allow rule matches POST /v1/flags"},
		{"GET", "/v1/users", false, "no allow rule matches GET /v1/users"},
		{"GET", "/v1/users/42/keys", false, "no allow rule matches GET /v1/users/42/keys"},
		{"PUT", "/v1/items", false, "no allow rule matches"},
		{"GET", "/v2/flags", false, "no allow rule matches"},
		{"GET", "/V1/FLAGS", false, "no allow rule matches GET /V1/FLAGS"}, // allow is exact

		// Deny wins; deny folds case.
		{"DELETE", "/v1/files/a", false, `matches rule "deny DELETE /v1/files/**"`},
		{"DELETE", "/v1/files", false, `matches rule "deny DELETE /v1/files/**"`},
		{"GET", "/v1/open/admin", false, `matches rule "deny * /v1/open/admin/**"`},
		{"GET", "/v1/open/admin/users", false, `deny * /v1/open/admin/**`},
		{"GET", "/v1/open/ADMIN/users", false, `deny * /v1/open/admin/**`},
		{"GET", "/v1/open/Admin/", false, `deny * /v1/open/admin/**`},
		{"GET", "/v1/open/%61dmin", false, `deny * /v1/open/admin/**`},

		// Traversal and ambiguity.
		{"GET", "/v1/flags/../users/1", false, `dot segment ".."`},
		{"GET", "/v1/open/../open/admin", false, "dot segment"},
		{"GET", "/v1/open/./admin", false, `dot segment "."`},
		{"GET", "/v1/open/.../admin", false, "dot segment"},
		{"GET", "/v1/open/%2e%2e/admin", false, "encoded dot (%2E)"},
		{"GET", "/v1/open/%2E%2E/admin", false, "encoded dot (%2E)"},
		{"GET", "/v1/open/.%2e/admin", false, "encoded dot"},
		{"GET", "/v1/files/a%2f..%2fb", false, "encoded slash (%2F)"},
		{"GET", "/v1/files/a%2Fb", false, "encoded slash (%2F)"},
		{"GET", "/v1/files/a%5cb", false, "encoded backslash"},
		{"GET", "/v1/files/a%252e%252e", false, "double encoding"},
		{"GET", "/v1/files/%c0%af", false, "valid UTF-8"},
		{"GET", "/v1/files/%c0%ae%c0%ae", false, "valid UTF-8"},
		{"GET", "/v1/files/%e0%80%af", false, "valid UTF-8"},
		{"GET", "/v1/files/%u002f", false, "malformed percent-escape"},
		{"GET", "/v1/files/a%2", false, "malformed percent-escape"},
		{"GET", "/v1/files/a%zz", false, "malformed percent-escape"},
		{"GET", "/v1/files/a%00.txt", false, "encoded NUL"},
		{"GET", "/v1/files/a%0a", false, "encoded control byte 0x0a"},
		{"GET", "/v1/files/a\x00", false, "NUL byte"},
		{"GET", "/v1/files/a\tb", false, "raw byte 0x09"},
		{"GET", "/v1/files/a b", false, "raw byte 0x20"},
		{"GET", "/v1/files/caf\xc3\xa9", false, "raw byte 0xc3"},
		{"GET", "/v1//open/admin", false, "empty path segment (//)"},
		{"GET", "//v1/flags", false, "empty path segment"},
		{"GET", "/v1/flags//", false, "empty path segment"},
		{"GET", `/v1/open\..\admin`, false, "backslash"},
		{"GET", "/v1/open/admin;x=1", false, "path parameter (;)"},
		{"GET", "/v1/open;/admin", false, "path parameter (;)"},
		{"GET", "/v1/files/a%3bjsessionid=1", false, "encoded path parameter"},
		{"GET", "/v1/flags#frag", false, "fragment"},
		{"GET", "v1/flags", false, "does not start with /"},
		{"OPTIONS", "*", false, "does not start with /"},
		{"GET", "http://evil/v1/flags", false, "does not start with /"},
		{"GET", "", false, "empty request target"},
		{"GET", "/" + strings.Repeat("a", httprule.MaxPathBytes), false, "longer than"},
		{"GET", "/v1/flags?x=%00", false, "encoded NUL (%00) in the query"},
		{"GET", "/v1/flags?x=%zz", false, "malformed percent-escape in the query"},
		{"GET", "/v1/flags?x=%", false, "malformed percent-escape in the query"},
		{"GET", "/v1/flags?_method=DELETE", false, "method override parameter"},
		{"GET", "/v1/flags?a=1&_METHOD=DELETE", false, "method override parameter"},
		{"GET", "/v1/flags?a=1;%5Fmethod=DELETE", false, "method override parameter"},

		// Methods.
		{"get", "/v1/flags", false, "not upper case"},
		{"Get", "/v1/flags", false, "not upper case"},
		{"G ET", "/v1/flags", false, "not a token"},
		{"", "/v1/flags", false, "empty method"},
		{"TRACE", "/v1/files/a", false, "TRACE is always refused"},
		{"CONNECT", "/v1/files/a", false, "CONNECT is always refused"},
		{strings.Repeat("A", 33), "/v1/files/a", false, "longer than 32"},
	}
	for _, c := range cases {
		v := g.Check(c.method, c.path)
		if v.Allowed != c.allowed {
			t.Errorf("Check(%q, %q) = %v (%s), want allowed=%v", c.method, c.path, v.Allowed, v.Reason, c.allowed)
			continue
		}
		if !c.allowed && !strings.Contains(v.Reason, c.reason) {
			t.Errorf("Check(%q, %q) reason %q, want it to contain %q", c.method, c.path, v.Reason, c.reason)
		}
		if c.allowed && v.Rule == "" {
			t.Errorf("Check(%q, %q) allowed without naming a rule", c.method, c.path)
		}
	}
}

func TestCheckDecodedTarget(t *testing.T) {
	t.Parallel()
	g := testGuard(t)
	v := g.Check("GET", "/v1/users/caf%C3%A9/?q=%41")
	if !v.Allowed {
		t.Fatalf("refused: %s", v.Reason)
	}
	if got := v.Target.Path(); got != "/v1/users/café" {
		t.Errorf("Path = %q", got)
	}
	if !v.Target.TrailingSlash || v.Target.RawQuery != "q=%41" {
		t.Errorf("Target = %+v", v.Target)
	}
}

func TestNoRulesRefuseEverything(t *testing.T) {
	t.Parallel()
	g, err := httprule.New(httprule.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v := g.Check("GET", "/"); v.Allowed || !strings.Contains(v.Reason, "no allow rule matches GET /") {
		t.Fatalf("empty policy: %+v", v)
	}
}

func TestReadAccessCapsMethods(t *testing.T) {
	t.Parallel()
	g, err := httprule.New(httprule.Config{Access: spec.Read, Rules: []httprule.Rule{
		{Methods: []string{"*"}, Path: "/**", Effect: "allow"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		if v := g.Check(m, "/x"); !v.Allowed {
			t.Errorf("%s on a read grant refused: %s", m, v.Reason)
		}
	}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "PURGE"} {
		if v := g.Check(m, "/x"); v.Allowed || !strings.Contains(v.Reason, "not allowed on a read grant") {
			t.Errorf("%s on a read grant: %+v", m, v)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	t.Parallel()
	g := testGuard(t)
	for _, name := range []string{"X-HTTP-Method-Override", "x-http-method-override", "X-Http-Method", "X-Method-Override"} {
		h := http.Header{}
		h[name] = []string{"DELETE"}
		if v := g.CheckHeader(h); v.Allowed || !strings.Contains(v.Reason, "method override header") {
			t.Errorf("header %s: %+v", name, v)
		}
	}
	if v := g.CheckHeader(http.Header{"Accept": {"application/json"}}); !v.Allowed {
		t.Errorf("plain header refused: %s", v.Reason)
	}
}

func TestNewRejectsBadRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		rule httprule.Rule
		want string
	}{
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a", Effect: "permit"}, "unknown effect"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a"}, "unknown effect"},
		{httprule.Rule{Path: "/a", Effect: "allow"}, "no methods"},
		{httprule.Rule{Methods: []string{"GE T"}, Path: "/a", Effect: "allow"}, "not a token"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "a", Effect: "allow"}, "does not start with /"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a/**/b", Effect: "allow"}, "** must be the last segment"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a/b*", Effect: "allow"}, "whole-segment wildcards only"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a/{}", Effect: "allow"}, "must be {name}"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a/{a-b}", Effect: "allow"}, "must be {name}"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a//b", Effect: "allow"}, "empty segment"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a/../b", Effect: "allow"}, "dot segment"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a/%2e", Effect: "allow"}, "whole-segment wildcards only"},
		{httprule.Rule{Methods: []string{"GET"}, Path: "/a b", Effect: "allow"}, "control or space"},
	}
	for _, c := range cases {
		_, err := httprule.New(httprule.Config{Rules: []httprule.Rule{c.rule}})
		if err == nil || !errors.Is(err, httprule.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want ErrConfig containing %q", c.rule, err, c.want)
		}
	}
	if _, err := httprule.New(httprule.Config{MaxBodyBytes: -1}); !errors.Is(err, httprule.ErrConfig) {
		t.Errorf("negative MaxBodyBytes: %v", err)
	}
}

func TestEffectString(t *testing.T) {
	t.Parallel()
	for _, e := range []httprule.Effect{httprule.Allow, httprule.Deny} {
		p, err := httprule.ParseEffect(e.String())
		if err != nil || p != e {
			t.Errorf("ParseEffect(%q) = %v, %v", e.String(), p, err)
		}
	}
	if httprule.EffectUnknown.String() != "unknown" {
		t.Errorf("EffectUnknown = %q", httprule.EffectUnknown.String())
	}
}

func TestParseOperation(t *testing.T) {
	t.Parallel()
	op, err := httprule.ParseOperation("POST /v1/items/7\r\nContent-Type: application/json\r\nX-Trace: 1\r\n\r\n{\"a\":1}\n")
	if err != nil {
		t.Fatal(err)
	}
	if op.Method != "POST" || op.Target != "/v1/items/7" || op.Header.Get("Content-Type") != "application/json" ||
		op.Header.Get("X-Trace") != "1" || string(op.Body) != "{\"a\":1}\n" {
		t.Fatalf("op = %+v body %q", op, op.Body)
	}
	for _, s := range []string{"GET /v1/flags", "GET /v1/flags\n", "GET /v1/flags HTTP/1.1\n\n"} {
		op, err := httprule.ParseOperation(s)
		if err != nil || op.String() != "GET /v1/flags" || op.Body != nil {
			t.Errorf("ParseOperation(%q) = %+v, %v", s, op, err)
		}
	}
	bad := map[string]string{
		"":                           "want \"METHOD /path\"",
		"GET":                        "want \"METHOD /path\"",
		"GET  /x":                    "want \"METHOD /path\"",
		"GET /x HTTP/1.0":            "want \"METHOD /path\"",
		"get /x":                     "not upper case",
		"GET http://h/x":             "origin-form",
		"GET /x\nbad header":         "want \"Name: value\"",
		"GET /x\nBad Name: v":        "want \"Name: value\"",
		"GET /x\nA: b\x00c":          "control byte",
		strings.Repeat("x", 1<<20+1): "longer than",
	}
	for s, want := range bad {
		if _, err := httprule.ParseOperation(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseOperation(%q) = %v, want error containing %q", clip(s), err, want)
		}
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func TestCheckOperation(t *testing.T) {
	t.Parallel()
	g, err := httprule.New(httprule.Config{MaxBodyBytes: 4, Rules: []httprule.Rule{
		{Methods: []string{"*"}, Path: "/**", Effect: "allow"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		op, reason string
	}{
		{"POST /x\n\nabcd", ""},
		{"POST /x\n\nabcde", "exceeds the limit of 4 bytes"},
		{"POST /x\nX-HTTP-Method-Override: DELETE\n\n", "method override header"},
		{"GET /../etc/passwd", "dot segment"},
	}
	for _, c := range cases {
		op, err := httprule.ParseOperation(c.op)
		if err != nil {
			t.Fatal(err)
		}
		v := g.CheckOperation(op)
		if v.Allowed != (c.reason == "") || !strings.Contains(v.Reason, c.reason) {
			t.Errorf("CheckOperation(%q) = %+v, want reason %q", c.op, v, c.reason)
		}
	}
}
