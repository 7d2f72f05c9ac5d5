package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// GrantStages is what the audit log says about one grant's timings.
type GrantStages struct {
	GrantID   string
	Statement string
	Mode      string
	// Stages maps stage name (policy, credential, launch, launch_and_run,
	// revoke) to milliseconds, merged from every event of the grant.
	Stages map[string]float64
	// First and Last are the times of the grant's first and last events: the
	// span the broker spent on it, from request to its last audit write.
	First, Last time.Time
}

// AuditStages reads an audit log (JSON Lines of audit.Event) and returns the
// stage timings of every grant, in order of first appearance. It does not check
// the hash chain (`jitgate audit verify` does); a line that is not an event is an
// error.
func AuditStages(r io.Reader) ([]GrantStages, error) {
	byID := map[string]int{}
	var out []GrantStages
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), audit.MaxLineBytes+1)
	line := 0
	for sc.Scan() {
		line++
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return out, fmt.Errorf("harness: audit line %d: %w", line, err)
		}
		if ev.GrantID == "" {
			continue
		}
		i, ok := byID[ev.GrantID]
		if !ok {
			i = len(out)
			byID[ev.GrantID] = i
			out = append(out, GrantStages{GrantID: ev.GrantID, Stages: map[string]float64{}})
		}
		g := &out[i]
		if g.First.IsZero() {
			g.First = ev.Time
		}
		g.Last = ev.Time
		if ev.Type == audit.GrantRequested {
			g.Statement = ev.Statement
			var mode string
			if _, err := fmt.Sscanf(ev.Detail, "mode=%s", &mode); err == nil {
				g.Mode = mode
			}
		}
		for k, v := range ev.StageMillis {
			g.Stages[k] += v
		}
	}
	return out, sc.Err()
}

// RecordingSize is the size of one session recording and what it holds.
type RecordingSize struct {
	// Bytes is the file as stored (v2: zstd-compressed chunks, seals, header).
	Bytes int64
	// RawBytes is the events as JSON Lines, uncompressed (re-encoded here; the
	// recorder's own encoding is the same encoding/json output).
	RawBytes int64
	// Statements counts query, parse and execute events: what a client asked
	// the server to run.
	Statements int64
	Events     int64
	// Complete says the recording has its final seal.
	Complete bool
}

// MeasureRecording reads a recording file with record.VerifyFile (hashes and
// chain checked, signatures not: no key is given) and counts what it holds.
func MeasureRecording(path string) (RecordingSize, error) {
	var s RecordingSize
	st, err := os.Stat(path)
	if err != nil {
		return s, fmt.Errorf("harness: recording: %w", err)
	}
	s.Bytes = st.Size()
	rep, err := record.VerifyFile(path, record.VerifyOptions{OnEvent: func(ev record.Event) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		s.RawBytes += int64(len(b)) + 1
		s.Events++
		switch ev.Type {
		case record.Query, record.Parse, record.Execute:
			s.Statements++
		}
		return nil
	}})
	s.Complete = rep.Complete
	if err != nil {
		return s, fmt.Errorf("harness: recording %s: %w", path, err)
	}
	return s, nil
}

// TailEvents returns the audit events whose lines lie wholly within the last n
// bytes of the log at path, oldest first. It lets a caller poll a log of
// hundreds of megabytes for a grant's last event without reading it all.
func TailEvents(path string, n int64) ([]audit.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("harness: audit tail: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("harness: audit tail: %w", err)
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, fmt.Errorf("harness: audit tail: %w", err)
	}
	if off > 0 {
		// Drop the partial first line (if off fell exactly on a line start, the
		// whole first line goes: harmless for a poller).
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return nil, nil
		}
		buf = buf[i+1:]
	}
	// A line still being written has no newline yet: leave it for the next poll.
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	} else {
		return nil, nil
	}
	var out []audit.Event
	for _, line := range bytes.Split(buf, []byte("\n")) {
		var ev audit.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return out, fmt.Errorf("harness: audit tail: %w", err)
		}
		out = append(out, ev)
	}
	return out, nil
}
