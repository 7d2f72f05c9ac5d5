package record

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
)

// VerifyOptions says what Verify checks beyond hashes and the chain.
type VerifyOptions struct {
	// PublicKey is the key every seal must be signed with. Nil skips signature
	// checks (Report.Signed stays false): that proves integrity against
	// accidents, not against someone who can rewrite the whole file.
	// Ed25519 (ed25519.PublicKey) and ECDSA P-256 (*ecdsa.PublicKey) keys
	// are accepted.
	PublicKey crypto.PublicKey
	// OnEvent, when set, receives every event of every intact chunk, in order.
	OnEvent func(Event) error
}

// Report is what Verify found in a recording.
type Report struct {
	Header Header
	// Chunks is the number of intact chunks; Events the number of events in them.
	Chunks int
	Events int
	// Complete says the final seal (with the "ended" event) was found.
	Complete bool
	// Truncated says the recording reached its size cap (and says so itself).
	Truncated bool
	// Signed says every seal carried a signature that verified under the key.
	Signed bool
	// KeyID names the key the seals claim to be signed with.
	KeyID string
	// Last is the time of the last intact event.
	Last time.Time
}

// VerifyError names the first bad part of a recording.
type VerifyError struct {
	// Chunk is the index of the first bad chunk; -1 for the header.
	Chunk  int
	Reason string
	// Incomplete says the recording simply stops: every chunk before Chunk is
	// intact, and the final seal is missing (the file ends, possibly inside
	// Chunk). It unwraps to ErrIncomplete.
	Incomplete bool
}

func (e *VerifyError) Unwrap() error {
	if e.Incomplete {
		return ErrIncomplete
	}
	return nil
}

func (e *VerifyError) Error() string {
	if e.Chunk < 0 {
		return "record: verify: header: " + e.Reason
	}
	return fmt.Sprintf("record: verify: chunk %d: %s", e.Chunk, e.Reason)
}

// ErrIncomplete is wrapped by the VerifyError of a recording that ends without
// its final seal (the proxy was killed, or the tail was cut off).
var ErrIncomplete = errors.New("record: recording has no end")

// Verify checks a v2 recording: the header, every chunk's SHA-256 and sizes, the
// chain of seals, every signature (when opts.PublicKey is set), the events inside
// each chunk against its seal, and the final seal. The first problem is returned
// as a *VerifyError naming the chunk; what came before it is in the Report.
func Verify(r io.Reader, opts VerifyOptions) (Report, error) {
	return decode(r, opts, true)
}

// VerifyFile is Verify on a file.
func VerifyFile(path string, opts VerifyOptions) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("record: verify: %w", err)
	}
	defer f.Close()
	return Verify(f, opts)
}

// ReadFile reads a whole recording, v2 or v1. Unknown fields and unknown event
// types are errors: a recording is evidence and is read strictly. For v2 the
// chunk hashes and the chain are checked (signatures are Verify's job); a
// recording that is still being written, or whose proxy was killed, reads
// without error up to its last whole chunk (a torn tail is not an error here;
// Verify reports it). On error the events read so far are returned with it.
func ReadFile(path string) (Header, []Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, nil, fmt.Errorf("record: read: %w", err)
	}
	defer f.Close()
	h, evs, err := Decode(f)
	if err != nil {
		return h, evs, fmt.Errorf("record: read %s: %w", path, err)
	}
	return h, evs, nil
}

// Decode reads a recording (v2 or v1) from r; see ReadFile.
func Decode(r io.Reader) (Header, []Event, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	start, _ := br.Peek(len(magic))
	if len(start) > 0 && start[0] == '{' {
		return decodeV1(br)
	}
	var evs []Event
	rep, err := decode(br, VerifyOptions{OnEvent: func(ev Event) error {
		evs = append(evs, ev)
		return nil
	}}, false)
	return rep.Header, evs, err
}

// decode walks a v2 recording. strict also requires the final seal.
func decode(r io.Reader, opts VerifyOptions, strict bool) (Report, error) {
	var rep Report
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	head := make([]byte, len(magic))
	if n, _ := io.ReadFull(br, head); n < len(magic) || string(head) != magic {
		if n > 0 && head[0] == '{' {
			return rep, &VerifyError{Chunk: -1, Reason: "a v1 recording (plain JSON Lines) has no chunk hashes, chain or signature"}
		}
		return rep, &VerifyError{Chunk: -1, Reason: "not a " + Format + " recording"}
	}
	fr := &frameReader{r: br, off: int64(len(magic))}
	kind, hb, err := fr.next()
	if err != nil || kind != frameHeader {
		return rep, &VerifyError{Chunk: -1, Reason: "no header frame"}
	}
	if err := decodeStrict(hb, &rep.Header); err != nil {
		return rep, &VerifyError{Chunk: -1, Reason: "header: " + err.Error()}
	}
	h := rep.Header
	switch {
	case h.Format != Format:
		return rep, &VerifyError{Chunk: -1, Reason: fmt.Sprintf("unsupported format %q", h.Format)}
	case h.GrantID == "":
		return rep, &VerifyError{Chunk: -1, Reason: "no grant id"}
	case h.Compression != "zstd":
		return rep, &VerifyError{Chunk: -1, Reason: fmt.Sprintf("unsupported compression %q", h.Compression)}
	}
	rep.KeyID = h.KeyID
	wantKey := ""
	pub, err := NormalizePublicKey(opts.PublicKey)
	if err != nil {
		return rep, fmt.Errorf("record: verify: %w", err)
	}
	if pub != nil {
		wantKey = KeyID(pub)
		if h.KeyID != wantKey {
			if h.KeyID == "" {
				return rep, &VerifyError{Chunk: -1, Reason: "the recording is unsigned"}
			}
			return rep, &VerifyError{Chunk: -1, Reason: fmt.Sprintf("signed with key %s, not the expected %s", h.KeyID, wantKey)}
		}
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxChunkRaw), zstd.WithDecoderMaxWindow(MaxChunkRaw))
	if err != nil {
		return rep, fmt.Errorf("record: verify: %w", err)
	}
	defer dec.Close()

	chain := headerHash(hb)
	var raw []byte
	signedAll := pub != nil
	sawTruncated := false
	for i := 0; ; i++ {
		bad := func(format string, a ...any) (Report, error) {
			rep.Signed = false
			return rep, &VerifyError{Chunk: i, Reason: fmt.Sprintf(format, a...)}
		}
		// A torn tail: what a proxy killed in the middle of a write (or a cut
		// file) leaves. Every chunk before it is intact.
		torn := func(reason string) (Report, error) {
			rep.Signed = signedAll && rep.Chunks > 0
			if !strict {
				return rep, nil // a live recording read while its sealer appends
			}
			return rep, &VerifyError{Chunk: i, Reason: reason, Incomplete: true}
		}
		kind, data, err := fr.next()
		switch {
		case errors.Is(err, errEOF):
			rep.Signed = signedAll && rep.Chunks > 0
			if i == 0 {
				return bad("missing: the recording has no chunk at all")
			}
			if strict {
				return rep, &VerifyError{Chunk: i, Incomplete: true, Reason: fmt.Sprintf(
					"missing: the recording ends after chunk %d without its final seal (the proxy was killed, or the file was cut)", i-1)}
			}
			return rep, nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			return torn("truncated: the file ends inside the chunk data")
		case err != nil:
			return bad("%v", err)
		case kind == frameSeal:
			return bad("missing: a seal without its chunk data (the chunk was removed)")
		case kind != frameChunk:
			return bad("frame %q where chunk data belongs", kind)
		}
		kind, sp, err := fr.next()
		switch {
		case errors.Is(err, errEOF), errors.Is(err, io.ErrUnexpectedEOF):
			return torn("truncated: the file ends before the chunk's seal")
		case err != nil:
			return bad("%v", err)
		case kind != frameSeal:
			return bad("frame %q where the chunk's seal belongs", kind)
		}
		var sf sealFrame
		if err := decodeStrict(sp, &sf); err != nil {
			return bad("seal: %v", err)
		}
		var body SealBody
		if err := decodeStrict(sf.Seal, &body); err != nil {
			return bad("seal body: %v", err)
		}
		// The signature first: once it holds, the seal's own claims are the
		// signer's, and any mismatch below is in the data around it.
		if pub != nil {
			switch {
			case len(sf.Sig) == 0:
				return bad("unsigned seal")
			case !verifySig(pub, sealMessage(sf.Seal), sf.Sig):
				return bad("bad signature on the seal (the seal was altered)")
			case body.Key != wantKey:
				return bad("seal names key %q, not %q", body.Key, wantKey)
			}
		} else if len(sf.Sig) == 0 {
			signedAll = false
		}
		switch {
		case body.Chunk > i:
			return bad("missing: found chunk %d's seal here (chunks were removed or reordered)", body.Chunk)
		case body.Chunk < i:
			return bad("out of order: found chunk %d's seal here", body.Chunk)
		case body.Grant != h.GrantID:
			return bad("belongs to grant %q, not %q", body.Grant, h.GrantID)
		case body.Prev != chain && i == 0:
			rep.Signed = false
			return rep, &VerifyError{Chunk: -1, Reason: "altered: chunk 0's seal does not commit to this header"}
		case body.Prev != chain:
			return bad("chain broken: the seal does not follow the previous one (a chunk was removed, replaced or reordered)")
		}
		sum := sha256.Sum256(data)
		if body.Size != len(data) || body.SHA256 != hex.EncodeToString(sum[:]) {
			return bad("content hash mismatch: the chunk data was altered")
		}
		if body.Raw < 0 || body.Raw > MaxChunkRaw {
			return bad("seal claims %d raw bytes", body.Raw)
		}
		raw, err = dec.DecodeAll(data, raw[:0])
		if err != nil {
			return bad("decompress: %v", err)
		}
		if len(raw) != body.Raw {
			return bad("raw size %d, seal says %d", len(raw), body.Raw)
		}
		// Events, strictly, against the seal.
		lines := bytes.Split(raw, []byte("\n"))
		if len(lines) == 0 || len(lines[len(lines)-1]) != 0 {
			return bad("chunk does not end with a newline")
		}
		lines = lines[:len(lines)-1]
		if len(lines) != body.Events || body.Events == 0 {
			return bad("%d events, seal says %d", len(lines), body.Events)
		}
		evs := make([]Event, 0, len(lines))
		for j, line := range lines {
			var ev Event
			if err := decodeStrict(line, &ev); err != nil {
				return bad("event %d: %v", j, err)
			}
			if !ev.Type.Valid() {
				return bad("event %d: unknown event type %q", j, ev.Type)
			}
			switch {
			case i == 0 && j == 0 && ev.Type != Started:
				return bad("the recording does not begin with a started event")
			case ev.Type == Started && (i != 0 || j != 0):
				return bad("event %d: a second started event", j)
			case ev.Type == Ended && !(body.Final && j == len(lines)-1):
				return bad("event %d: ended before the end", j)
			case sawTruncated && ev.Type != Ended:
				return bad("event %d: recorded after the truncation marker", j)
			case ev.Type == Truncated && !body.Truncated:
				return bad("event %d: truncation marker in a chunk not sealed as truncated", j)
			}
			if ev.Type == Truncated {
				sawTruncated = true
			}
			evs = append(evs, ev)
		}
		if body.Final && evs[len(evs)-1].Type != Ended {
			return bad("final chunk does not end with the ended event")
		}
		if body.Truncated && !sawTruncated {
			return bad("sealed as truncated without a truncation marker")
		}
		if !evs[0].Time.Equal(body.First) || !evs[len(evs)-1].Time.Equal(body.Last) {
			return bad("event times differ from the seal's")
		}
		if opts.OnEvent != nil {
			for _, ev := range evs {
				if err := opts.OnEvent(ev); err != nil {
					return rep, err
				}
			}
		}
		chain = chainHash(sf.Seal)
		rep.Chunks++
		rep.Events += len(evs)
		rep.Last = body.Last
		rep.Truncated = rep.Truncated || body.Truncated
		if body.Final {
			if _, _, err := fr.next(); !errors.Is(err, errEOF) {
				i++
				return bad("data after the final seal")
			}
			rep.Complete, rep.Signed = true, signedAll
			return rep, nil
		}
	}
}

// decodeV1 reads a v1 JSON Lines recording.
func decodeV1(r io.Reader) (Header, []Event, error) {
	var h Header
	b, err := io.ReadAll(r)
	if err != nil {
		return h, nil, err
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return h, nil, errors.New("empty recording")
	}
	if err := decodeStrict(lines[0], &h); err != nil {
		return h, nil, fmt.Errorf("header: %w", err)
	}
	if h.Format != FormatV1 {
		return h, nil, fmt.Errorf("unsupported format %q", h.Format)
	}
	events := make([]Event, 0, len(lines)-1)
	for i, line := range lines[1:] {
		var ev Event
		if err := decodeStrict(line, &ev); err != nil {
			return h, events, fmt.Errorf("line %d: %w", i+2, err)
		}
		if !ev.Type.Valid() {
			return h, events, fmt.Errorf("line %d: unknown event type %q", i+2, ev.Type)
		}
		events = append(events, ev)
	}
	return h, events, nil
}

func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
