package record_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record"
)

// p256Signer signs as AWS KMS does with an ECC_NIST_P256 key and
// ECDSA_SHA_256: ASN.1 DER over SHA-256 of the message.
type p256Signer struct{ priv *ecdsa.PrivateKey }

func (s p256Signer) Sign(_ context.Context, msg []byte) ([]byte, error) {
	sum := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.priv, sum[:])
}
func (s p256Signer) PublicKey() crypto.PublicKey { return &s.priv.PublicKey }

func TestECDSAP256Recording(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := p256Signer{priv}
	dir := t.TempDir()
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Signer: s, FlushInterval: -1, ChunkBytes: 1024,
		Header: record.Header{GrantID: "g-p256", Identity: "i", Target: "t", Rule: "r", Mode: "exec"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 80 {
		if err := r.Write(record.Event{Type: record.Query, Statement: strings.Repeat("SELECT 1;", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: &priv.PublicKey})
	if err != nil || !rep.Signed || !rep.Complete || !strings.HasPrefix(rep.KeyID, "ecdsa-p256:") || rep.Chunks < 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	// Another P-256 key, and an Ed25519 key, are not the signer.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, k := range map[string]crypto.PublicKey{"other p256": &other.PublicKey, "ed25519": newSigner(t).PublicKey()} {
		if _, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: k}); err == nil || !strings.Contains(err.Error(), "not the expected") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A flipped byte in chunk 1's data is named.
	b, _ := os.ReadFile(r.Path())
	idx := strings.Index(string(b), `"chunk":1,`)
	if idx < 0 {
		t.Fatal("no seal of chunk 1")
	}
	flipped := append([]byte(nil), b...)
	flipped[idx+len(`"chunk":1,`)+3] ^= 1 // inside chunk 1's seal body
	_, err = record.Verify(strings.NewReader(string(flipped)), record.VerifyOptions{PublicKey: &priv.PublicKey})
	var ve *record.VerifyError
	if !errors.As(err, &ve) || ve.Chunk != 1 {
		t.Fatalf("flipped seal: %v, want chunk 1 named", err)
	}
	// Keys Verify cannot use are refused, not ignored.
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, k := range map[string]crypto.PublicKey{"p384": &p384.PublicKey, "bytes": []byte("x")} {
		if _, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: k}); err == nil {
			t.Errorf("%s key accepted", name)
		}
	}
	// A typed nil key means "no key", never a pass.
	var nilKey *ecdsa.PublicKey
	if rep, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: nilKey}); err != nil || rep.Signed {
		t.Errorf("typed nil key: %+v %v", rep, err)
	}
}
