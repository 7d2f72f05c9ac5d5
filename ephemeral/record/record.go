// Package record writes the session recording of one grant: the last step inside the
// ephemeral proxy before upload (engine → guard → mask → record → upload).
//
// Recording v1 is JSON Lines in a local directory, one file per grant,
// <dir>/<grant id>.jsonl, mode 0600. The first line is the Header; every following
// line is one Event. Open writes the header and a "started" event and fsyncs the file
// before it returns, so nothing the proxy relays can run unrecorded; Close writes
// "ended", flushes and fsyncs.
//
// A Recorder is safe for concurrent use by the connections of one session. Writes are
// buffered; the first write error is sticky, so the engine can end the session (fail
// closed) as soon as the recording cannot be kept. Rows are recorded after masking: a
// recording never holds what the client was not allowed to see.
//
//	rec, err := record.Open(dir, record.Header{GrantID: g.ID, Identity: g.Identity, ...})
//	if err != nil { /* refuse the session */ }
//	defer rec.Close()
//	if err := rec.Write(record.Event{Type: record.Query, Conn: 1, Statement: sql}); err != nil { /* end session */ }
package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Format is the recording format written by this package, stamped into every header.
const Format = "jitgate-recording/v1"

// MaxRowsPerEvent is the number of rows a producer should put into one "rows" event
// (the engine caps each statement's recorded rows at this and records the total in
// RowCount). Write enforces it by truncating longer row lists.
const MaxRowsPerEvent = 1000

// flushEvery bounds how long buffered events may stay in memory (and how late a disk
// error is noticed) while a session is busy.
const flushEvery = time.Second

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("record: recorder closed")

// Header is the first line of a recording.
type Header struct {
	// Format is set by Open to the package's Format.
	Format   string `json:"format"`
	GrantID  string `json:"grant_id"`
	Identity string `json:"identity"`
	Target   string `json:"target"`
	Rule     string `json:"rule"`
	LeaseID  string `json:"lease_id,omitempty"`
	// Version is the version of the jitgate build that wrote the recording.
	Version string    `json:"version,omitempty"`
	Mode    string    `json:"mode"`
	Started time.Time `json:"started"`
}

// EventType names what an Event records. It is a closed set.
type EventType string

const (
	Started EventType = "started"
	// Query is a simple-protocol Query message (the whole string, all statements).
	Query EventType = "query"
	// Parse is an extended-protocol Parse (Statement holds the SQL, Tag the statement name).
	Parse EventType = "parse"
	// Bind binds a portal (Tag) to a statement; Statement holds the statement's SQL.
	Bind EventType = "bind"
	// Execute runs a portal; Statement holds the SQL of the portal's statement.
	Execute EventType = "execute"
	// Verdict is the guard's decision on the preceding statement.
	Verdict EventType = "verdict"
	// Rows carries the column names and (masked) rows of one result, capped.
	Rows EventType = "rows"
	// Result is a command tag (CommandComplete).
	Result EventType = "result"
	// Error is an error sent to the client (masked), or a protocol error.
	Error EventType = "error"
	// Notice is a NoticeResponse or NotificationResponse (masked).
	Notice EventType = "notice"
	Ended  EventType = "ended"
)

var eventTypes = map[EventType]bool{Started: true, Query: true, Parse: true, Bind: true, Execute: true,
	Verdict: true, Rows: true, Result: true, Error: true, Notice: true, Ended: true}

// Valid reports whether t is one of the known event types.
func (t EventType) Valid() bool { return eventTypes[t] }

func (t EventType) String() string { return string(t) }

// Event is one line of a recording after the header.
type Event struct {
	Time time.Time `json:"time"`
	Type EventType `json:"type"`
	// Conn numbers the client connections of a session, from 1; 0 is the session itself.
	Conn      int    `json:"conn,omitempty"`
	Statement string `json:"statement,omitempty"`
	// Allowed is set on Verdict events.
	Allowed *bool    `json:"allowed,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Columns []string `json:"columns,omitempty"`
	// Rows are masked values; nil is SQL NULL. At most MaxRowsPerEvent are kept.
	Rows [][]*string `json:"rows,omitempty"`
	// RowCount is the number of rows the result really had (may exceed len(Rows)).
	RowCount int64  `json:"row_count,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Recorder appends events to one recording file.
type Recorder struct {
	path string
	now  func() time.Time

	mu        sync.Mutex
	f         *os.File
	w         *bufio.Writer
	enc       *json.Encoder
	err       error // first write error, sticky
	closed    bool
	lastFlush time.Time
}

// Open creates <dir>/<h.GrantID>.jsonl (it must not exist), writes the header and a
// "started" event, and fsyncs before returning. A zero h.Started is set to now.
func Open(dir string, h Header) (*Recorder, error) {
	if dir == "" {
		return nil, fmt.Errorf("record: open: no directory")
	}
	if h.GrantID == "" || strings.ContainsAny(h.GrantID, `/\`) || h.GrantID == "." || h.GrantID == ".." ||
		strings.ContainsRune(h.GrantID, 0) {
		return nil, fmt.Errorf("record: open: unusable grant id %q", h.GrantID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record: open: %w", err)
	}
	path := filepath.Join(dir, h.GrantID+".jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("record: open: %w", err)
	}
	r := &Recorder{path: path, now: time.Now, f: f}
	r.w = bufio.NewWriterSize(f, 64<<10)
	r.enc = json.NewEncoder(r.w)
	r.enc.SetEscapeHTML(false)
	h.Format = Format
	if h.Started.IsZero() {
		h.Started = r.now()
	}
	h.Started = h.Started.UTC()
	if err := r.enc.Encode(h); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("record: open: write header: %w", err)
	}
	if err := r.enc.Encode(Event{Time: h.Started, Type: Started}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("record: open: write started: %w", err)
	}
	if err := r.w.Flush(); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("record: open: sync: %w", err)
	}
	r.lastFlush = r.now()
	return r, nil
}

// Path is the recording file.
func (r *Recorder) Path() string { return r.path }

// Write appends ev. A zero ev.Time is set to now. Rows beyond MaxRowsPerEvent are
// dropped (RowCount keeps the real count). After the first error every Write returns
// that error.
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
	if err := r.enc.Encode(ev); err != nil {
		r.err = fmt.Errorf("record: write: %w", err)
		return r.err
	}
	if now.Sub(r.lastFlush) >= flushEvery {
		return r.flushLocked(now)
	}
	return nil
}

func (r *Recorder) flushLocked(now time.Time) error {
	if err := r.w.Flush(); err != nil {
		r.err = fmt.Errorf("record: flush: %w", err)
		return r.err
	}
	r.lastFlush = now
	return nil
}

// Flush writes buffered events to the file (without fsync).
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return ErrClosed
	}
	return r.flushLocked(r.now())
}

// Err returns the sticky write error, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close writes the "ended" event, flushes, fsyncs and closes the file. It returns
// the first error the recorder met, so a caller can tell a complete recording from
// a broken one. Close is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	if r.err == nil {
		if err := r.enc.Encode(Event{Time: r.now().UTC(), Type: Ended}); err != nil {
			r.err = fmt.Errorf("record: close: %w", err)
		}
	}
	if r.err == nil {
		if err := r.w.Flush(); err != nil {
			r.err = fmt.Errorf("record: close: flush: %w", err)
		}
	}
	if r.err == nil {
		if err := r.f.Sync(); err != nil {
			r.err = fmt.Errorf("record: close: sync: %w", err)
		}
	}
	if err := r.f.Close(); err != nil && r.err == nil {
		r.err = fmt.Errorf("record: close: %w", err)
	}
	return r.err
}

// ReadFile reads a whole recording. Unknown fields and unknown event types are
// errors: a recording is evidence and is read strictly.
func ReadFile(path string) (Header, []Event, error) {
	var h Header
	b, err := os.ReadFile(path)
	if err != nil {
		return h, nil, fmt.Errorf("record: read: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return h, nil, fmt.Errorf("record: read %s: empty recording", path)
	}
	if err := decodeStrict(lines[0], &h); err != nil {
		return h, nil, fmt.Errorf("record: read %s: header: %w", path, err)
	}
	if h.Format != Format {
		return h, nil, fmt.Errorf("record: read %s: unsupported format %q", path, h.Format)
	}
	events := make([]Event, 0, len(lines)-1)
	for i, line := range lines[1:] {
		var ev Event
		if err := decodeStrict(line, &ev); err != nil {
			return h, events, fmt.Errorf("record: read %s: line %d: %w", path, i+2, err)
		}
		if !ev.Type.Valid() {
			return h, events, fmt.Errorf("record: read %s: line %d: unknown event type %q", path, i+2, ev.Type)
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
		return fmt.Errorf("trailing data")
	}
	return nil
}
