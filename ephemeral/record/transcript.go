package record

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// WriteTranscript prints a readable transcript of a SQL recording: each
// statement, the guard's verdict when it blocked, the masked result as a table,
// command tags, errors, notices and the truncation marker. Times are shown in
// loc (nil: UTC). Control characters in recorded text (terminal escape
// sequences planted in data) are shown escaped, never sent to the terminal.
func WriteTranscript(w io.Writer, h Header, evs []Event, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "recording of grant %s · %s on %s · rule %s · %s mode · started %s",
		Clean(h.GrantID), Clean(h.Identity), Clean(h.Target), Clean(h.Rule), Clean(h.Mode), h.Started.In(loc).Format("2006-01-02 15:04:05 MST"))
	if h.Version != "" {
		fmt.Fprintf(bw, " · jitgate %s", Clean(h.Version))
	}
	if h.LeaseID != "" {
		fmt.Fprintf(bw, " · lease %s", Clean(h.LeaseID))
	}
	bw.WriteString("\n")
	for _, ev := range evs {
		ts := ev.Time.In(loc).Format("15:04:05.000")
		switch ev.Type {
		case Query:
			fmt.Fprintf(bw, "%s [conn %d] > %s\n", ts, ev.Conn, Clean(ev.Statement))
		case Parse:
			fmt.Fprintf(bw, "%s [conn %d] > %s\n", ts, ev.Conn, Clean(ev.Statement))
		case Execute:
			fmt.Fprintf(bw, "%s [conn %d]   (execute)\n", ts, ev.Conn)
		case Verdict:
			if ev.Allowed != nil && !*ev.Allowed {
				fmt.Fprintf(bw, "%s [conn %d]   BLOCKED: %s\n", ts, ev.Conn, Clean(ev.Reason))
			}
		case Rows:
			writeTable(bw, ev.Columns, ev.Rows)
			if int(ev.RowCount) > len(ev.Rows) {
				fmt.Fprintf(bw, "(%d rows in all; %d recorded)\n", ev.RowCount, len(ev.Rows))
			}
			if ev.Trimmed {
				bw.WriteString("(rows trimmed by the recorder's event size limit)\n")
			}
		case Result:
			fmt.Fprintf(bw, "%s [conn %d]   %s\n", ts, ev.Conn, Clean(ev.Tag))
		case Error:
			fmt.Fprintf(bw, "%s [conn %d]   ERROR: %s\n", ts, ev.Conn, Clean(ev.Error))
		case Notice:
			fmt.Fprintf(bw, "%s [conn %d]   NOTICE: %s\n", ts, ev.Conn, Clean(firstNonEmpty(ev.Error, ev.Reason, ev.Statement)))
		case Truncated:
			fmt.Fprintf(bw, "%s *** TRUNCATED: %s\n", ts, Clean(ev.Reason))
		case Ended:
			fmt.Fprintf(bw, "%s session ended\n", ts)
		}
	}
	return bw.Flush()
}

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}

// Clean makes recorded text safe to print on a terminal: control characters
// (ESC, CR, BEL, C1 controls ...), invalid UTF-8 and bidi overrides become
// visible escapes; newlines and tabs become spaces.
func Clean(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || isBidi(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteByte(' ')
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
			} else {
				b.WriteRune(r)
			}
		case unicode.IsControl(r) || isBidi(r):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isBidi(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f
}

// writeTable prints rows like psql's aligned format; NULL prints as empty.
func writeTable(w *bufio.Writer, cols []string, rows [][]*string) {
	if len(cols) == 0 {
		return
	}
	cell := func(row []*string, i int) string {
		if i < len(row) && row[i] != nil {
			return Clean(*row[i])
		}
		return ""
	}
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = utf8.RuneCountInString(Clean(c))
		for _, row := range rows {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell(row, i)))
		}
	}
	line := func(cells []string) {
		for i, c := range cells {
			if i > 0 {
				w.WriteString(" | ")
			} else {
				w.WriteString(" ")
			}
			w.WriteString(c)
			if i < len(cells)-1 {
				w.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
			}
		}
		w.WriteString("\n")
	}
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = Clean(c)
	}
	line(head)
	for i := range cols {
		if i > 0 {
			w.WriteString("+")
		}
		w.WriteString(strings.Repeat("-", widths[i]+2))
	}
	w.WriteString("\n")
	for _, row := range rows {
		cells := make([]string, len(cols))
		for i := range cols {
			cells[i] = cell(row, i)
		}
		line(cells)
	}
	s := "s"
	if len(rows) == 1 {
		s = ""
	}
	fmt.Fprintf(w, "(%d row%s)\n", len(rows), s)
}
