package mask

import (
	"bytes"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"regexp"
	"testing"
)

// mixedInput is 1 MiB of what query results and logs look like: words, numbers,
// dates, JSON, UUIDs, hex digests, base64, and now and then a secret of each kind.
func mixedInput() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"the", "order", "shipped", "customer", "Alice", "Bob", "invoice", "total", "status", "pending",
		"id", "name", "created_at", "updated", "error", "timeout", "SELECT", "FROM", "users", "WHERE", "ok", "null"}
	secrets := []string{"4111 1111 1111 1111", "alice@example.com", "123-45-6789", "DE89370400440532013000",
		"AKIAIOSFODNN7EXAMPLE", "aws_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
		"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
		"ghp_1234567890abcdefghijABCDEFGHIJ123456"}
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		switch r.IntN(12) {
		case 0:
			fmt.Fprintf(&b, `{"id": %d, "amount": %d.%02d, "ts": "2024-%02d-%02dT%02d:%02d:00Z"} `, r.IntN(1e6), r.IntN(1e4), r.IntN(100), 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60))
		case 1:
			fmt.Fprintf(&b, "%08x-%04x-%04x-%04x-%012x ", r.Uint32(), r.IntN(1<<16), r.IntN(1<<16), r.IntN(1<<16), r.Uint64()&(1<<48-1))
		case 2:
			fmt.Fprintf(&b, "sha1 %016x%016x%08x ", r.Uint64(), r.Uint64(), r.Uint32())
		case 3:
			fmt.Fprintf(&b, "phone +1 555 %03d %04d, zip %05d; ", r.IntN(1000), r.IntN(10000), r.IntN(100000))
		case 4:
			if r.IntN(8) == 0 {
				b.WriteString(secrets[r.IntN(len(secrets))])
				b.WriteByte(' ')
			}
		default:
			for range 6 {
				b.WriteString(words[r.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteString("\n")
		}
	}
	return b.Bytes()[:1<<20]
}

// regexpBaselines are the equivalent Go regexps, with the same validation after the
// match (Luhn and issuer for cards, area/group/serial for SSNs, mod 97 for IBANs,
// the hint/randomness test for AWS secret keys).
var regexpBaselines = map[string]struct {
	re    *regexp.Regexp
	check func([]byte) bool
}{
	DetectCreditCard: {regexp.MustCompile(`\b(?:\d[ -]?){12,18}\d\b`), func(m []byte) bool {
		var d []byte
		for _, c := range m {
			if isDigit(c) {
				d = append(d, c-'0')
			}
		}
		return iinOK(d) && luhn(d)
	}},
	DetectEmail: {regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`), nil},
	DetectUSSSN: {regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b`), func(m []byte) bool {
		_, _, ok := findSSN(m, 0)
		return ok
	}},
	DetectIBAN: {regexp.MustCompile(`\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}\b`), func(m []byte) bool {
		_, _, ok := findIBAN(m, 0)
		return ok
	}},
	DetectAWSAccessKey: {regexp.MustCompile(`(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b`), nil},
	DetectAWSSecretKey: {regexp.MustCompile(`(?:^|[^A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?:$|[^A-Za-z0-9+/])`), func(m []byte) bool {
		return randomLooking(bytes.Trim(m, "= \n:;,\"'"))
	}},
	DetectJWT:           {regexp.MustCompile(`eyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*`), nil},
	DetectPEMPrivateKey: {regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY[A-Z ]*-----(?s:.*?)-----END `), nil},
	DetectTokenPrefix:   {regexp.MustCompile(`(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[bpares]-[A-Za-z0-9_-]{10,}|xapp-[A-Za-z0-9_-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36,}|sk-(?:ant|proj)-[A-Za-z0-9_-]{20,}|pypi-[A-Za-z0-9_-]{50,}|AIza[A-Za-z0-9_-]{30,})`), nil},
}

// BenchmarkDetectors runs each hand-written scanner and its regexp baseline over the
// same 1 MiB, side by side:
//
//	go test -run '^$' -bench Detectors -benchtime 20x ./ephemeral/mask/
func BenchmarkDetectors(b *testing.B) {
	in := mixedInput()
	for _, f := range finders {
		b.Run(f.name+"/scanner", func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			n := 0
			for b.Loop() {
				n = 0
				for from := 0; ; {
					_, e, ok := f.find(in, from)
					if !ok {
						break
					}
					n++
					from = e
				}
			}
			b.ReportMetric(float64(n), "matches")
		})
		base := regexpBaselines[f.name]
		b.Run(f.name+"/regexp", func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			n := 0
			for b.Loop() {
				n = 0
				for _, loc := range base.re.FindAllIndex(in, -1) {
					if base.check == nil || base.check(in[loc[0]:loc[1]]) {
						n++
					}
				}
			}
			b.ReportMetric(float64(n), "matches")
		})
	}
}

// BenchmarkText is the whole masker over the same input: all detectors at once, and
// the clean fast path (a value without secrets is returned as is).
func BenchmarkText(b *testing.B) {
	in := mixedInput()
	m, err := New(Config{Detectors: []string{"all"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("all", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			m.Text(in)
		}
	})
	clean := []byte(`{"id": 42, "name": "Alice", "ts": "2024-01-01T10:00:00Z", "memo": "nothing to see here"}`)
	b.Run("clean-value", func(b *testing.B) {
		b.SetBytes(int64(len(clean)))
		b.ReportAllocs()
		for b.Loop() {
			m.Text(clean)
		}
	})
}

func TestBaselinesAgreeOnMatches(t *testing.T) {
	in := mixedInput()
	for _, f := range finders {
		n := 0
		for from := 0; ; {
			_, e, ok := f.find(in, from)
			if !ok {
				break
			}
			n++
			from = e
		}
		if n == 0 {
			t.Errorf("%s: no match in the benchmark input", f.name)
		}
		base := regexpBaselines[f.name]
		rn := 0
		for _, loc := range base.re.FindAllIndex(in, -1) {
			if base.check == nil || base.check(in[loc[0]:loc[1]]) {
				rn++
			}
		}
		if rn == 0 {
			t.Errorf("%s: regexp baseline finds nothing", f.name)
		}
		t.Logf("%s: scanner %d matches, regexp %d", f.name, n, rn)
	}
}

func firstDigit(b []byte) int {
	for i, c := range b {
		if isDigit(c) {
			return i
		}
	}
	return len(b)
}

// The word-at-a-time tests must agree with the byte tests, or a secret could be
// skipped.
func TestSWARAgreesWithBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(w [8]byte) {
		x := load64(w[:], 0)
		var dig, zero bool
		for _, c := range w {
			dig = dig || isDigit(c)
			zero = zero || c == 0
		}
		if hasDigit(x) != dig || hasZero(x) != zero {
			t.Fatalf("% x: hasDigit %v hasZero %v", w, hasDigit(x), hasZero(x))
		}
		if got, want := nextDigit(w[:], 0), firstDigit(w[:]); got != want {
			t.Fatalf("% x: nextDigit %d, want %d", w, got, want)
		}
		for _, c := range []byte{'_', '-', 'A'} {
			y := x ^ (ones * uint64(c))
			if m := zeroMask(y); m != 0 && w[bits.TrailingZeros64(m)>>3] != c {
				t.Fatalf("% x: lowest zero byte of x^%q is not %q", w, c, c)
			}
		}
	}
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			for _, fill := range []byte{0, 'a', 0xff, '/', ':', 0x80} {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(c)
				check(w)
			}
		}
	}
	for range 200000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(r.Uint32())
		}
		check(w)
	}
}
