package identity_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyRS256 and BenchmarkVerifyES256 measure a full Verify (shape
// and claim checks, go-oidc, cached key set) next to a baseline of bare
// go-jose parsing and signature verification of the same token, and of the
// bare standard-library signature check (the floor). Run:
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
	// The floor: the bare signature check of the same token with the standard
	// library (SHA-256 of the signing input, then RSA or ECDSA), no parsing.
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("crypto-baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sum := sha256.Sum256([]byte(tok[:dot]))
			switch k := pub.(type) {
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig); err != nil {
					b.Fatal(err)
				}
			case *ecdsa.PublicKey:
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				if !ecdsa.Verify(k, sum[:], r, s) {
					b.Fatal("ecdsa: signature invalid")
				}
			}
		}
	})
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
