package http

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

// maxJSONDepth bounds nesting; deeper documents are refused.
const maxJSONDepth = 256

// jsonMasker rewrites a stream of JSON values (one document, or JSON Lines)
// token by token: values at a masked field path are redacted whole, every
// other string, number and member name goes through the detectors. It never
// holds more than one token plus a small output buffer, so bodies stream.
// Output is compact JSON (the upstream's whitespace is not kept), one line per
// top-level value.
type jsonMasker struct {
	m        *mask.Masker // nil: no detectors, no redaction style (marker only)
	patterns []jsonPattern
	dec      *jsontext.Decoder
	out      []byte
	flushAt  int
	write    func([]byte) error
	path     []pathElem
	frames   []frame
	unq      []byte
	redacted *atomic.Uint64 // counts values redacted by a field pattern; may be nil
}

type frame struct {
	obj        bool
	n          int  // members or elements written so far
	expectName bool // objects: the next token is a member name
}

// errJSON marks a body that is not the JSON it claims to be.
var errJSON = errors.New("response body is not valid JSON")

func newJSONMasker(m *mask.Masker, patterns []jsonPattern, write func([]byte) error) *jsonMasker {
	return &jsonMasker{m: m, patterns: patterns, write: write, flushAt: 32 << 10}
}

// Flush writes the buffered output.
func (j *jsonMasker) Flush() error {
	if len(j.out) == 0 {
		return nil
	}
	err := j.write(j.out)
	j.out = j.out[:0]
	return err
}

// flushingReader flushes the masker's output whenever the decoder needs more
// input, so a slow or streaming upstream is relayed as it arrives.
type flushingReader struct {
	r     io.Reader
	flush func() error
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}

// Run masks everything src holds.
func (j *jsonMasker) Run(src io.Reader) error {
	j.dec = jsontext.NewDecoder(&flushingReader{r: src, flush: j.Flush}, jsontext.AllowDuplicateNames(true))
	for {
		kind := j.dec.PeekKind()
		if kind == 0 {
			_, err := j.dec.ReadToken()
			if errors.Is(err, io.EOF) && len(j.frames) == 0 {
				return j.Flush()
			}
			return j.fail(err)
		}
		var top *frame
		if n := len(j.frames); n > 0 {
			top = &j.frames[n-1]
		}
		if kind == '}' || kind == ']' {
			if _, err := j.dec.ReadToken(); err != nil {
				return j.fail(err)
			}
			j.out = append(j.out, byte(kind))
			j.frames = j.frames[:len(j.frames)-1]
			j.path = j.path[:len(j.path)-1]
			j.valueDone()
			continue
		}
		if top != nil && top.obj && top.expectName {
			v, err := j.dec.ReadValue()
			if err != nil {
				return j.fail(err)
			}
			if top.n > 0 {
				j.out = append(j.out, ',')
			}
			name, err := jsontext.AppendUnquote(j.path[len(j.path)-1].key[:0], v)
			if err != nil {
				return j.fail(err)
			}
			j.path[len(j.path)-1].key = name
			if err := j.appendString(v, name); err != nil {
				return j.fail(err)
			}
			j.out = append(j.out, ':')
			top.expectName = false
			continue
		}
		if top != nil && !top.obj {
			if top.n > 0 {
				j.out = append(j.out, ',')
			}
			j.path[len(j.path)-1].idx = top.n
		}
		if j.masked() {
			if err := j.redact(kind); err != nil {
				return j.fail(err)
			}
			j.valueDone()
		} else if kind == '{' || kind == '[' {
			if len(j.frames) >= maxJSONDepth {
				return fmt.Errorf("%w: nested deeper than %d levels", errJSON, maxJSONDepth)
			}
			if _, err := j.dec.ReadToken(); err != nil {
				return j.fail(err)
			}
			j.out = append(j.out, byte(kind))
			j.frames = append(j.frames, frame{obj: kind == '{', expectName: kind == '{'})
			j.path = append(j.path, pathElem{obj: kind == '{'})
		} else {
			v, err := j.dec.ReadValue()
			if err != nil {
				return j.fail(err)
			}
			if err := j.scalar(kind, v); err != nil {
				return j.fail(err)
			}
			j.valueDone()
		}
		if len(j.out) >= j.flushAt {
			if err := j.Flush(); err != nil {
				return err
			}
		}
	}
}

func (j *jsonMasker) fail(err error) error {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", errJSON, err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: truncated", errJSON)
	}
	return err
}

// valueDone moves the innermost container past one value.
func (j *jsonMasker) valueDone() {
	n := len(j.frames)
	if n == 0 {
		j.out = append(j.out, '\n') // top-level values, one per line
		return
	}
	top := &j.frames[n-1]
	top.n++
	if top.obj {
		top.expectName = true
	}
}

// masked reports whether the current position matches a field pattern.
func (j *jsonMasker) masked() bool {
	for i := range j.patterns {
		if j.patterns[i].match(j.path) {
			return true
		}
	}
	return false
}

// redact replaces the value at the current position: strings, numbers and
// booleans with the masker's redaction (a string), objects and arrays whole.
// null stays null: it reveals nothing.
func (j *jsonMasker) redact(kind jsontext.Kind) error {
	if kind == 'n' {
		v, err := j.dec.ReadValue()
		if err != nil {
			return err
		}
		j.out = append(j.out, v...)
		return nil
	}
	var raw []byte
	if kind == '{' || kind == '[' {
		if err := j.dec.SkipValue(); err != nil {
			return err
		}
	} else {
		v, err := j.dec.ReadValue()
		if err != nil {
			return err
		}
		raw = v
		if kind == '"' {
			u, err := jsontext.AppendUnquote(j.unq[:0], v)
			if err != nil {
				return err
			}
			j.unq, raw = u, u
		}
	}
	if j.redacted != nil {
		j.redacted.Add(1)
	}
	red := []byte(redactedMarker)
	if j.m != nil && raw != nil {
		red = j.m.Value(nil, 0, raw)
	}
	var err error
	j.out, err = jsontext.AppendQuote(j.out, red)
	return err
}

// redactedMarker is what a redacted object, array or (without a masker) value becomes.
const redactedMarker = "********"

// scalar writes a string, number or literal outside masked fields, through
// the detectors.
func (j *jsonMasker) scalar(kind jsontext.Kind, v jsontext.Value) error {
	switch kind {
	case '"':
		if j.m == nil {
			j.out = append(j.out, v...)
			return nil
		}
		u, err := jsontext.AppendUnquote(j.unq[:0], v)
		if err != nil {
			return err
		}
		j.unq = u
		return j.appendString(v, u)
	case '0':
		if j.m != nil {
			if t := j.m.Text(v); !sameSlice(t, v) {
				var err error
				j.out, err = jsontext.AppendQuote(j.out, t)
				return err
			}
		}
	}
	j.out = append(j.out, v...)
	return nil
}

// appendString writes a string whose raw form is raw and unquoted value u,
// masked by the detectors.
func (j *jsonMasker) appendString(raw jsontext.Value, u []byte) error {
	if j.m != nil {
		if t := j.m.Text(u); !sameSlice(t, u) {
			var err error
			j.out, err = jsontext.AppendQuote(j.out, t)
			return err
		}
	}
	j.out = append(j.out, raw...)
	return nil
}

// sameSlice reports whether a and b are the same bytes in memory: the masker
// returns its input itself when nothing matched.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
