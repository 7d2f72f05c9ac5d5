package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"strings"
)

// verifySignature checks raw's signature against the issuer's keys. hdr is
// raw's header, already strictly decoded, and alg its algorithm, already
// checked against the issuer's allow-list.
//
// RS* and ES* (the default algorithms) are verified directly with the
// standard library over the signing input: the header and payload were
// decoded once already, and go-jose would parse them a second time. Key
// selection is the same as VerifySignature's (kid, use, alg and key type must
// fit; a refresh at most once per interval when none does). PS* and EdDSA go
// through go-jose (VerifySignature).
func (is *issuer) verifySignature(ctx context.Context, raw string, hdr map[string]any, alg string, payloadJSON []byte) error {
	h := sigHash(alg)
	if h == nil {
		verified, err := is.VerifySignature(ctx, raw)
		if err != nil {
			return err
		}
		if string(verified) != string(payloadJSON) {
			return errors.New("verified payload differs from parsed payload")
		}
		return nil
	}
	kid := ""
	if v, ok := hdr["kid"]; ok {
		s, ok := v.(string)
		if !ok {
			return errors.New("malformed token: kid is not a string")
		}
		kid = s
	}
	dot := strings.LastIndexByte(raw, '.')
	sig, err := base64.RawURLEncoding.Strict().DecodeString(raw[dot+1:])
	if err != nil || len(sig) == 0 {
		return errors.New("malformed token: signature is not base64url")
	}
	h.Write([]byte(raw[:dot]))
	digest := h.Sum(nil)
	cands := is.candidates(kid, alg)
	if len(cands) == 0 {
		if err := is.refresh(ctx); err != nil {
			return err
		}
		cands = is.candidates(kid, alg)
		if len(cands) == 0 {
			switch {
			case kid == "":
				return fmt.Errorf("no key of the issuer fits algorithm %s", alg)
			case is.hasKID(kid):
				return fmt.Errorf("key %q does not fit algorithm %s", kid, alg)
			}
			return fmt.Errorf("unknown key id %q", kid)
		}
	}
	for i := range cands {
		if verifyDigest(cands[i].Key, alg, digest, sig) {
			return nil
		}
	}
	return errors.New("signature invalid")
}

// sigHash returns the hash of an algorithm verified directly, or nil.
func sigHash(alg string) hash.Hash {
	switch alg {
	case "RS256", "ES256":
		return sha256.New()
	case "RS384", "ES384":
		return sha512.New384()
	case "RS512", "ES512":
		return sha512.New()
	}
	return nil
}

// verifyDigest checks one key. ES* signatures are R||S, each the curve's
// byte size (RFC 7518 §3.4); anything else is refused.
func verifyDigest(key any, alg string, digest, sig []byte) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		var h crypto.Hash
		switch alg {
		case "RS256":
			h = crypto.SHA256
		case "RS384":
			h = crypto.SHA384
		case "RS512":
			h = crypto.SHA512
		default:
			return false
		}
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		if !strings.HasPrefix(alg, "ES") || !keyFitsAlg(k, alg) {
			return false
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}
