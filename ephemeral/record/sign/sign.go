// Package sign holds the keys that seal session recordings: every chunk the
// recorder writes (engine → guard → mask → record → sign → upload) carries an
// Ed25519 signature over its seal, which `jitgate recording verify` checks
// offline with the public key.
//
// KeyFile is the signer for local use: a PKCS#8 PEM private key in the data
// directory, generated on first use, with its public key (PKIX PEM) next to it.
//
// Production signers implement the same two methods (record.Signer) and keep the
// private key out of the proxy:
//
//   - Vault transit: a key of type ed25519; Sign is POST <mount>/sign/<name>
//     with "input" = base64(msg), and the signature is the base64 after the
//     "vault:v<N>:" prefix of the answer; PublicKey is the key version's
//     public_key from GET <mount>/keys/<name>. Pin the key version (key_version)
//     so rotation does not change the key under a running proxy.
//   - AWS KMS (package kmssign): an asymmetric SIGN_VERIFY key, Ed25519
//     (ECC_NIST_EDWARDS25519, ED25519_SHA_512) where the region offers it, else
//     ECDSA P-256 (ECC_NIST_P256, ECDSA_SHA_256; also what moto implements);
//     Sign is kms:Sign with MessageType RAW, messages up to 4096 bytes (a seal
//     body is well below 1 KiB); PublicKey is parsed from kms:GetPublicKey's
//     DER SubjectPublicKeyInfo once at start. ParseVerifyKey reads either key
//     type for verification.
//
// Remote signers are called once per sealed chunk, so size the recorder's
// ChunkBytes and FlushInterval to the service's request quota.
package sign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File names of the dev key pair inside a data directory.
const (
	KeyFileName       = "recording-signing.key"
	PublicKeyFileName = "recording-signing.pub"
)

// KeyFile signs with an Ed25519 private key read from a file.
type KeyFile struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// Sign signs msg (pure Ed25519). ctx is unused: the key is local.
func (k *KeyFile) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(k.priv, msg), nil
}

// PublicKey is the key the signatures verify under (an ed25519.PublicKey).
func (k *KeyFile) PublicKey() crypto.PublicKey { return k.pub }

// Ed25519PublicKey is PublicKey with its type.
func (k *KeyFile) Ed25519PublicKey() ed25519.PublicKey { return k.pub }

// String never shows the private key.
func (k *KeyFile) String() string { return "sign.KeyFile(" + fmt.Sprintf("%x", k.pub[:8]) + "…)" }

// GoString never shows the private key.
func (k *KeyFile) GoString() string { return k.String() }

// LoadKeyFile reads a PKCS#8 PEM Ed25519 private key. A key file readable by
// group or others is refused, as ssh refuses one.
func LoadKeyFile(path string) (*KeyFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sign: load key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sign: load key: %s is accessible by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sign: load key: %w", err)
	}
	return ParsePrivateKey(b)
}

// ParsePrivateKey parses a PKCS#8 PEM Ed25519 private key.
func ParsePrivateKey(pemBytes []byte) (*KeyFile, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("sign: load key: not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sign: load key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("sign: load key: %T is not an Ed25519 key", k)
	}
	return &KeyFile{priv: priv, pub: priv.Public().(ed25519.PublicKey)}, nil
}

// LoadOrCreateKeyFile loads the key at path, or generates one there (mode
// 0600, never overwriting a key another process wrote first) and writes its
// public key to PublicKeyPath(path). For dev and single-host use.
func LoadOrCreateKeyFile(path string) (*KeyFile, error) {
	k, err := LoadKeyFile(path)
	if err == nil {
		if _, perr := os.Stat(PublicKeyPath(path)); errors.Is(perr, fs.ErrNotExist) {
			if err := WritePublicKey(PublicKeyPath(path), k.pub); err != nil {
				return nil, err
			}
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sign: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sign: generate key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sign: generate key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKeyFile(path) // another process won the race
		}
		return nil, fmt.Errorf("sign: generate key: %w", err)
	}
	if err := WritePublicKey(PublicKeyPath(path), pub); err != nil {
		return nil, err
	}
	return &KeyFile{priv: priv, pub: pub}, nil
}

// writeNew writes b to path atomically and only if path does not exist yet.
func writeNew(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}

// PublicKeyPath is where the public key of the key file at keyPath is kept:
// the same name with ".pub" instead of ".key".
func PublicKeyPath(keyPath string) string {
	return strings.TrimSuffix(keyPath, ".key") + ".pub"
}

// MarshalPublicKey encodes pub as a PKIX PEM PUBLIC KEY.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for a valid Ed25519 key
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePublicKey writes pub to path (mode 0644), replacing the file atomically.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-pub-*")
	if err != nil {
		return fmt.Errorf("sign: write public key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(MarshalPublicKey(pub))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("sign: write public key: %w", err)
	}
	return nil
}

// ReadPublicKey reads a PKIX PEM Ed25519 public key.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sign: read public key: %w", err)
	}
	return ParsePublicKey(b)
}

// ParsePublicKey parses a PKIX PEM Ed25519 public key.
func ParsePublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("sign: read public key: not a PEM PUBLIC KEY")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sign: read public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("sign: read public key: %T is not an Ed25519 key", k)
	}
	return pub, nil
}

// ParseVerifyKey parses a PKIX PEM public key a recording can be verified
// with: Ed25519 (ed25519.PublicKey) or ECDSA P-256 (*ecdsa.PublicKey, the
// AWS KMS key type where KMS has no Ed25519; kms:GetPublicKey's DER, PEM
// encoded, is such a file).
func ParseVerifyKey(pemBytes []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("sign: read public key: not a PEM PUBLIC KEY")
	}
	return ParseVerifyKeyDER(blk.Bytes)
}

// ParseVerifyKeyDER is ParseVerifyKey for a DER SubjectPublicKeyInfo.
func ParseVerifyKeyDER(der []byte) (crypto.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("sign: read public key: %w", err)
	}
	switch pub := k.(type) {
	case ed25519.PublicKey:
		return pub, nil
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("sign: read public key: ECDSA on %s, want P-256", pub.Curve.Params().Name)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("sign: read public key: %T is neither Ed25519 nor ECDSA P-256", k)
}

// ReadVerifyKey reads a file for ParseVerifyKey.
func ReadVerifyKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sign: read public key: %w", err)
	}
	return ParseVerifyKey(b)
}

// MarshalVerifyKey encodes an Ed25519 or ECDSA public key as PKIX PEM.
func MarshalVerifyKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("sign: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
