package record_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/jitgate/jitgate/ephemeral/record"
)

var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// FuzzDecode feeds arbitrary bytes to the reader and the verifier: they must
// never panic or allocate past the input, and whatever verifies must be a
// complete, signed recording that also decodes, with the same events.
// Run with a short -fuzzminimizetime: seeds are a few KiB.
func FuzzDecode(f *testing.F) {
	s := &edSigner{priv: fuzzKey}
	_, good := writeRecording(f, f.TempDir(), "g-fuzz", s, 12)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:len(record.Format)+1])
	f.Add([]byte(`{"format":"jitgate-recording/v1","grant_id":"g","identity":"i","target":"t","rule":"r","mode":"exec","started":"2026-01-01T00:00:00Z"}` + "\n" +
		`{"time":"2026-01-01T00:00:00Z","type":"started"}` + "\n"))
	f.Add([]byte(record.Format + "\nH\xff\xff\xff\xff"))
	f.Add([]byte(record.Format + "\nC\x03\xff\xff\xffabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var n int
		rep, err := record.Verify(bytes.NewReader(b), record.VerifyOptions{PublicKey: fuzzKey.Public().(ed25519.PublicKey),
			OnEvent: func(record.Event) error { n++; return nil }})
		_, evs, derr := record.Decode(bytes.NewReader(b))
		if err != nil {
			return
		}
		if !rep.Complete || !rep.Signed || rep.Events != n {
			t.Fatalf("verified but report %+v, %d events", rep, n)
		}
		if derr != nil || len(evs) != n {
			t.Fatalf("verified (%d events) but Decode: %v, %d events", n, derr, len(evs))
		}
	})
}

// FuzzChunkContent gets past the hashes: it wraps arbitrary bytes as a chunk
// with a matching (unsigned) seal, once as the compressed payload (the zstd
// decoder's input) and once compressed (the event parser's input).
func FuzzChunkContent(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","type":"started"}`+"\n"), 1)
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","type":"started"}`+"\n"+`{"time":"2026-01-01T00:00:00Z","type":"ended"}`+"\n"), 2)
	f.Add([]byte("\x28\xb5\x2f\xfd\x00\x58\x31\x00\x00"), 0)
	f.Fuzz(func(t *testing.T, b []byte, events int) {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		defer enc.Close()
		for _, payload := range [][]byte{b, enc.EncodeAll(b, nil)} {
			file := craft(t, payload, len(b), events)
			rep, err := record.Verify(bytes.NewReader(file), record.VerifyOptions{})
			_, evs, derr := record.Decode(bytes.NewReader(file))
			if err == nil && (!rep.Complete || derr != nil || len(evs) != rep.Events) {
				t.Fatalf("verified but %+v, decode %v", rep, derr)
			}
		}
	})
}

// craft builds a one-chunk v2 file around payload with a seal that matches it.
func craft(t *testing.T, payload []byte, raw, events int) []byte {
	h := record.Header{Format: record.Format, GrantID: "g", Identity: "i", Target: "t", Rule: "r", Mode: "exec", Compression: "zstd"}
	hb, _ := json.Marshal(h)
	frame := func(kind byte, p []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{kind}, uint32(len(p))), p...)
	}
	file := append([]byte(record.Format+"\n"), frame('H', hb)...)
	root := sha256.Sum256(file)
	sum := sha256.Sum256(payload)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	body, _ := json.Marshal(record.SealBody{Chunk: 0, Grant: "g", SHA256: hex.EncodeToString(sum[:]), Prev: hex.EncodeToString(root[:]),
		Size: len(payload), Raw: raw, Events: events, First: t0, Last: t0, Final: true})
	seal, _ := json.Marshal(map[string]json.RawMessage{"seal": body})
	file = append(file, frame('C', payload)...)
	return append(file, frame('S', seal)...)
}

// The fuzz harness really reaches the event parser: a crafted well-formed chunk verifies.
func TestCraftedChunkVerifies(t *testing.T) {
	raw := []byte(`{"time":"2026-01-01T00:00:00Z","type":"started"}` + "\n" + `{"time":"2026-01-01T00:00:00Z","type":"ended"}` + "\n")
	enc, _ := zstd.NewWriter(nil)
	defer enc.Close()
	rep, err := record.Verify(bytes.NewReader(craft(t, enc.EncodeAll(raw, nil), len(raw), 2)), record.VerifyOptions{})
	if err != nil || !rep.Complete || rep.Events != 2 {
		t.Fatalf("%v %+v", err, rep)
	}
}
