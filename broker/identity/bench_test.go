package identity_test

import (
	"context"
	"crypto"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyRS256 and BenchmarkVerifyES256 measure a full Verify (shape
// and claim checks, go-oidc, cached key set) next to a baseline of bare
// go-jose parsing and signature verification of the same token. Run:
//
//	go test -run '^$' -bench 'Verify(RS|ES)256' ./broker/identity/
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, "RS256") }
func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, "ES256") }

func benchVerify(b *testing.B, alg string) {
	e := newEnv(b, alg)
	tok := e.sign(b, nil, e.claims())
	ctx := context.Background()
	if _, err := e.v.Verify(ctx, tok); err != nil { // warm the key cache
		b.Fatal(err)
	}
	pub := e.key.(crypto.Signer).Public()
	b.Run("go-jose-baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := jws.Verify(pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verifier", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
