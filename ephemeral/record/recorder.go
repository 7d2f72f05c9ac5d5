package record

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Defaults of Config.
const (
	DefaultChunkBytes       = 256 << 10
	DefaultFlushInterval    = time.Second
	DefaultMaxBytes         = 512 << 20
	DefaultMaxEventBytes    = 4 << 20
	DefaultMaxPendingChunks = 4
	DefaultSignTimeout      = 10 * time.Second
)

// Config configures a Recorder.
type Config struct {
	// Dir is the spool directory the recording file is created in. Required.
	Dir string
	// Header describes the recording; GrantID is required and names the file.
	Header Header
	// Signer signs every seal. Nil writes an unsigned recording, which Verify
	// refuses whenever it is given a public key: only tests should leave it nil.
	Signer Signer
	// ChunkBytes is the raw size at which a chunk is sealed (default 256 KiB).
	ChunkBytes int
	// FlushInterval is the longest an event waits in memory before its chunk is
	// sealed (default 1s): the most a killed proxy can lose. Negative seals by
	// size, Flush and Close only (tests).
	FlushInterval time.Duration
	// MaxBytes caps the raw event bytes of the recording (default 512 MiB).
	MaxBytes int64
	// MaxEventBytes caps one encoded event; longer ones are trimmed (default 4 MiB).
	MaxEventBytes int
	// MaxPendingChunks is how many sealed-but-unwritten chunks may wait before
	// Write blocks (default 4). Memory is about ChunkBytes × (MaxPendingChunks+2).
	MaxPendingChunks int
	// SignTimeout bounds one Sign call (default 10s).
	SignTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("record: open: no directory")
	}
	id := c.Header.GrantID
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." || strings.HasPrefix(id, ".") ||
		strings.ContainsRune(id, 0) || len(id) > 200 {
		return fmt.Errorf("record: open: unusable grant id %q", id)
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = DefaultChunkBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.MaxPendingChunks == 0 {
		c.MaxPendingChunks = DefaultMaxPendingChunks
	}
	if c.SignTimeout == 0 {
		c.SignTimeout = DefaultSignTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.ChunkBytes < 1<<10:
		return fmt.Errorf("record: open: ChunkBytes %d is below 1 KiB", c.ChunkBytes)
	case c.MaxEventBytes < 1<<10:
		return fmt.Errorf("record: open: MaxEventBytes %d is below 1 KiB", c.MaxEventBytes)
	case c.ChunkBytes+c.MaxEventBytes > MaxChunkRaw-4<<10:
		return fmt.Errorf("record: open: ChunkBytes+MaxEventBytes must stay below %d", MaxChunkRaw)
	case c.MaxBytes < 1<<10:
		return fmt.Errorf("record: open: MaxBytes %d is below 1 KiB", c.MaxBytes)
	case c.MaxPendingChunks < 0 || c.SignTimeout < 0:
		return errors.New("record: open: negative setting")
	}
	return nil
}

// Recorder appends events to one recording file.
type Recorder struct {
	cfg  Config
	path string
	f    *os.File
	now  func() time.Time

	mu        sync.Mutex
	cb        chunkBuf // the chunk being filled; the encoder writes into it
	enc       *json.Encoder
	nEvents   int
	first     time.Time // event times
	last      time.Time
	bufStart  time.Time // clock time the first buffered event arrived
	accepted  int64
	err       error // first error, sticky
	truncated bool  // the size cap was reached
	truncNext bool  // the chunk being filled holds the truncated event
	closed    bool
	closeErr  error

	work    chan *chunk
	free    chan *bytes.Buffer
	sealErr atomic.Pointer[error]
	stop    chan struct{}
	done    chan struct{} // sealer exited
	ticker  sync.WaitGroup

	// Owned by the sealer (and by Create before the sealer starts).
	zenc     *zstd.Encoder
	zbuf     []byte
	out      []byte
	next     int
	chain    string
	keyID    string
	lastSync time.Time
}

type chunkBuf struct{ b *bytes.Buffer }

func (c *chunkBuf) Write(p []byte) (int, error) { return c.b.Write(p) }

type chunk struct {
	data      *bytes.Buffer // nil: a barrier that only acknowledges
	events    int
	first     time.Time
	last      time.Time
	final     bool
	truncated bool
	ack       chan error
}

// Open creates <dir>/<h.GrantID>.jgr with default settings and no signer. It
// is Create for callers (tests, tools) that need no signature.
func Open(dir string, h Header) (*Recorder, error) {
	return Create(context.Background(), Config{Dir: dir, Header: h})
}

// Create creates <Dir>/<GrantID>.jgr (it must not exist), writes the header and
// a sealed, signed chunk holding the "started" event, and fsyncs before it
// returns. A zero Header.Started is set to now. The signer is checked by
// verifying its first signature.
func Create(ctx context.Context, cfg Config) (*Recorder, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("record: open: %w", err)
	}
	path := filepath.Join(cfg.Dir, cfg.Header.GrantID+Ext)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("record: open: %w", err)
	}
	r := &Recorder{cfg: cfg, path: path, f: f, now: cfg.Now,
		work: make(chan *chunk, cfg.MaxPendingChunks), free: make(chan *bytes.Buffer, cfg.MaxPendingChunks+2),
		stop: make(chan struct{}), done: make(chan struct{})}
	fail := func(err error) (*Recorder, error) {
		f.Close()
		os.Remove(path)
		if r.zenc != nil {
			r.zenc.Close()
		}
		return nil, err
	}
	if err := lockFile(f); err != nil {
		return fail(fmt.Errorf("record: open: lock: %w", err))
	}
	r.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return fail(fmt.Errorf("record: open: %w", err))
	}
	h := cfg.Header
	h.Format, h.Compression, h.MaxBytes = Format, "zstd", cfg.MaxBytes
	if cfg.Signer != nil {
		h.KeyID = KeyID(cfg.Signer.PublicKey())
		if h.KeyID == "" {
			return fail(errors.New("record: open: the signer's key is neither Ed25519 nor ECDSA P-256"))
		}
	}
	if h.Started.IsZero() {
		h.Started = r.now()
	}
	h.Started = h.Started.UTC()
	r.cfg.Header, r.keyID = h, h.KeyID
	hb, err := json.Marshal(h)
	if err != nil {
		return fail(fmt.Errorf("record: open: header: %w", err))
	}
	if len(hb) > maxHeaderFrame {
		return fail(errors.New("record: open: header too large"))
	}
	r.chain = headerHash(hb)
	if _, err := f.Write(appendFrame([]byte(magic), frameHeader, hb)); err != nil {
		return fail(fmt.Errorf("record: open: write header: %w", err))
	}

	r.cb.b = r.getBuf()
	r.enc = json.NewEncoder(&r.cb)
	r.enc.SetEscapeHTML(false)
	started := Event{Time: h.Started, Type: Started}
	if err := r.enc.Encode(started); err != nil {
		return fail(fmt.Errorf("record: open: write started: %w", err))
	}
	r.noteEvent(started.Time, r.now())
	first := r.takeChunk(nil, false)
	if err := r.seal(ctx, first); err != nil {
		return fail(fmt.Errorf("record: open: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("record: open: sync: %w", err))
	}
	syncDir(cfg.Dir)
	r.lastSync = r.now()
	r.putBuf(first.data)

	go r.sealer()
	if cfg.FlushInterval > 0 {
		r.ticker.Add(1)
		go r.tick()
	}
	return r, nil
}

// Path is the recording file.
func (r *Recorder) Path() string { return r.path }

// Header is the header as written (Format, KeyID and Started filled in).
func (r *Recorder) Header() Header { return r.cfg.Header }

// Write appends ev. A zero ev.Time is set to now. Rows beyond MaxRowsPerEvent are
// dropped (RowCount keeps the real count); an event over MaxEventBytes is
// trimmed. After the first error every Write returns that error; once the size
// cap is reached that error wraps ErrTruncated.
func (r *Recorder) Write(ev Event) error {
	if !ev.Type.Valid() {
		return fmt.Errorf("record: write: unknown event type %q", ev.Type)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return ErrClosed
	}
	if e := r.sealErr.Load(); e != nil {
		r.err = *e
		return r.err
	}
	return r.writeLocked(ev)
}

func (r *Recorder) writeLocked(ev Event) error {
	now := r.now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC()
	if int64(len(ev.Rows)) > ev.RowCount {
		ev.RowCount = int64(len(ev.Rows))
	}
	if len(ev.Rows) > MaxRowsPerEvent {
		ev.Rows = ev.Rows[:MaxRowsPerEvent]
	}
	mark := r.cb.b.Len()
	if err := r.encodeLocked(&ev); err != nil {
		r.err = fmt.Errorf("record: write: %w", err)
		return r.err
	}
	n := int64(r.cb.b.Len() - mark)
	if r.accepted+n > r.cfg.MaxBytes {
		r.cb.b.Truncate(mark)
		marker := Event{Time: ev.Time, Type: Truncated, Reason: fmt.Sprintf(
			"recording size cap of %d bytes reached: this %s event and everything after it were not recorded, and the session was ended", r.cfg.MaxBytes, ev.Type)}
		if err := r.enc.Encode(marker); err != nil {
			r.err = fmt.Errorf("record: write: %w", err)
			return r.err
		}
		r.noteEvent(marker.Time, now)
		r.truncated, r.truncNext = true, true
		r.err = fmt.Errorf("%w (%d bytes); the session is ended", ErrTruncated, r.cfg.MaxBytes)
		r.sendLocked(r.takeChunk(nil, false))
		return r.err
	}
	r.accepted += n
	r.noteEvent(ev.Time, now)
	if r.cb.b.Len() >= r.cfg.ChunkBytes || (r.cfg.FlushInterval > 0 && now.Sub(r.bufStart) >= r.cfg.FlushInterval) {
		r.sendLocked(r.takeChunk(nil, false))
	}
	return nil
}

// encodeLocked appends ev as one JSON line, trimming it to MaxEventBytes.
func (r *Recorder) encodeLocked(ev *Event) error {
	mark := r.cb.b.Len()
	for {
		if line, ok := appendEvent(r.cb.b.AvailableBuffer(), ev); ok {
			r.cb.b.Write(line) // eventjson.go: the encoder's bytes, without reflection
		} else if err := r.enc.Encode(ev); err != nil {
			r.cb.b.Truncate(mark)
			return err
		}
		if r.cb.b.Len()-mark <= r.cfg.MaxEventBytes {
			return nil
		}
		r.cb.b.Truncate(mark)
		if !trimEvent(ev, r.cfg.MaxEventBytes) {
			return fmt.Errorf("%s event cannot be trimmed to %d bytes", ev.Type, r.cfg.MaxEventBytes)
		}
	}
}

const trimMark = "…[trimmed by the recorder]"

// trimEvent makes ev smaller: half its rows, then long texts, then columns. It
// reports false when nothing is left to cut.
func trimEvent(ev *Event, max int) bool {
	ev.Trimmed = true
	if len(ev.Rows) > 0 {
		ev.Rows = ev.Rows[:len(ev.Rows)/2]
		return true
	}
	limit := max / 8
	cut := false
	for _, s := range []*string{&ev.Statement, &ev.Reason, &ev.Error, &ev.Tag} {
		if len(*s) > limit {
			*s = strings.ToValidUTF8((*s)[:limit], "") + trimMark
			cut = true
		}
	}
	if cut {
		return true
	}
	if len(ev.Columns) > 0 {
		ev.Columns = ev.Columns[:len(ev.Columns)/2]
		return true
	}
	return false
}

func (r *Recorder) noteEvent(t, now time.Time) {
	if r.nEvents == 0 {
		r.first, r.bufStart = t, now
	}
	r.last = t
	r.nEvents++
}

// takeChunk detaches the buffered events as a chunk (or a barrier when there
// are none and ack is set); nil when there is nothing to do.
func (r *Recorder) takeChunk(ack chan error, final bool) *chunk {
	if r.nEvents == 0 {
		if ack == nil {
			return nil
		}
		return &chunk{ack: ack}
	}
	c := &chunk{data: r.cb.b, events: r.nEvents, first: r.first, last: r.last, final: final, truncated: r.truncNext, ack: ack}
	r.cb.b = r.getBuf()
	r.nEvents, r.truncNext = 0, false
	return c
}

// sendLocked hands c to the sealer; it blocks while MaxPendingChunks wait
// (back-pressure bounds memory). The sealer never takes mu.
func (r *Recorder) sendLocked(c *chunk) {
	if c != nil {
		r.work <- c
	}
}

func (r *Recorder) getBuf() *bytes.Buffer {
	select {
	case b := <-r.free:
		return b
	default:
		b := new(bytes.Buffer)
		b.Grow(r.cfg.ChunkBytes + 4<<10)
		return b
	}
}

func (r *Recorder) putBuf(b *bytes.Buffer) {
	if b == nil || b.Cap() > 2*r.cfg.ChunkBytes+r.cfg.MaxEventBytes {
		return
	}
	b.Reset()
	select {
	case r.free <- b:
	default:
	}
}

// sealer compresses, hashes, signs and appends chunks in order.
func (r *Recorder) sealer() {
	defer close(r.done)
	ctx := context.Background()
	for c := range r.work {
		var err error
		if e := r.sealErr.Load(); e != nil {
			err = *e
		} else if c.data != nil {
			if err = r.seal(ctx, c); err != nil {
				r.sealErr.Store(&err)
			}
		}
		if c.ack != nil {
			c.ack <- err
		}
		r.putBuf(c.data)
	}
}

func (r *Recorder) tick() {
	defer r.ticker.Done()
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			if !r.closed && r.err == nil {
				r.sendLocked(r.takeChunk(nil, false))
			}
			r.mu.Unlock()
		}
	}
}

// seal writes one chunk frame and its seal frame.
func (r *Recorder) seal(ctx context.Context, c *chunk) error {
	r.zbuf = r.zenc.EncodeAll(c.data.Bytes(), r.zbuf[:0])
	sum := sha256.Sum256(r.zbuf)
	body := SealBody{Chunk: r.next, Grant: r.cfg.Header.GrantID, SHA256: hex.EncodeToString(sum[:]), Prev: r.chain,
		Size: len(r.zbuf), Raw: c.data.Len(), Events: c.events, First: c.first, Last: c.last,
		Final: c.final, Truncated: c.truncated, Key: r.keyID}
	bb, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("record: seal chunk %d: %w", r.next, err)
	}
	sf := sealFrame{Seal: bb}
	if s := r.cfg.Signer; s != nil {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.SignTimeout)
		msg := sealMessage(bb)
		sig, err := s.Sign(sctx, msg)
		cancel()
		if err != nil {
			return fmt.Errorf("record: sign chunk %d: %w", r.next, err)
		}
		if _, ed := s.PublicKey().(ed25519.PublicKey); ed && len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("record: sign chunk %d: signature of %d bytes", r.next, len(sig))
		}
		if r.next == 0 && !verifySig(s.PublicKey(), msg, sig) {
			return errors.New("record: sign chunk 0: the signer's signature does not verify under its public key")
		}
		sf.Sig = sig
	}
	sp, err := json.Marshal(sf)
	if err != nil {
		return fmt.Errorf("record: seal chunk %d: %w", r.next, err)
	}
	r.out = appendFrame(r.out[:0], frameChunk, r.zbuf)
	r.out = appendFrame(r.out, frameSeal, sp)
	if _, err := r.f.Write(r.out); err != nil {
		return fmt.Errorf("record: write chunk %d: %w", r.next, err)
	}
	if cap(r.out) > 2*r.cfg.ChunkBytes+r.cfg.MaxEventBytes {
		r.out = nil
	}
	r.chain = chainHash(bb)
	r.next++
	if now := r.now(); c.final || now.Sub(r.lastSync) >= time.Second {
		if err := r.f.Sync(); err != nil {
			return fmt.Errorf("record: sync chunk %d: %w", r.next-1, err)
		}
		r.lastSync = now
	}
	return nil
}

// Flush seals the buffered events and writes them to the file (fsync is left
// to the sealer's once-a-second rhythm and to Close), so ReadFile sees them.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	if r.err != nil {
		defer r.mu.Unlock()
		return r.err
	}
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	ack := make(chan error, 1)
	r.sendLocked(r.takeChunk(ack, false))
	r.mu.Unlock()
	if err := <-ack; err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err == nil {
			r.err = err
		}
		return r.err
	}
	return nil
}

// Err returns the sticky error, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		if e := r.sealErr.Load(); e != nil {
			r.err = *e
		}
	}
	return r.err
}

// Truncated reports whether the recording reached its size cap.
func (r *Recorder) Truncated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.truncated
}

// Close writes the "ended" event into the final chunk, seals it, fsyncs and
// closes the file. It returns the first error the recorder met, so a caller can
// tell a complete recording from a broken one; a recording that was only cut at
// its size cap is complete (it says so) and Close returns nil. Close is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		defer r.mu.Unlock()
		return r.closeErr
	}
	r.closed = true
	if e := r.sealErr.Load(); e != nil && r.err == nil {
		r.err = *e
	}
	var ack chan error
	if r.err == nil || (r.truncated && errors.Is(r.err, ErrTruncated)) {
		// The grant's companion files (terminal casts) are sealed by digest
		// into the final chunk, so the signature covers them too.
		evs := append(r.companionEvents(), Event{Time: r.now().UTC(), Type: Ended})
		var err error
		for _, ev := range evs {
			if err = r.enc.Encode(ev); err != nil {
				break
			}
			r.noteEvent(ev.Time, r.now())
		}
		if err != nil {
			r.err = fmt.Errorf("record: close: %w", err)
		} else {
			ack = make(chan error, 1)
			r.sendLocked(r.takeChunk(ack, true))
		}
	}
	close(r.work)
	close(r.stop)
	r.mu.Unlock()

	var err error
	if ack != nil {
		err = <-ack
	}
	<-r.done
	r.ticker.Wait()
	r.zenc.Close()

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		if r.err == nil || errors.Is(r.err, ErrTruncated) {
			r.err = fmt.Errorf("record: close: %w", err)
		}
	case r.err != nil && !errors.Is(r.err, ErrTruncated):
	default:
		if serr := r.f.Sync(); serr != nil {
			r.err = fmt.Errorf("record: close: sync: %w", serr)
		}
	}
	if cerr := r.f.Close(); cerr != nil && (r.err == nil || errors.Is(r.err, ErrTruncated)) {
		r.err = fmt.Errorf("record: close: %w", cerr)
	}
	if r.err != nil && !errors.Is(r.err, ErrTruncated) {
		r.closeErr = r.err
	}
	return r.closeErr
}

// syncDir makes a new directory entry durable; errors are ignored (not every
// file system can fsync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
