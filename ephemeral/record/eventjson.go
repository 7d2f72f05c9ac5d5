package record

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEvent appends ev as one JSON line, byte for byte what a json.Encoder
// with SetEscapeHTML(false) writes, without reflection: Write runs on the
// proxy's hot path (four events per statement). ok is false when ev cannot
// be written this way (a time outside years 0–9999) and the caller must use
// encoding/json.
func appendEvent(b []byte, ev *Event) ([]byte, bool) {
	if y := ev.Time.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := ev.Time.Zone(); off%60 != 0 {
		return b, false
	}
	b = append(b, `{"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = appendJSONString(b, string(ev.Type))
	if ev.Conn != 0 {
		b = append(b, `,"conn":`...)
		b = strconv.AppendInt(b, int64(ev.Conn), 10)
	}
	if ev.Statement != "" {
		b = append(b, `,"statement":`...)
		b = appendJSONString(b, ev.Statement)
	}
	if ev.Allowed != nil {
		b = append(b, `,"allowed":`...)
		b = strconv.AppendBool(b, *ev.Allowed)
	}
	if ev.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, ev.Reason)
	}
	if len(ev.Columns) > 0 {
		b = append(b, `,"columns":[`...)
		for i, c := range ev.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, c)
		}
		b = append(b, ']')
	}
	if len(ev.Rows) > 0 {
		b = append(b, `,"rows":[`...)
		for i, row := range ev.Rows {
			if i > 0 {
				b = append(b, ',')
			}
			if row == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, '[')
			for j, v := range row {
				if j > 0 {
					b = append(b, ',')
				}
				if v == nil {
					b = append(b, "null"...)
				} else {
					b = appendJSONString(b, *v)
				}
			}
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	if ev.RowCount != 0 {
		b = append(b, `,"row_count":`...)
		b = strconv.AppendInt(b, ev.RowCount, 10)
	}
	if ev.Tag != "" {
		b = append(b, `,"tag":`...)
		b = appendJSONString(b, ev.Tag)
	}
	if ev.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, ev.Error)
	}
	if ev.Trimmed {
		b = append(b, `,"trimmed":true`...)
	}
	return append(b, "}\n"...), true
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does without HTML escaping:
// invalid UTF-8 becomes U+FFFD, control characters are escaped, and so are
// U+2028 and U+2029.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
