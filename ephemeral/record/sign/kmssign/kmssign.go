// Package kmssign signs session recordings with an AWS KMS key: the
// production record.Signer of the AWS deployment (engine → guard → mask →
// record → SIGN → upload), so the runner never holds a private key.
//
// The key is an asymmetric SIGN_VERIFY key of one of two specs:
//
//   - ECC_NIST_EDWARDS25519 (where the region offers it): kms:Sign with
//     MessageType RAW and ED25519_SHA_512 (pure Ed25519), 64-byte signatures;
//     the recording's key id is "ed25519:…", the same as a key file's.
//   - ECC_NIST_P256 (everywhere, and the one moto implements): kms:Sign with
//     MessageType RAW and ECDSA_SHA_256, ASN.1 DER signatures of SHA-256 of
//     the seal; key id "ecdsa-p256:…". record.Verify accepts both.
//
// New reads the public key once (kms:GetPublicKey) and checks the key's spec
// and usage; Sign is one kms:Sign per sealed chunk (a seal is far below KMS's
// 4096-byte RAW limit). The role needs kms:Sign and kms:GetPublicKey on the
// key. Verifiers need only the public key: PublicKeyPEM writes it for
// `jitgate recording verify --public-key`, or `--kms-key` fetches it.
//
//	signer, err := kmssign.New(ctx, kmssign.Config{Client: kms.NewFromConfig(cfg), KeyID: "alias/jitgate-recordings"})
//	session.Config{..., Signer: signer}
package kmssign

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
)

// API is the part of the KMS client the signer uses.
type API interface {
	Sign(ctx context.Context, in *kms.SignInput, opts ...func(*kms.Options)) (*kms.SignOutput, error)
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, opts ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
}

// Config configures a Signer.
type Config struct {
	// Client reaches KMS. Required.
	Client API
	// KeyID is the key's id, ARN, alias name ("alias/…") or alias ARN. Pin
	// a key, not an alias, if rotation by re-pointing the alias must not
	// change the key under a running proxy. Required.
	KeyID string
}

// Signer is a record.Signer backed by a KMS key. Safe for concurrent use.
type Signer struct {
	client API
	keyID  string // the key, as GetPublicKey named it (its ARN in AWS)
	alg    types.SigningAlgorithmSpec
	pub    crypto.PublicKey
}

var _ record.Signer = (*Signer)(nil)

// New fetches and checks the key's public half.
func New(ctx context.Context, cfg Config) (*Signer, error) {
	if cfg.Client == nil || cfg.KeyID == "" {
		return nil, errors.New("kmssign: Client and KeyID are required")
	}
	out, err := cfg.Client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(cfg.KeyID)})
	if err != nil {
		return nil, fmt.Errorf("kmssign: get public key of %s: %w", cfg.KeyID, err)
	}
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("kmssign: key %s is for %s, not SIGN_VERIFY", cfg.KeyID, out.KeyUsage)
	}
	spec := out.KeySpec
	if spec == "" { // older KMS answers (and moto) carry only the deprecated field
		spec = types.KeySpec(out.CustomerMasterKeySpec)
	}
	var alg types.SigningAlgorithmSpec
	switch spec {
	case types.KeySpecEccNistEdwards25519:
		alg = types.SigningAlgorithmSpecEd25519Sha512
	case types.KeySpecEccNistP256:
		alg = types.SigningAlgorithmSpecEcdsaSha256
	default:
		return nil, fmt.Errorf("kmssign: key %s is %q; recordings are signed with ECC_NIST_EDWARDS25519 or ECC_NIST_P256 keys", cfg.KeyID, spec)
	}
	supported := false
	for _, a := range out.SigningAlgorithms {
		supported = supported || a == alg
	}
	if !supported {
		return nil, fmt.Errorf("kmssign: key %s does not offer %s", cfg.KeyID, alg)
	}
	pub, err := sign.ParseVerifyKeyDER(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kmssign: key %s: %w", cfg.KeyID, err)
	}
	return &Signer{client: cfg.Client, keyID: aws.ToString(out.KeyId), alg: alg, pub: pub}, nil
}

// Sign signs msg with the KMS key (one kms:Sign call).
func (s *Signer) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	out, err := s.client.Sign(ctx, &kms.SignInput{KeyId: aws.String(s.keyID), Message: msg,
		MessageType: types.MessageTypeRaw, SigningAlgorithm: s.alg})
	if err != nil {
		return nil, fmt.Errorf("kmssign: sign: %w", err)
	}
	return out.Signature, nil
}

// PublicKey is the key the signatures verify under.
func (s *Signer) PublicKey() crypto.PublicKey { return s.pub }

// KMSKey is the key as KMS named it (its ARN in AWS): what the signer calls
// kms:Sign with, and what `jitgate recording verify --kms-key` can take.
func (s *Signer) KMSKey() string { return s.keyID }

// String names the key, never anything secret (there is nothing secret here).
func (s *Signer) String() string {
	return "kmssign.Signer(" + s.keyID + ", " + record.KeyID(s.pub) + ")"
}

// PublicKeyPEM fetches the public key of keyID (kms:GetPublicKey) as a PKIX
// PEM file for `jitgate recording verify --public-key`.
func PublicKeyPEM(ctx context.Context, client API, keyID string) ([]byte, error) {
	s, err := New(ctx, Config{Client: client, KeyID: keyID})
	if err != nil {
		return nil, err
	}
	return sign.MarshalVerifyKey(s.pub)
}
