package record_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
)

type edSigner struct {
	priv ed25519.PrivateKey
	fail func() error // nil: never fails
}

func newSigner(t testing.TB) *edSigner {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &edSigner{priv: priv}
}

func (s *edSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	if s.fail != nil {
		if err := s.fail(); err != nil {
			return nil, err
		}
	}
	return ed25519.Sign(s.priv, msg), nil
}

func (s *edSigner) PublicKey() crypto.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// clock is a fake clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// frame is one frame of a v2 file as the tests see it.
type frame struct {
	kind       byte
	start, end int // [start, end) covers kind, length and payload
}

// frames splits a well-formed v2 file into frames.
func frames(t testing.TB, b []byte) []frame {
	t.Helper()
	off := len(record.Format) + 1
	var out []frame
	for off < len(b) {
		if off+5 > len(b) {
			t.Fatalf("torn frame header at %d", off)
		}
		n := int(binary.BigEndian.Uint32(b[off+1:]))
		out = append(out, frame{kind: b[off], start: off, end: off + 5 + n})
		off += 5 + n
	}
	return out
}

// chunkFrames returns, per chunk index, the chunk frame and the seal frame.
func chunkFrames(t testing.TB, b []byte) [][2]frame {
	t.Helper()
	fs := frames(t, b)
	if len(fs) == 0 || fs[0].kind != 'H' || len(fs)%2 != 1 {
		t.Fatalf("unexpected frame layout: %d frames", len(fs))
	}
	var out [][2]frame
	for i := 1; i < len(fs); i += 2 {
		if fs[i].kind != 'C' || fs[i+1].kind != 'S' {
			t.Fatalf("frame %d: kinds %q %q", i, fs[i].kind, fs[i+1].kind)
		}
		out = append(out, [2]frame{fs[i], fs[i+1]})
	}
	return out
}

func header(id string) record.Header {
	return record.Header{GrantID: id, Identity: "https://issuer#agent", Target: "shop", Rule: "agents-read",
		LeaseID: "lease-1", Version: "v0.1.0", Mode: "session", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// writeRecording writes a signed recording of n query events in small chunks
// (sealed by size only) and returns its bytes.
func writeRecording(t testing.TB, dir, id string, s record.Signer, n int) (string, []byte) {
	t.Helper()
	c := newClock()
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Header: header(id), Signer: s,
		ChunkBytes: 1 << 10, FlushInterval: -1, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := r.Write(record.Event{Type: record.Query, Conn: 1 + i%3, Statement: fmt.Sprintf("SELECT %d, '%s'", i, strings.Repeat("x", i%50))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	return r.Path(), b
}

func verifyErr(t testing.TB, err error) *record.VerifyError {
	t.Helper()
	var ve *record.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *VerifyError", err, err)
	}
	return ve
}
