package httprule_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
)

// FuzzCheck: the guard never panics, and a path it allows never holds a
// traversal, however many times an upstream decodes it.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"/v1/flags", "/v1/files/a/b", "/v1/files/%2e%2e/x", "/v1/files/..%2f", "/a;b", "/%c0%af",
		"/v1/files/%252e", "//x", "/x/./y", "/x?_method=PUT", "/v1/files/%41%42", "/v1/files/caf%C3%A9?x=%0a"} {
		f.Add("GET", s)
	}
	g, err := httprule.New(httprule.Config{Rules: []httprule.Rule{
		{Methods: []string{"*"}, Path: "/v1/files/**", Effect: "allow"},
		{Methods: []string{"GET"}, Path: "/v1/{a}/*", Effect: "allow"},
		{Methods: []string{"*"}, Path: "/v1/files/secret/**", Effect: "deny"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		v := g.Check(method, path)
		if !v.Allowed {
			if v.Reason == "" {
				t.Fatalf("refusal without a reason for %q %q", method, path)
			}
			return
		}
		p, _, _ := strings.Cut(path, "?")
		for range 4 { // an upstream that decodes again and again
			for _, seg := range strings.Split(p, "/")[1:] {
				if seg == "." || seg == ".." || seg == "" && !strings.HasSuffix(p, "/") {
					t.Fatalf("allowed %q decodes to traversal %q", path, p)
				}
			}
			if strings.ContainsAny(p, "\\\x00;") {
				t.Fatalf("allowed %q decodes to %q", path, p)
			}
			d, err := url.PathUnescape(p)
			if err != nil || d == p {
				break
			}
			if strings.Count(d, "/") != strings.Count(p, "/") {
				t.Fatalf("allowed %q gains a slash when decoded: %q", path, d)
			}
			p = d
		}
		if len(v.Target.Segments) >= 3 && strings.EqualFold(v.Target.Segments[2], "secret") && v.Target.Segments[1] == "files" {
			t.Fatalf("deny rule bypassed by %q", path)
		}
	})
}

func FuzzParseOperation(f *testing.F) {
	for _, s := range []string{"GET /v1/flags", "POST /x\nA: b\n\nbody", "GET /x HTTP/1.1\r\n\r\n", "\n\n\n"} {
		f.Add(s)
	}
	g, err := httprule.New(httprule.Config{MaxBodyBytes: 16, Rules: []httprule.Rule{{Methods: []string{"*"}, Path: "/**", Effect: "allow"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		op, err := httprule.ParseOperation(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(op.Target, "/") || op.Method == "" {
			t.Fatalf("parsed %q into %+v", s, op)
		}
		_ = g.CheckOperation(op)
	})
}
