package postgres

import (
	"bytes"
	"net"
	"testing"
)

func TestDataRowRoundTrip(t *testing.T) {
	cases := [][][]byte{
		{},
		{nil},
		{[]byte("a"), nil, []byte(""), []byte("4111111111111111")},
		{bytes.Repeat([]byte("x"), 70000)},
	}
	for _, vals := range cases {
		msg := appendDataRow(nil, vals)
		if msg[0] != 'D' {
			t.Fatalf("type %q", msg[0])
		}
		got, err := dataRowValues(msg[5:], nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(vals) {
			t.Fatalf("%d values, want %d", len(got), len(vals))
		}
		for i := range vals {
			if (got[i] == nil) != (vals[i] == nil) || !bytes.Equal(got[i], vals[i]) {
				t.Fatalf("value %d: %q, want %q", i, got[i], vals[i])
			}
		}
	}
}

func TestDataRowRejectsMalformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":            {},
		"short count":      {0},
		"missing value":    {0, 1},
		"length past end":  {0, 1, 0, 0, 0, 9, 'a'},
		"negative length":  {0, 1, 0xff, 0xff, 0xff, 0xfe},
		"trailing garbage": {0, 0, 'x'},
	} {
		if _, err := dataRowValues(body, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDataRow(f *testing.F) {
	f.Add(appendDataRow(nil, [][]byte{[]byte("a"), nil})[5:])
	f.Add([]byte{0, 2, 0, 0, 0, 1, 'x', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		vals, err := dataRowValues(body, nil)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		if got := appendDataRow(nil, vals)[5:]; !bytes.Equal(got, body) {
			t.Fatalf("re-encoded %x, want %x", got, body)
		}
	})
}

func TestMsgReader(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	big := bytes.Repeat([]byte{'z'}, 3*readBufSize)
	go func() {
		w := &msgWriter{w: a}
		w.raw('Q', []byte("SELECT 1\x00"))
		w.raw('d', big)
		w.raw('S', nil)
		_ = w.flush()
		_, _ = a.Write([]byte{'Q', 0, 0, 0, 2}) // length below 4
	}()
	r := newMsgReader(b, 4*readBufSize)
	for _, want := range []struct {
		t    byte
		body []byte
	}{{'Q', []byte("SELECT 1\x00")}, {'d', big}, {'S', []byte{}}} {
		typ, body, err := r.next()
		if err != nil || typ != want.t || !bytes.Equal(body, want.body) {
			t.Fatalf("got %q %d bytes %v, want %q %d bytes", typ, len(body), err, want.t, len(want.body))
		}
	}
	if _, _, err := r.next(); err == nil {
		t.Fatal("a message length below 4 was accepted")
	}
	small := newMsgReader(bytes.NewReader([]byte{'Q', 0, 0, 1, 0}), 16)
	if _, _, err := small.next(); err == nil {
		t.Fatal("a message over the limit was accepted")
	}
}

func TestUpstreamParams(t *testing.T) {
	cases := []struct {
		in      map[string]string
		want    map[string]string
		refused bool
	}{
		{map[string]string{"user": "g", "DateStyle": "ISO", "search_path": "evil", "options": "-c role=x"}, map[string]string{"DateStyle": "ISO"}, false},
		{map[string]string{"client_encoding": "utf-8"}, map[string]string{"client_encoding": "UTF8"}, false},
		{map[string]string{"client_encoding": "SJIS"}, nil, true},
		{map[string]string{"client_encoding": "GBK"}, nil, true},
	}
	for _, c := range cases {
		got, err := upstreamParams(c.in)
		if c.refused {
			if err == nil {
				t.Errorf("%v: accepted", c.in)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%v: got %v %v, want %v", c.in, got, err, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%v: %s=%q, want %q", c.in, k, got[k], v)
			}
		}
	}
}
