package record

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Signer signs the seals of a recording. Implementations: a key file
// (ephemeral/record/sign, Ed25519); AWS KMS (ephemeral/record/sign/kmssign:
// Ed25519 keys where the region has them, ECDSA P-256 keys elsewhere) or Vault
// transit (Ed25519) behind the same two methods. Sign is called once per
// sealed chunk (by default at most about once a second, more often under a
// flood: size ChunkBytes for a remote signer's rate limit).
//
// Two key types are accepted, and Verify accepts both:
//   - ed25519.PublicKey: Sign returns the 64-byte pure Ed25519 signature of msg.
//   - *ecdsa.PublicKey on P-256: Sign returns the ASN.1 DER ECDSA signature of
//     SHA-256(msg) (KMS ECDSA_SHA_256 with MessageType RAW).
type Signer interface {
	Sign(ctx context.Context, msg []byte) ([]byte, error)
	// PublicKey is the key the signatures verify under.
	PublicKey() crypto.PublicKey
}

// SealDomain prefixes the seal body in every signed message, so a recording
// signature can never be taken for a signature over anything else.
const SealDomain = "jitgate-recording/v2 seal\n"

// KeyID names a public key: "ed25519:" and the first 16 bytes of the key's
// SHA-256, hex; for an ECDSA P-256 key "ecdsa-p256:" and the first 16 bytes
// of the SHA-256 of its PKIX DER encoding. Any other key has no id ("").
func KeyID(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return ""
		}
		sum := sha256.Sum256(k)
		return "ed25519:" + hex.EncodeToString(sum[:16])
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return ""
		}
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return ""
		}
		sum := sha256.Sum256(der)
		return "ecdsa-p256:" + hex.EncodeToString(sum[:16])
	}
	return ""
}

// verifyKey returns pub, nil for "no key" (a nil interface, an empty
// Ed25519 key, a nil ECDSA key), or an error for a key type Verify cannot use.
func NormalizePublicKey(pub crypto.PublicKey) (crypto.PublicKey, error) {
	switch k := pub.(type) {
	case nil:
		return nil, nil
	case ed25519.PublicKey:
		if len(k) == 0 {
			return nil, nil
		}
	case *ecdsa.PublicKey:
		if k == nil {
			return nil, nil
		}
	}
	if KeyID(pub) == "" {
		return nil, fmt.Errorf("record: %T is not an Ed25519 or ECDSA P-256 public key", pub)
	}
	return pub, nil
}

// verifySig checks sig over msg under pub (a key verifyKey accepted).
func verifySig(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(msg)
		return len(sig) <= 72 && ecdsa.VerifyASN1(k, sum[:], sig)
	}
	return false
}

const magic = Format + "\n"

// Frame kinds.
const (
	frameHeader byte = 'H'
	frameChunk  byte = 'C'
	frameSeal   byte = 'S'
)

// Limits every reader enforces, whatever a file claims.
const (
	maxHeaderFrame = 64 << 10
	maxSealFrame   = 64 << 10
	// MaxChunkRaw bounds the uncompressed size of one chunk (ChunkBytes plus one
	// event of MaxEventBytes must fit).
	MaxChunkRaw   = 64 << 20
	maxChunkFrame = MaxChunkRaw + MaxChunkRaw/8 + 1<<10 // zstd's worst case is far below this
)

// SealBody is what a seal commits to. Its exact JSON bytes are hashed into the
// chain and signed.
type SealBody struct {
	// Chunk is the index of the sealed chunk, from 0.
	Chunk int    `json:"chunk"`
	Grant string `json:"grant"`
	// SHA256 is the hex SHA-256 of the chunk frame's (compressed) payload.
	SHA256 string `json:"sha256"`
	// Prev is the chain hash of the previous seal; for chunk 0 the hash of the header.
	Prev string `json:"prev"`
	// Size is the compressed size, Raw the uncompressed size, of the chunk.
	Size   int       `json:"size"`
	Raw    int       `json:"raw"`
	Events int       `json:"events"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	// Final marks the last chunk: it ends with the "ended" event.
	Final bool `json:"final,omitempty"`
	// Truncated marks the chunk holding the "truncated" event.
	Truncated bool `json:"truncated,omitempty"`
	// Key is the KeyID of the signer; empty when unsigned.
	Key string `json:"key,omitempty"`
}

// sealFrame is the payload of an 'S' frame. Seal keeps the body's exact bytes.
type sealFrame struct {
	Seal rawJSON `json:"seal"`
	Sig  []byte  `json:"sig,omitempty"`
}

// rawJSON is json.RawMessage without the copy-on-marshal surprises: it marshals
// as its bytes and unmarshals by keeping them.
type rawJSON []byte

func (m rawJSON) MarshalJSON() ([]byte, error) {
	if len(m) == 0 {
		return []byte("null"), nil
	}
	return m, nil
}

func (m *rawJSON) UnmarshalJSON(b []byte) error {
	*m = append((*m)[:0], b...)
	return nil
}

func appendFrame(dst []byte, kind byte, payload []byte) []byte {
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

func chainHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// headerHash is the chain's root: the SHA-256 of the magic and the header frame.
func headerHash(headerPayload []byte) string {
	h := sha256.New()
	h.Write([]byte(magic))
	h.Write(appendFrame(nil, frameHeader, headerPayload))
	return hex.EncodeToString(h.Sum(nil))
}

func sealMessage(body []byte) []byte {
	msg := make([]byte, 0, len(SealDomain)+len(body))
	msg = append(msg, SealDomain...)
	return append(msg, body...)
}

// frameReader reads frames with per-kind size limits and counts offsets.
type frameReader struct {
	r   *bufio.Reader
	off int64
}

var errEOF = errors.New("end of file")

// next returns the next frame. At a clean end of input it returns errEOF; a
// frame cut short returns io.ErrUnexpectedEOF.
func (fr *frameReader) next() (byte, []byte, error) {
	var hdr [5]byte
	n, err := io.ReadFull(fr.r, hdr[:])
	if err == io.EOF {
		return 0, nil, errEOF
	}
	if err != nil {
		fr.off += int64(n)
		return 0, nil, io.ErrUnexpectedEOF
	}
	kind := hdr[0]
	size := binary.BigEndian.Uint32(hdr[1:])
	limit := uint32(0)
	switch kind {
	case frameHeader:
		limit = maxHeaderFrame
	case frameSeal:
		limit = maxSealFrame
	case frameChunk:
		limit = maxChunkFrame
	default:
		return kind, nil, fmt.Errorf("unknown frame kind 0x%02x at offset %d", kind, fr.off)
	}
	if size > limit {
		return kind, nil, fmt.Errorf("frame %q at offset %d claims %d bytes (limit %d)", kind, fr.off, size, limit)
	}
	// Grow the buffer as bytes arrive, so a lying length cannot allocate memory
	// the input does not back.
	payload := make([]byte, 0, min(int(size), 1<<20))
	for len(payload) < int(size) {
		want := min(int(size)-len(payload), 1<<20)
		start := len(payload)
		payload = append(payload, make([]byte, want)...)
		n, err := io.ReadFull(fr.r, payload[start:])
		if err != nil {
			fr.off += 5 + int64(start+n)
			return kind, nil, io.ErrUnexpectedEOF
		}
	}
	fr.off += 5 + int64(size)
	return kind, payload, nil
}
