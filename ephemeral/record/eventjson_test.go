package record

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// encodeStd is the reference: what the recorder's json.Encoder writes.
func encodeStd(t testing.TB, ev *Event) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	yes, no := true, false
	s := func(v string) *string { return &v }
	texts := []string{"", "plain", `quote " back \ slash`, "ctl \x00\x01\x08\x0c\n\r\t\x1f\x7f", "<html> & 'x'",
		"bad utf8 \xff\xfe end", "\xe2\x80", "line sep \u2028 para \u2029", "emoji 😀 é", "\u00e9\u0301"}
	evs := []Event{
		{},
		{Time: time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC), Type: Query, Conn: 3, Statement: "SELECT 1"},
		{Time: time.Date(2026, 11, 26, 4, 0, 0, 123456789, time.UTC), Type: Verdict, Allowed: &no, Reason: "DROP TABLE is admin"},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 3600)), Type: Verdict, Allowed: &yes},
		{Time: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), Type: Rows, Columns: []string{"a", "b"},
			Rows: [][]*string{{s("1"), nil}, nil, {}, {s("x\ny")}}, RowCount: -5, Trimmed: true},
		{Time: time.Now(), Type: Result, Tag: "SELECT 10", Error: "E1", Conn: -1},
	}
	for _, tx := range texts {
		evs = append(evs, Event{Time: time.Now().UTC(), Type: EventType(tx), Statement: tx, Reason: tx, Columns: []string{tx},
			Rows: [][]*string{{&tx}}, Tag: tx, Error: tx})
	}
	for i := range evs {
		got, ok := appendEvent(nil, &evs[i])
		want := encodeStd(t, &evs[i])
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("event %d: ok=%v\n got %s\nwant %s", i, ok, got, want)
		}
	}
	// Times encoding/json refuses or formats differently go the slow way.
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("odd", 30))} {
		if _, ok := appendEvent(nil, &Event{Time: tm}); ok {
			t.Errorf("%v: fast path taken", tm)
		}
	}
}

func FuzzAppendEvent(f *testing.F) {
	f.Add("SELECT 1", "reason", "col", "val", int64(7), int64(0))
	f.Add("\xff\u2028\x00\"\\", "", "", "", int64(-1), int64(1e18))
	f.Fuzz(func(t *testing.T, stmt, reason, col, val string, n, nsec int64) {
		ev := Event{Time: time.Unix(0, nsec).UTC(), Type: EventType(col), Conn: int(n), Statement: stmt, Reason: reason,
			Columns: []string{col, val}, Rows: [][]*string{{&val, nil}}, RowCount: n, Tag: val, Error: stmt, Allowed: new(bool)}
		got, ok := appendEvent(nil, &ev)
		if !ok {
			return
		}
		if want := encodeStd(t, &ev); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}
