package record_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
)

func TestVerifyIntactRecording(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	path, b := writeRecording(t, t.TempDir(), "g-ok", s, 300)
	chunks := chunkFrames(t, b)
	if len(chunks) < 5 {
		t.Fatalf("only %d chunks; the test wants several", len(chunks))
	}
	rep, err := record.VerifyFile(path, record.VerifyOptions{PublicKey: s.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || !rep.Signed || rep.Truncated || rep.Chunks != len(chunks) || rep.Events != 302 ||
		rep.KeyID != record.KeyID(s.PublicKey()) || rep.Header.GrantID != "g-ok" || rep.Header.Format != record.Format {
		t.Fatalf("report %+v", rep)
	}
	h, evs, err := record.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.LeaseID != "lease-1" || h.Version != "v0.1.0" || h.Rule != "agents-read" || h.Identity == "" || h.Target != "shop" {
		t.Fatalf("header %+v", h)
	}
	if len(evs) != 302 || evs[0].Type != record.Started || evs[301].Type != record.Ended || evs[150].Statement == "" {
		t.Fatalf("%d events", len(evs))
	}
	for i := 1; i < 301; i++ {
		if !strings.HasPrefix(evs[i].Statement, "SELECT "+strconv.Itoa(i-1)+",") {
			t.Fatalf("event %d out of order: %q", i, evs[i].Statement)
		}
	}
}

// Every flipped byte of chunk k (its frame header, data, seal) makes Verify
// name chunk k; a flipped header byte names the header.
func TestFlippedByteNamesThatChunk(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	_, b := writeRecording(t, t.TempDir(), "g-flip", s, 120)
	chunks := chunkFrames(t, b)
	flip := func(off int) (record.Report, error) {
		c := bytes.Clone(b)
		c[off] ^= 0x20
		return record.Verify(bytes.NewReader(c), record.VerifyOptions{PublicKey: s.PublicKey()})
	}
	for k, cf := range chunks {
		offsets := []int{
			cf[0].start, cf[0].start + 2, cf[0].start + 4, // kind, length
			cf[0].start + 5, (cf[0].start + cf[0].end) / 2, cf[0].end - 1, // compressed data
			cf[1].start, cf[1].start + 3, cf[1].start + 5, (cf[1].start + cf[1].end) / 2, cf[1].end - 2, // seal
		}
		for _, off := range offsets {
			rep, err := flip(off)
			if err == nil {
				t.Fatalf("chunk %d: flipped byte at %d verified", k, off)
			}
			if ve := verifyErr(t, err); ve.Chunk != k {
				t.Fatalf("flip at %d (chunk %d): error names chunk %d: %v", off, k, ve.Chunk, err)
			}
			if rep.Chunks != k || rep.Complete {
				t.Fatalf("flip in chunk %d: report %+v", k, rep)
			}
		}
	}
	hdr := frames(t, b)[0]
	for _, off := range []int{0, 5, hdr.start, hdr.start + 7, hdr.end - 3} {
		_, err := flip(off)
		if ve := verifyErr(t, err); ve.Chunk != -1 {
			t.Fatalf("flip at %d in the header: names chunk %d: %v", off, ve.Chunk, err)
		}
	}
}

func TestRemovedReorderedAndTruncated(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	_, b := writeRecording(t, t.TempDir(), "g-cut", s, 120)
	chunks := chunkFrames(t, b)
	n := len(chunks)
	cut := func(from, to int) []byte { return append(bytes.Clone(b[:from]), b[to:]...) }
	type tc struct {
		name      string
		data      []byte
		chunk     int
		reason    string
		incomplte bool
	}
	var cases []tc
	for _, k := range []int{0, 1, n / 2, n - 2} {
		cases = append(cases,
			tc{"chunk removed", cut(chunks[k][0].start, chunks[k][1].end), k, "missing", false},
			tc{"chunk data removed", cut(chunks[k][0].start, chunks[k][0].end), k, "seal without its chunk", false},
			tc{"seal removed", cut(chunks[k][1].start, chunks[k][1].end), k, "where the chunk's seal belongs", false},
		)
	}
	// Swap chunks 2 and 3.
	sw := bytes.Clone(b[:chunks[2][0].start])
	sw = append(sw, b[chunks[3][0].start:chunks[3][1].end]...)
	sw = append(sw, b[chunks[2][0].start:chunks[2][1].end]...)
	sw = append(sw, b[chunks[3][1].end:]...)
	cases = append(cases, tc{"chunks reordered", sw, 2, "missing: found chunk 3", false})
	// Chunk 4 replaced by a copy of chunk 3.
	dup := bytes.Clone(b[:chunks[4][0].start])
	dup = append(dup, b[chunks[3][0].start:chunks[3][1].end]...)
	dup = append(dup, b[chunks[4][1].end:]...)
	cases = append(cases, tc{"chunk replayed", dup, 4, "out of order", false})
	// The tail: the final chunk gone, or the file cut anywhere inside it.
	cases = append(cases, tc{"final chunk removed", b[:chunks[n-1][0].start], n - 1, "without its final seal", true})
	for _, off := range []int{chunks[n-1][0].start + 3, chunks[n-1][0].end - 1, chunks[n-1][0].end, chunks[n-1][1].end - 1} {
		cases = append(cases, tc{"tail cut", b[:off], n - 1, "truncated", true})
	}
	cases = append(cases, tc{"data after the end", append(bytes.Clone(b), b[chunks[1][0].start:chunks[1][1].end]...), n, "after the final seal", false})
	for _, c := range cases {
		rep, err := record.Verify(bytes.NewReader(c.data), record.VerifyOptions{PublicKey: s.PublicKey()})
		if err == nil {
			t.Fatalf("%s: verified", c.name)
		}
		ve := verifyErr(t, err)
		if ve.Chunk != c.chunk || !strings.Contains(ve.Reason, c.reason) {
			t.Fatalf("%s: got chunk %d %q, want chunk %d containing %q", c.name, ve.Chunk, ve.Reason, c.chunk, c.reason)
		}
		if errors.Is(err, record.ErrIncomplete) != c.incomplte {
			t.Fatalf("%s: ErrIncomplete=%v", c.name, errors.Is(err, record.ErrIncomplete))
		}
		if rep.Complete || rep.Chunks > c.chunk {
			t.Fatalf("%s: report %+v", c.name, rep)
		}
	}
}

func TestVerifyKeys(t *testing.T) {
	t.Parallel()
	s, other := newSigner(t), newSigner(t)
	dir := t.TempDir()
	signed, _ := writeRecording(t, dir, "g-signed", s, 10)
	unsigned, _ := writeRecording(t, dir, "g-unsigned", nil, 10)
	cases := []struct {
		name   string
		path   string
		key    crypto.PublicKey
		ok     bool
		signed bool
		want   string
	}{
		{"right key", signed, s.PublicKey(), true, true, ""},
		{"wrong key", signed, other.PublicKey(), false, false, "not the expected"},
		{"no key: integrity only", signed, nil, true, false, ""},
		{"unsigned with a key", unsigned, s.PublicKey(), false, false, "unsigned"},
		{"unsigned without a key", unsigned, nil, true, false, ""},
	}
	for _, c := range cases {
		rep, err := record.VerifyFile(c.path, record.VerifyOptions{PublicKey: c.key})
		if (err == nil) != c.ok || rep.Signed != c.signed || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Fatalf("%s: %v, report %+v", c.name, err, rep)
		}
	}
	// Stripping the key id from the header to pass it off as unsigned breaks chunk 0's chain.
	b, _ := os.ReadFile(signed)
	stripped := bytes.Replace(b, []byte(`"key_id":"`+record.KeyID(s.PublicKey())+`",`), nil, 1)
	if len(stripped) == len(b) {
		t.Fatal("key id not found in the header")
	}
	_, err := record.Verify(bytes.NewReader(fixHeaderLen(t, stripped, len(b)-len(stripped))), record.VerifyOptions{})
	if ve := verifyErr(t, err); ve.Chunk != -1 {
		t.Fatalf("stripped key id: %v", err)
	}
}

// fixHeaderLen corrects the header frame's length after removing n bytes from it.
func fixHeaderLen(t *testing.T, b []byte, n int) []byte {
	off := len(record.Format) + 1
	l := int(b[off+1])<<24 | int(b[off+2])<<16 | int(b[off+3])<<8 | int(b[off+4])
	l -= n
	b[off+1], b[off+2], b[off+3], b[off+4] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
	return b
}

// A chunk from another recording signed by the same key does not fit.
func TestSplicedChunkFromAnotherRecording(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	dir := t.TempDir()
	_, a := writeRecording(t, dir, "g-a", s, 60)
	_, b := writeRecording(t, dir, "g-b", s, 60)
	ca, cb := chunkFrames(t, a), chunkFrames(t, b)
	sp := bytes.Clone(a[:ca[2][0].start])
	sp = append(sp, b[cb[2][0].start:cb[2][1].end]...)
	sp = append(sp, a[ca[2][1].end:]...)
	_, err := record.Verify(bytes.NewReader(sp), record.VerifyOptions{PublicKey: s.PublicKey()})
	if ve := verifyErr(t, err); ve.Chunk != 2 || !strings.Contains(ve.Reason, "grant") {
		t.Fatalf("spliced chunk: %v", err)
	}
}

func TestSizeCapTruncatesExplicitly(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	dir := t.TempDir()
	const capBytes = 64 << 10
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Header: header("g-flood"), Signer: s,
		MaxBytes: capBytes, ChunkBytes: 8 << 10, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("y", 1000)
	var werr error
	written := 0
	// A flood 100 times the cap: the recorder stops it.
	for i := 0; i < 6400 && werr == nil; i++ {
		werr = r.Write(record.Event{Type: record.Notice, Conn: 1, Error: big})
		if werr == nil {
			written++
		}
	}
	if !errors.Is(werr, record.ErrTruncated) {
		t.Fatalf("flood: %v after %d events, want ErrTruncated", werr, written)
	}
	if err := r.Write(record.Event{Type: record.Query, Statement: "SELECT 1"}); !errors.Is(err, record.ErrTruncated) {
		t.Fatalf("write after the cap: %v", err)
	}
	if !r.Truncated() {
		t.Fatal("Truncated() is false")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close of a truncated recording: %v", err)
	}
	st, _ := os.Stat(r.Path())
	if st.Size() > capBytes+8<<10 {
		t.Fatalf("file is %d bytes with a cap of %d", st.Size(), capBytes)
	}
	rep, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: s.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || !rep.Truncated || !rep.Signed || rep.Events != written+3 {
		t.Fatalf("report %+v, %d written", rep, written)
	}
	_, evs, _ := record.ReadFile(r.Path())
	if evs[len(evs)-2].Type != record.Truncated || !strings.Contains(evs[len(evs)-2].Reason, "size cap") || evs[len(evs)-1].Type != record.Ended {
		t.Fatalf("tail %+v", evs[len(evs)-2:])
	}
}

func TestOversizedEventIsTrimmed(t *testing.T) {
	t.Parallel()
	r, err := record.Create(context.Background(), record.Config{Dir: t.TempDir(), Header: header("g-trim"), MaxEventBytes: 16 << 10, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	v := strings.Repeat("v", 500)
	rows := make([][]*string, 400)
	for i := range rows {
		rows[i] = []*string{&v}
	}
	huge := strings.Repeat("s", 100<<10)
	if err := r.Write(record.Event{Type: record.Rows, Columns: []string{"c"}, Rows: rows}); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(record.Event{Type: record.Query, Statement: huge}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	rowsEv, q := evs[1], evs[2]
	if !rowsEv.Trimmed || rowsEv.RowCount != 400 || len(rowsEv.Rows) == 0 || len(rowsEv.Rows) >= 400 || *rowsEv.Rows[0][0] != v {
		t.Fatalf("rows event: trimmed=%v count=%d kept=%d", rowsEv.Trimmed, rowsEv.RowCount, len(rowsEv.Rows))
	}
	if !q.Trimmed || len(q.Statement) > 16<<10 || !strings.HasPrefix(q.Statement, "sss") || !strings.HasSuffix(q.Statement, "[trimmed by the recorder]") {
		t.Fatalf("query event: trimmed=%v len=%d", q.Trimmed, len(q.Statement))
	}
}

func TestTimeSealsChunksAndFlushMakesEventsReadable(t *testing.T) {
	t.Parallel()
	c := newClock()
	r, err := record.Create(context.Background(), record.Config{Dir: t.TempDir(), Header: header("g-time"), Now: c.Now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	count := func() int {
		_, evs, err := record.ReadFile(r.Path())
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	if err := r.Write(record.Event{Type: record.Query, Statement: "SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d events on disk before the interval, want 1 (started)", n)
	}
	c.Advance(time.Hour)
	if err := r.Write(record.Event{Type: record.Query, Statement: "SELECT 2"}); err != nil {
		t.Fatal(err)
	}
	// The chunk was handed to the sealer; Flush waits for it (and seals nothing new).
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d events after the interval passed, want 3", n)
	}
	if err := r.Flush(); err != nil { // nothing buffered: a barrier only
		t.Fatal(err)
	}
	if _, err := record.VerifyFile(r.Path(), record.VerifyOptions{}); !errors.Is(err, record.ErrIncomplete) {
		t.Fatalf("open recording: %v, want ErrIncomplete", err)
	}
}

func TestSignerFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	down := errors.New("kms unavailable")
	s := newSigner(t)
	s.fail = func() error { return down }
	if _, err := record.Create(context.Background(), record.Config{Dir: dir, Header: header("g-nosign"), Signer: s}); !errors.Is(err, down) {
		t.Fatalf("Create with a failing signer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "g-nosign"+record.Ext)); !os.IsNotExist(err) {
		t.Fatalf("a refused recording left a file: %v", err)
	}
	// A signer whose signatures do not match its public key is refused at once.
	liar := &mismatched{a: newSigner(t), b: newSigner(t)}
	if _, err := record.Create(context.Background(), record.Config{Dir: dir, Header: header("g-liar"), Signer: liar}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("Create with a mismatched signer: %v", err)
	}
	// A signer failing mid-session: the error surfaces and sticks.
	ok := newSigner(t)
	calls := 0
	ok.fail = func() error {
		calls++
		if calls > 1 {
			return down
		}
		return nil
	}
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Header: header("g-later"), Signer: ok, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Write(record.Event{Type: record.Query, Statement: "SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	ferr := r.Flush()
	if !errors.Is(ferr, down) {
		t.Fatalf("Flush: %v", ferr)
	}
	if err := r.Write(record.Event{Type: record.Query}); err == nil || err.Error() != ferr.Error() {
		t.Fatalf("Write after a sign failure: %v", err)
	}
	if err := r.Close(); !errors.Is(err, down) {
		t.Fatalf("Close: %v", err)
	}
}

type mismatched struct{ a, b *edSigner }

func (m *mismatched) Sign(ctx context.Context, msg []byte) ([]byte, error) { return m.a.Sign(ctx, msg) }
func (m *mismatched) PublicKey() crypto.PublicKey                          { return m.b.PublicKey() }

func TestV1StillReads(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "g.jsonl")
	body := `{"format":"jitgate-recording/v1","grant_id":"g","identity":"i","target":"t","rule":"r","mode":"exec","started":"2026-01-01T00:00:00Z"}
{"time":"2026-01-01T00:00:00Z","type":"started"}
{"time":"2026-01-01T00:00:01Z","type":"query","conn":1,"statement":"SELECT 1"}
{"time":"2026-01-01T00:00:02Z","type":"ended"}
`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	h, evs, err := record.ReadFile(p)
	if err != nil || h.Format != record.FormatV1 || len(evs) != 3 || evs[1].Statement != "SELECT 1" {
		t.Fatalf("v1: %v %+v %d", err, h, len(evs))
	}
	if _, err := record.VerifyFile(p, record.VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("Verify of v1: %v", err)
	}
}

// ReadFile reads a recording whose tail is torn (a live or killed proxy) up to
// its last whole chunk; Verify reports the tear.
func TestReadFileStopsAtATornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, b := writeRecording(t, dir, "g-torn", nil, 120)
	chunks := chunkFrames(t, b)
	last := chunks[len(chunks)-1]
	p := filepath.Join(dir, "torn"+record.Ext)
	if err := os.WriteFile(p, b[:last[0].start+7], 0o600); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(p)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Type == record.Ended {
		t.Fatalf("ReadFile of a torn tail: %v, %d events", err, len(evs))
	}
	if _, err := record.VerifyFile(p, record.VerifyOptions{}); !errors.Is(err, record.ErrIncomplete) {
		t.Fatalf("Verify of a torn tail: %v", err)
	}
}
