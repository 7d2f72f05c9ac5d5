package kmssign_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
	"github.com/jitgate/jitgate/ephemeral/record/sign/kmssign"
	"github.com/jitgate/jitgate/test/awstest"
)

func newKey(t *testing.T, c *kms.Client, spec types.KeySpec, usage types.KeyUsageType) string {
	t.Helper()
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage, Description: aws.String("jitgate recordings")})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// TestKMSSignedRecording: a recording signed by a KMS P-256 key (moto)
// verifies under the key's public half, fetched from KMS and written as PEM;
// a flipped byte is named; keys of the wrong kind are refused up front.
func TestKMSSignedRecording(t *testing.T) {
	t.Parallel()
	srv := awstest.Start(t)
	c := kms.NewFromConfig(srv.Config())
	arn := newKey(t, c, types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify)
	alias := "alias/jitgate-recordings"
	if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	s, err := kmssign.New(t.Context(), kmssign.Config{Client: c, KeyID: alias})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(arn, s.KMSKey()) || !strings.HasPrefix(record.KeyID(s.PublicKey()), "ecdsa-p256:") {
		t.Fatalf("signer %s, key %s", s, record.KeyID(s.PublicKey()))
	}
	dir := t.TempDir()
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Signer: s, FlushInterval: -1, ChunkBytes: 1024,
		Header: record.Header{GrantID: "g-kms", Identity: "dev|agent", Target: "orders-db", Rule: "r", Mode: "exec"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if err := r.Write(record.Event{Type: record.Query, Statement: strings.Repeat("SELECT name FROM users; ", i%5+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := kmssign.PublicKeyPEM(t.Context(), c, arn)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.ParseVerifyKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: pub})
	if err != nil || !rep.Signed || !rep.Complete || rep.KeyID != record.KeyID(s.PublicKey()) || rep.Chunks < 3 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	b, _ := os.ReadFile(r.Path())
	i := strings.Index(string(b), `"chunk":2,`)
	if i < 0 {
		t.Fatal("no chunk 2")
	}
	// The byte before the seal frame is the end of chunk 2's compressed data.
	frame := strings.LastIndex(string(b[:i]), "S")
	flipped := append([]byte(nil), b...)
	flipped[frame-6] ^= 0x01
	p := filepath.Join(dir, "flipped.jgr")
	if err := os.WriteFile(p, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = record.VerifyFile(p, record.VerifyOptions{PublicKey: pub})
	var ve *record.VerifyError
	if !errors.As(err, &ve) || ve.Chunk != 2 {
		t.Fatalf("flipped byte: %v, want chunk 2 named", err)
	}

	for name, key := range map[string]string{
		"symmetric":   newKey(t, c, types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt),
		"rsa":         newKey(t, c, types.KeySpecRsa2048, types.KeyUsageTypeSignVerify),
		"p384":        newKey(t, c, types.KeySpecEccNistP384, types.KeyUsageTypeSignVerify),
		"no such key": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
	} {
		if _, err := kmssign.New(t.Context(), kmssign.Config{Client: c, KeyID: key}); err == nil {
			t.Errorf("%s key accepted", name)
		}
	}
}
