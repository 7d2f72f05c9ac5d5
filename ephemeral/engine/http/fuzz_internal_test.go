package http

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

func fuzzMasker(t testing.TB) *mask.Masker {
	m, err := mask.New(mask.Config{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// FuzzJSONMasker: the JSON masker never panics, its output is valid JSON, and
// a value under a masked field never comes out.
func FuzzJSONMasker(f *testing.F) {
	for _, s := range []string{`{"a":[{"b":"x"}]}`, `[1,2,{"c":null}]`, `"str"`, `{"password":{"deep":[1,2]}}`,
		`{"a":"\u0040\ud83d\ude00"}`, `4111111111111111`, `{"k":1}{"k":2}`, `[`, `{"a":1,"a":2}`, `{"x":"alice@example.com"}`} {
		f.Add([]byte(s), "hunter2")
	}
	m := fuzzMasker(f)
	var pats []jsonPattern
	for _, s := range []string{"secret", "$.a[*].b", "$..c", "$.x.*", "$[1]"} {
		p, err := compileJSONPattern(s)
		if err != nil {
			f.Fatal(err)
		}
		pats = append(pats, p)
	}
	f.Fuzz(func(t *testing.T, data []byte, secret string) {
		var out bytes.Buffer
		jm := newJSONMasker(m, pats, func(b []byte) error { out.Write(b); return nil })
		if err := jm.Run(bytes.NewReader(data)); err == nil && !validJSONSeq(out.Bytes()) {
			t.Fatalf("output of %q is not JSON: %q", data, out.Bytes())
		}
		if !json.Valid(data) {
			return
		}
		value := "S3cr3t-" + secret
		if bytes.Contains(data, []byte("S3cr3t-")) {
			return
		}
		q, _ := json.Marshal(value)
		doc := `{"x0":` + string(data) + `,"secret":` + string(q) + `}`
		out.Reset()
		jm = newJSONMasker(m, pats, func(b []byte) error { out.Write(b); return nil })
		if err := jm.Run(strings.NewReader(doc)); err != nil {
			return // duplicate-name-free, UTF-8-valid JSON only
		}
		if bytes.Contains(out.Bytes(), []byte(value)) || bytes.Contains(out.Bytes(), q[1:len(q)-1]) {
			t.Fatalf("masked field value %q survived in %q", value, out.Bytes())
		}
	})
}

func validJSONSeq(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// FuzzTextMasker: a card number in a text body never survives, wherever the
// body is cut into reads.
func FuzzTextMasker(f *testing.F) {
	f.Add("before ", " after", uint16(3), uint16(20))
	f.Add(strings.Repeat("x", 9000), "\n", uint16(9000), uint16(9010))
	m := fuzzMasker(f)
	const secret = "4111 1111 1111 1111"
	f.Fuzz(func(t *testing.T, pre, post string, a, b uint16) {
		whole := pre + secret + post
		if strings.Contains(string(m.Text([]byte(whole))), secret) {
			return // the detector itself does not see it (glued to digits)
		}
		i, j := int(a)%(len(whole)+1), int(b)%(len(whole)+1)
		if i > j {
			i, j = j, i
		}
		var out bytes.Buffer
		tm := newTextMasker(m, 0, func(p []byte) error { out.Write(p); return nil })
		for _, c := range []string{whole[:i], whole[i:j], whole[j:]} {
			if _, err := tm.Write([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tm.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), secret) {
			t.Fatalf("card survived a split at %d/%d", i, j)
		}
		if out.Len() == 0 && len(whole) > 0 {
			t.Fatal("nothing sent")
		}
	})
}

func FuzzJSONPattern(f *testing.F) {
	for _, s := range []string{"$.users[*].email", "password", "$..a", "$['x y'][3]", "$.", "$[", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := compileJSONPattern(s)
		if err != nil {
			return
		}
		_ = p.match([]pathElem{{obj: true, key: []byte("a")}, {idx: 3}})
	})
}
