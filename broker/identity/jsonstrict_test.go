package identity

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeStrictObject: whatever the strict decoder accepts is valid JSON
// that encoding/json reads to the same number of top-level members (so no
// duplicate was silently merged).
func FuzzDecodeStrictObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"a":{"b":[1,2,{"c":null}]}}`, `[1]`, `{"a":1}x`, `{"a":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeStrictObject(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		var ref map[string]any
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("encoding/json refuses what we accepted: %v", err)
		}
		if len(ref) != len(m) {
			t.Fatalf("member count %d vs %d for %q", len(m), len(ref), b)
		}
	})
}

func TestDecodeStrictObject(t *testing.T) {
	cases := []struct {
		in, wantErr string
	}{
		{`{"a":1,"b":[1,2]}`, ""},
		{`{"a":1,"a":1}`, `duplicate JSON key "a"`},
		{`{"sub":"x","Sub":"y"}`, `duplicate JSON key "Sub" (also "sub")`},
		{`{"a":[{"b":1,"b":2}]}`, `duplicate JSON key "b"`},
		{`[]`, "not a JSON object"},
		{`{"a":1} {"b":2}`, "trailing data"},
		{`{"a":}`, "bad JSON"},
		{deep(40), "nested too deeply"},
	}
	for _, c := range cases {
		_, err := decodeStrictObject([]byte(c.in))
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want %q", c.in, err, c.wantErr)
		}
	}
}

func deep(n int) string {
	s := "1"
	for range n {
		s = `{"a":` + s + `}`
	}
	return s
}
