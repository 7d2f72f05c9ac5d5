package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// SyncMode says how Append makes an event durable. In every mode Append returns
// only after an fsync that covers its event.
type SyncMode int

const (
	// SyncEach fsyncs once per event, under the log's lock. The default.
	SyncEach SyncMode = iota
	// SyncGroup lets concurrent appends share one fsync (group commit): an
	// appender waits for the next fsync that covers its line. Same durability,
	// higher throughput when many grants are decided at once.
	SyncGroup
)

func (m SyncMode) String() string {
	switch m {
	case SyncEach:
		return "each"
	case SyncGroup:
		return "group"
	}
	return fmt.Sprintf("syncmode(%d)", int(m))
}

// Options configures Open.
type Options struct {
	// Now is the clock for Event.Time. Nil means time.Now.
	Now func() time.Time
	// Sync chooses how appends are made durable; the zero value is SyncEach.
	Sync SyncMode
}

func (o *Options) validate() error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sync != SyncEach && o.Sync != SyncGroup {
		return fmt.Errorf("unknown sync mode %s", o.Sync)
	}
	return nil
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log is closed")

// Log appends hash-chained events to one file. It is safe for concurrent use.
// The file is locked against other processes for as long as the Log is open, so
// two brokers cannot fork one chain.
//
// A failed write or fsync leaves the file in an unknown state: the Log then
// refuses every later Append with the first error (fail closed) until it is
// reopened, and Open verifies the last line.
type Log struct {
	path string
	now  func() time.Time
	mode SyncMode

	syncMu sync.Mutex // serializes fsyncs (SyncGroup) and Close; taken before mu
	synced int64      // highest seq known durable

	mu     sync.Mutex
	f      *os.File
	seq    int64
	hash   string
	err    error // sticky write/fsync failure
	closed bool
}

// Open opens the log at path, creating it (mode 0600) if needed, and resumes the
// chain after its last line. The last line must verify on its own (canonical,
// hash matching its content); an incomplete last line (a write torn by a crash)
// is refused rather than repaired, since only an operator should decide what
// happens to evidence. Open does not re-verify the whole file: use Verify.
func Open(path string, opts Options) (*Log, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	seq, hash, err := readTail(f)
	if err != nil {
		_ = unlockFile(f)
		_ = f.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return &Log{path: path, now: opts.Now, mode: opts.Sync, f: f, seq: seq, hash: hash, synced: seq}, nil
}

// readTail returns the seq and hash of the last line of f, after checking it.
func readTail(f *os.File) (int64, string, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	size := fi.Size()
	if size == 0 {
		return 0, "", nil
	}
	n := min(size, MaxLineBytes+2)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return 0, "", fmt.Errorf("read tail: %w", err)
	}
	if buf[len(buf)-1] != '\n' {
		return 0, "", errors.New("last line is incomplete (no newline: a torn write?); verify the log and repair it by hand")
	}
	buf = buf[:len(buf)-1]
	start := bytes.LastIndexByte(buf, '\n') + 1
	if start == 0 && n < size {
		return 0, "", fmt.Errorf("last line is longer than %d bytes", MaxLineBytes)
	}
	ev, verr := parseLine(buf[start:])
	if verr != nil {
		return 0, "", fmt.Errorf("last line: %s", verr.Reason)
	}
	return ev.Seq, ev.Hash, nil
}

// Path is the file the log appends to.
func (l *Log) Path() string { return l.path }

// Head returns the seq and hash of the newest event (0, "" for an empty log).
// Store it where the log's writer cannot rewrite it and check it later with
// VerifyHead.
func (l *Log) Head() (seq int64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.hash
}

// Append writes ev as the next line and returns it as written, with Seq, Time
// (from Options.Now, in UTC), Prev and Hash set; whatever the caller put in those
// fields is replaced. It returns once the line is durable (see SyncMode). An
// error means the event must be treated as not logged.
func (l *Log) Append(ctx context.Context, ev Event) (Event, error) {
	if err := ctx.Err(); err != nil {
		return Event{}, fmt.Errorf("audit: append: %w", err)
	}
	if !ev.Type.Valid() {
		return Event{}, fmt.Errorf("audit: append: unknown event type %q", ev.Type)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return Event{}, ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return Event{}, err
	}
	ev.Seq = l.seq + 1
	ev.Time = l.now().UTC()
	ev.Prev = l.hash
	line, err := seal(&ev)
	if err != nil {
		l.mu.Unlock()
		return Event{}, fmt.Errorf("audit: append %s: encode: %w", ev.Type, err)
	}
	if len(line)+1 > MaxLineBytes {
		l.mu.Unlock()
		return Event{}, fmt.Errorf("audit: append %s: event is %d bytes, more than %d", ev.Type, len(line)+1, MaxLineBytes)
	}
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		l.err = fmt.Errorf("audit: write %s: %w (log refuses further appends)", l.path, err)
		err := l.err
		l.mu.Unlock()
		return Event{}, err
	}
	l.seq, l.hash = ev.Seq, ev.Hash
	if l.mode == SyncEach {
		err := l.f.Sync()
		if err != nil {
			l.err = fmt.Errorf("audit: fsync %s: %w (log refuses further appends)", l.path, err)
			err = l.err
		}
		l.mu.Unlock()
		if err != nil {
			return Event{}, err
		}
		return ev, nil
	}
	l.mu.Unlock()
	if err := l.waitSynced(ev.Seq); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// waitSynced returns once an fsync covering seq has completed. Whoever holds
// syncMu fsyncs everything written so far, so appenders queued behind it usually
// find their line already covered.
func (l *Log) waitSynced(seq int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= seq {
		return nil
	}
	l.mu.Lock()
	target, sticky, closed := l.seq, l.err, l.closed
	l.mu.Unlock()
	if sticky != nil {
		return sticky
	}
	if closed {
		return ErrClosed
	}
	if err := l.f.Sync(); err != nil {
		l.mu.Lock()
		if l.err == nil {
			l.err = fmt.Errorf("audit: fsync %s: %w (log refuses further appends)", l.path, err)
		}
		err = l.err
		l.mu.Unlock()
		return err
	}
	l.synced = target
	return nil
}

// Close fsyncs, unlocks and closes the file. Appends in flight complete first.
// It is safe to call more than once.
func (l *Log) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	if err := l.f.Sync(); err != nil {
		errs = append(errs, err)
	} else {
		l.synced = l.seq
	}
	if err := unlockFile(l.f); err != nil {
		errs = append(errs, err)
	}
	if err := l.f.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	return nil
}
