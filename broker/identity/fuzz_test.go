package identity_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/identity"
)

// FuzzVerify feeds arbitrary strings (seeded with a valid token and mangled
// variants) to Verify. Properties: it never panics, every refusal wraps
// ErrInvalidToken, and anything accepted carries the issuer's identity.
func FuzzVerify(f *testing.F) {
	e := newEnv(f, "ES256")
	valid := e.sign(f, nil, e.claims())
	f.Add(valid)
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add(valid[:len(valid)-3])
	f.Add(strings.Repeat(".", 100))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := e.v.Verify(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if id.Issuer != e.iss.URL() || id.Subject == "" {
			t.Fatalf("accepted token with identity %+v", id)
		}
	})
}
