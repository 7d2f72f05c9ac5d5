// Package asciicast writes and reads terminal recordings in the asciicast v2
// format (https://docs.asciinema.org/manual/asciicast/v2/), so any asciinema
// player can replay an interactive SSH or kubectl exec session. It is the
// recorder of terminal sessions inside the ephemeral proxy
// (engine → guard → mask → RECORD → upload); SQL and HTTP use JSON Lines
// (package record).
//
// A file is one header line, {"version":2,"width":W,"height":H,"timestamp":T,...},
// then one event per line: [seconds since start, code, data], where code is
// "o" (output to the terminal), "i" (input typed by the user), "r" (resize,
// data "WxH") or "m" (marker). Output is stored as sent (after masking): escape
// sequences such as OSC 52 clipboard writes are kept raw and must be sanitized
// by whatever plays the recording back. Input is the keystrokes as typed,
// passwords included: an interactive shell is recorded, not filtered.
//
//	w, err := asciicast.Create(path, asciicast.Header{Width: 80, Height: 24}, time.Now)
//	w.Output(b); w.Input(keys); w.Resize(120, 40)
//	err = w.Close() // the first write error, if any
//
// A Writer is safe for concurrent use. Data is split only at UTF-8 boundaries:
// a multi-byte character cut across two writes is carried to the next event;
// bytes that are not UTF-8 become U+FFFD.
package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Header is the first line of a recording.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Duration  float64           `json:"duration,omitempty"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Event codes.
const (
	Output = "o"
	Input  = "i"
	Resize = "r"
	Marker = "m"
)

// Event is one recorded event.
type Event struct {
	// Time is seconds since the start of the recording.
	Time float64
	Code string
	Data string
}

// MarshalJSON writes [time, code, data].
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{json.Number(strconv.FormatFloat(e.Time, 'f', 6, 64)), e.Code, e.Data})
}

// UnmarshalJSON reads [time, code, data] strictly.
func (e *Event) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 3 {
		return fmt.Errorf("event has %d elements, want 3", len(raw))
	}
	if err := json.Unmarshal(raw[0], &e.Time); err != nil {
		return fmt.Errorf("event time: %w", err)
	}
	if err := json.Unmarshal(raw[1], &e.Code); err != nil {
		return fmt.Errorf("event code: %w", err)
	}
	if err := json.Unmarshal(raw[2], &e.Data); err != nil {
		return fmt.Errorf("event data: %w", err)
	}
	return nil
}

// Writer appends events to a recording.
type Writer struct {
	mu     sync.Mutex
	w      *bufio.Writer
	c      io.Closer
	start  time.Time
	now    func() time.Time
	carry  map[string][]byte // incomplete UTF-8 tail per code
	err    error
	closed bool
	last   float64
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("asciicast: writer closed")

// NewWriter writes h (Version forced to 2, Timestamp set to now when zero) to
// w and returns a Writer. If w is an io.Closer, Close closes it.
func NewWriter(w io.Writer, h Header, now func() time.Time) (*Writer, error) {
	if now == nil {
		now = time.Now
	}
	if h.Width <= 0 || h.Height <= 0 {
		h.Width, h.Height = 80, 24
	}
	h.Version = 2
	start := now()
	if h.Timestamp == 0 {
		h.Timestamp = start.Unix()
	}
	aw := &Writer{w: bufio.NewWriterSize(w, 32<<10), start: start, now: now, carry: map[string][]byte{}}
	if c, ok := w.(io.Closer); ok {
		aw.c = c
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("asciicast: header: %w", err)
	}
	if _, err := aw.w.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("asciicast: header: %w", err)
	}
	if err := aw.w.Flush(); err != nil {
		return nil, fmt.Errorf("asciicast: header: %w", err)
	}
	return aw, nil
}

// Create creates path (it must not exist; mode 0600) and writes the header.
func Create(path string, h Header, now func() time.Time) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("asciicast: create: %w", err)
	}
	w, err := NewWriter(f, h, now)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// Output records data written to the terminal.
func (w *Writer) Output(data []byte) error { return w.event(Output, data) }

// Input records data typed by the user.
func (w *Writer) Input(data []byte) error { return w.event(Input, data) }

// Resize records a terminal size change.
func (w *Writer) Resize(width, height int) error {
	return w.event(Resize, []byte(strconv.Itoa(width)+"x"+strconv.Itoa(height)))
}

// Mark records a marker (a label shown by players), e.g. "exit 0".
func (w *Writer) Mark(label string) error { return w.event(Marker, []byte(label)) }

func (w *Writer) event(code string, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	if c := w.carry[code]; len(c) > 0 {
		data = append(append([]byte(nil), c...), data...)
		w.carry[code] = nil
	}
	if code == Output || code == Input {
		if n := incompleteTail(data); n > 0 {
			w.carry[code] = append([]byte(nil), data[len(data)-n:]...)
			data = data[:len(data)-n]
		}
	}
	if len(data) == 0 {
		return nil
	}
	return w.writeLocked(code, data)
}

func (w *Writer) writeLocked(code string, data []byte) error {
	t := w.now().Sub(w.start).Seconds()
	if t < w.last { // keep times monotonic whatever the clock does
		t = w.last
	}
	w.last = t
	b, err := json.Marshal(Event{Time: t, Code: code, Data: string(bytes.ToValidUTF8(data, []byte("\uFFFD")))})
	if err == nil {
		_, err = w.w.Write(append(b, '\n'))
	}
	if err == nil && w.w.Buffered() > 16<<10 {
		err = w.w.Flush()
	}
	if err != nil {
		w.err = fmt.Errorf("asciicast: write: %w", err)
	}
	return w.err
}

// incompleteTail returns how many bytes at the end of b start a UTF-8
// sequence that is not complete yet.
func incompleteTail(b []byte) int {
	for n := 1; n <= 3 && n <= len(b); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // a start byte
			need := 2
			switch {
			case c >= 0xF0:
				need = 4
			case c >= 0xE0:
				need = 3
			}
			if need > n && utf8.RuneStart(c) {
				return n
			}
			return 0
		}
	}
	return 0
}

// Flush writes buffered events to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		w.err = fmt.Errorf("asciicast: flush: %w", err)
	}
	return w.err
}

// Err returns the first write error.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close writes carried bytes, flushes, syncs a file and closes it. It returns
// the first error the writer met. Close is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	w.closed = true
	for _, code := range []string{Output, Input} {
		if c := w.carry[code]; len(c) > 0 && w.err == nil {
			w.writeLocked(code, c)
		}
	}
	if w.err == nil {
		if err := w.w.Flush(); err != nil {
			w.err = fmt.Errorf("asciicast: close: %w", err)
		}
	}
	if f, ok := w.c.(*os.File); ok && w.err == nil {
		if err := f.Sync(); err != nil {
			w.err = fmt.Errorf("asciicast: close: sync: %w", err)
		}
	}
	if w.c != nil {
		if err := w.c.Close(); err != nil && w.err == nil {
			w.err = fmt.Errorf("asciicast: close: %w", err)
		}
	}
	return w.err
}

// MaxLine bounds one line when reading.
const MaxLine = 16 << 20

// Read parses a whole recording strictly: a version 2 header with a size,
// then events with known codes and non-decreasing times.
func Read(r io.Reader) (Header, []Event, error) {
	var h Header
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return h, nil, fmt.Errorf("asciicast: read: %w", err)
		}
		return h, nil, errors.New("asciicast: read: empty recording")
	}
	dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, nil, fmt.Errorf("asciicast: read: header: %w", err)
	}
	if h.Version != 2 || h.Width <= 0 || h.Height <= 0 {
		return h, nil, fmt.Errorf("asciicast: read: header: version %d, size %dx%d", h.Version, h.Width, h.Height)
	}
	var events []Event
	last := 0.0
	for line := 2; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return h, events, fmt.Errorf("asciicast: read: line %d: %w", line, err)
		}
		if !strings.Contains("oirm", e.Code) || len(e.Code) != 1 {
			return h, events, fmt.Errorf("asciicast: read: line %d: unknown event code %q", line, e.Code)
		}
		if e.Time < last || e.Time != e.Time {
			return h, events, fmt.Errorf("asciicast: read: line %d: time %v goes backwards", line, e.Time)
		}
		last = e.Time
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		return h, events, fmt.Errorf("asciicast: read: %w", err)
	}
	return h, events, nil
}
