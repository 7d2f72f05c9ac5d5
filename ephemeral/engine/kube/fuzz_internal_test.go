package kube

import (
	"net/http"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// FuzzAuthorized: only exactly one Authorization header carrying
// "Bearer <grant secret>" authenticates.
func FuzzAuthorized(f *testing.F) {
	const secret = "s3cret-grant"
	for _, s := range []string{"Bearer " + secret, "bearer " + secret, "Bearer  " + secret, "Basic " + secret, secret,
		"Bearer " + secret + "x", "Bearer", "", "Bearer " + secret[:5]} {
		f.Add(s, "")
		f.Add(s, "Bearer "+secret)
	}
	e := &Engine{secret: []byte(secret), g: &spec.Grant{}}
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{}
		h.Add("Authorization", a)
		if b != "" {
			h.Add("Authorization", b)
		}
		got := e.authorized(&http.Request{Header: h})
		scheme, tok, ok := strings.Cut(a, " ")
		want := b == "" && ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(tok) == secret
		if got != want {
			t.Fatalf("authorized(%q, %q) = %v, want %v", a, b, got, want)
		}
	})
}
