package kmssign_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/sign/kmssign"
)

// edKMS answers as KMS does for an ECC_NIST_EDWARDS25519 key (moto has none):
// it checks that the signer asks for RAW pure Ed25519.
type edKMS struct {
	priv  ed25519.PrivateKey
	calls int
}

func (k *edKMS) GetPublicKey(_ context.Context, in *kms.GetPublicKeyInput, _ ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	der, _ := x509.MarshalPKIXPublicKey(k.priv.Public())
	return &kms.GetPublicKeyOutput{KeyId: aws.String("arn:aws:kms:eu-west-1:123456789012:key/ed"), KeySpec: types.KeySpecEccNistEdwards25519,
		KeyUsage: types.KeyUsageTypeSignVerify, PublicKey: der,
		SigningAlgorithms: []types.SigningAlgorithmSpec{types.SigningAlgorithmSpecEd25519Sha512, types.SigningAlgorithmSpecEd25519PhSha512}}, nil
}

func (k *edKMS) Sign(_ context.Context, in *kms.SignInput, _ ...func(*kms.Options)) (*kms.SignOutput, error) {
	k.calls++
	if in.MessageType != types.MessageTypeRaw || in.SigningAlgorithm != types.SigningAlgorithmSpecEd25519Sha512 || aws.ToString(in.KeyId) != "arn:aws:kms:eu-west-1:123456789012:key/ed" {
		return nil, errors.New("unexpected sign request")
	}
	return &kms.SignOutput{Signature: ed25519.Sign(k.priv, in.Message)}, nil
}

func TestEd25519KMSKey(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	api := &edKMS{priv: priv}
	s, err := kmssign.New(t.Context(), kmssign.Config{Client: api, KeyID: "alias/rec"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := record.Create(t.Context(), record.Config{Dir: t.TempDir(), Signer: s, FlushInterval: -1,
		Header: record.Header{GrantID: "g-ed", Identity: "i", Target: "t", Rule: "r", Mode: "exec"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Write(record.Event{Type: record.Query, Statement: "SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: priv.Public()})
	if err != nil || !rep.Signed || !strings.HasPrefix(rep.KeyID, "ed25519:") || api.calls != rep.Chunks {
		t.Fatalf("verify: %+v %v (%d sign calls)", rep, err, api.calls)
	}
}
