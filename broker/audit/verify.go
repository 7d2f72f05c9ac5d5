package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Verify reads a whole log and checks its chain. It returns the number of lines
// that verified; err is a *VerifyError naming the first bad line, or the read
// error. An empty log verifies with 0 lines.
func Verify(r io.Reader) (lines int, err error) {
	return walk(r, func(int, *Event) bool { return true })
}

// VerifyHead verifies the log like Verify and also checks it against a head
// recorded earlier with Log.Head: the event numbered seq must be in the log with
// exactly that hash. This detects what Verify alone cannot: the newest lines cut
// off, or the log rewritten with freshly computed hashes. The log may have grown
// past the head. A zero head (0, "") matches any valid log.
func VerifyHead(r io.Reader, seq int64, hash string) (lines int, err error) {
	if seq < 0 || (seq == 0) != (hash == "") {
		return 0, fmt.Errorf("audit: invalid head (seq %d, hash %q)", seq, hash)
	}
	found := seq == 0
	var headErr error
	lines, err = walk(r, func(line int, ev *Event) bool {
		if ev.Seq == seq {
			if ev.Hash != hash {
				headErr = &VerifyError{Line: line, Reason: fmt.Sprintf("seq %d has hash %s, the recorded head says %s (rewritten?)", seq, ev.Hash, hash)}
				return false
			}
			found = true
		}
		return true
	})
	if err != nil {
		return lines, err
	}
	if headErr != nil {
		return lines, headErr
	}
	if !found {
		return lines, &VerifyError{Line: lines + 1, Reason: fmt.Sprintf("log ends at seq %d but the recorded head is seq %d (truncated?)", lines, seq)}
	}
	return lines, nil
}

// Tail returns the events of one grant, oldest first, from a log it verifies
// while reading: a log that does not verify yields the *VerifyError and no
// events, since evidence from a broken chain cannot be trusted. An empty grantID
// returns every event.
func Tail(r io.Reader, grantID string) ([]Event, error) {
	var out []Event
	_, err := walk(r, func(_ int, ev *Event) bool {
		if grantID == "" || ev.GrantID == grantID {
			out = append(out, *ev)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// walk verifies r line by line, calling visit for every line that verified.
// visit returning false stops the walk; walk then returns the lines so far and
// the error visit stored in the caller.
func walk(r io.Reader, visit func(line int, ev *Event) bool) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var c chain
	for {
		raw, err := readLine(br)
		if err == io.EOF {
			return c.lines, nil
		}
		n := c.lines + 1
		if err != nil {
			var ve *VerifyError
			if errors.As(err, &ve) {
				ve.Line = n
				return c.lines, ve
			}
			return c.lines, fmt.Errorf("audit: read line %d: %w", n, err)
		}
		ev, verr := c.next(raw)
		if verr != nil {
			verr.Line = n
			return c.lines, verr
		}
		if !visit(n, ev) {
			return c.lines, nil
		}
	}
}

// readLine returns one line without its newline. It returns io.EOF at a clean
// end, and a *VerifyError (line unset) for a line that is too long or that the
// input ends in the middle of.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > MaxLineBytes+1 {
			return nil, &VerifyError{Reason: fmt.Sprintf("line longer than %d bytes", MaxLineBytes)}
		}
		switch {
		case err == nil:
			if line == nil {
				return frag[:len(frag)-1], nil
			}
			line = append(line, frag...)
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			line = append(line, frag...)
		case err == io.EOF:
			if len(line)+len(frag) == 0 {
				return nil, io.EOF
			}
			return nil, &VerifyError{Reason: "incomplete last line (no newline: torn write or truncation)"}
		default:
			return nil, err
		}
	}
}

// chain carries what the next line must link to.
type chain struct {
	lines int
	seq   int64
	hash  string
}

func (c *chain) next(raw []byte) (*Event, *VerifyError) {
	ev, verr := parseLine(raw)
	if verr != nil {
		return nil, verr
	}
	switch {
	case ev.Seq > c.seq+1:
		return nil, &VerifyError{Reason: fmt.Sprintf("seq %d follows %d (missing line)", ev.Seq, c.seq)}
	case ev.Seq != c.seq+1:
		return nil, &VerifyError{Reason: fmt.Sprintf("seq %d follows %d (duplicated or reordered line)", ev.Seq, c.seq)}
	case ev.Prev != c.hash:
		return nil, &VerifyError{Reason: "prev does not match the hash of the line before (reordered, removed or replaced line)"}
	}
	c.lines++
	c.seq, c.hash = ev.Seq, ev.Hash
	return ev, nil
}

// parseLine checks one line on its own: valid, canonical JSON of a known event
// type whose hash matches its content.
func parseLine(raw []byte) (*Event, *VerifyError) {
	if len(raw) == 0 {
		return nil, &VerifyError{Reason: "empty line"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	ev := new(Event)
	if err := dec.Decode(ev); err != nil {
		return nil, &VerifyError{Reason: fmt.Sprintf("not a valid event: %v", err)}
	}
	if dec.More() {
		return nil, &VerifyError{Reason: "trailing data after the event"}
	}
	claimed := ev.Hash
	canon, err := seal(ev)
	if err != nil {
		return nil, &VerifyError{Reason: fmt.Sprintf("cannot re-encode event: %v", err)}
	}
	if claimed != ev.Hash {
		return nil, &VerifyError{Reason: "hash mismatch (edited?)"}
	}
	if !bytes.Equal(canon, raw) {
		return nil, &VerifyError{Reason: "not in canonical form (edited?)"}
	}
	if !ev.Type.Valid() {
		return nil, &VerifyError{Reason: fmt.Sprintf("unknown event type %q", ev.Type)}
	}
	return ev, nil
}
