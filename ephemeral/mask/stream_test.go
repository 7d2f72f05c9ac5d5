package mask

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// streamChunks writes in to a fresh Stream of m in the given chunk sizes
// (cycled), closes it and returns what it sent.
func streamChunks(t testing.TB, m *Masker, in []byte, sizes []int) []byte {
	t.Helper()
	var out bytes.Buffer
	w := NewStream(m, 0, func(b []byte) error { out.Write(b); return nil })
	for k := 0; len(in) > 0; k++ {
		n := min(max(sizes[k%len(sizes)], 1), len(in))
		if _, err := w.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func newAll(t testing.TB, style Style) *Masker {
	t.Helper()
	m, err := New(Config{Detectors: []string{"all"}, Style: style, TokenKey: []byte("0123456789abcdef0123")})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Differential: the 1 MiB corpus streamed in random chunkings comes out as
// Text makes of the whole, in every style, with the same counts.
func TestStreamEqualsTextOnCorpus(t *testing.T) {
	t.Parallel()
	in := mixedInput()
	r := rand.New(rand.NewPCG(5, 6))
	random := func(n, maxSize int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = 1 + r.IntN(maxSize)
		}
		return out
	}
	chunkings := map[string][]int{
		"4KiB":        {4 << 10},
		"32KiB":       {32 << 10},
		"256KiB":      {256 << 10},
		"whole":       {len(in)},
		"window":      {StreamWindow},
		"window+1":    {StreamWindow + 1},
		"random<=16K": random(1000, 16<<10),
		"random<=300": random(1000, 300),
		"mixed":       append(random(50, 20), random(50, 70000)...),
	}
	if !testing.Short() {
		chunkings["random<=8"] = random(1000, 8)
	}
	for _, style := range []Style{StyleFull, StylePartial, StyleToken} {
		want := newAll(t, style)
		wantOut := append([]byte(nil), want.Text(in)...)
		if bytes.Equal(wantOut, in) {
			t.Fatal("the corpus has nothing to mask")
		}
		for name, sizes := range chunkings {
			m := newAll(t, style)
			got := streamChunks(t, m, in, sizes)
			if !bytes.Equal(got, wantOut) {
				i := 0
				for i < min(len(got), len(wantOut)) && got[i] == wantOut[i] {
					i++
				}
				t.Fatalf("%s, %s: output differs from Text at byte %d: got %q, want %q", style, name, i,
					got[max(0, i-40):min(len(got), i+40)], wantOut[max(0, i-40):min(len(wantOut), i+40)])
			}
			if g, w := fmt.Sprint(m.Counts()), fmt.Sprint(want.Counts()); g != w {
				t.Errorf("%s, %s: stream counts %s, Text %s", style, name, g, w)
			}
		}
	}
}

// Latency: whatever arrives is sent as soon as StreamWindow bytes follow it,
// unless a match that may still change overlaps it; then up to its start.
func TestStreamSendsAllButTheWindow(t *testing.T) {
	t.Parallel()
	m := newAll(t, StyleFull)
	var out bytes.Buffer
	w := NewStream(m, 0, func(b []byte) error { out.Write(b); return nil })
	line := []byte("nothing secret on this line at all\n")
	total := 0
	for total < 5*StreamWindow {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
		total += len(line)
		if want := max(0, total-StreamWindow); out.Len() != want {
			t.Fatalf("after %d bytes sent %d, want %d", total, out.Len(), want)
		}
	}
	// A card arrives; the output stops before it until it is settled.
	card := "4111 1111 1111 1111"
	_, _ = w.Write([]byte(card))
	total += len(card)
	start := total - len(card)
	for total < start+len(card)+StreamWindow {
		_, _ = w.Write([]byte("x"))
		total++
		want := min(total-StreamWindow, start)
		if total-StreamWindow >= start+len(card) { // settled
			want = total - StreamWindow
		}
		if out.Len() != want {
			t.Fatalf("after %d bytes (card at %d) sent %d, want %d", total, start, out.Len(), want)
		}
	}
	_, _ = w.Write([]byte("x"))
	if out.Len() != total+1-StreamWindow || strings.Contains(out.String(), "4111") {
		t.Fatalf("the settled card was not sent masked: sent %d bytes", out.Len())
	}
}

// Memory: a long stream keeps about two windows; a private key without END
// line is held and masked at most streamMaxHold, then the buffer shrinks again.
func TestStreamMemoryBounded(t *testing.T) {
	t.Parallel()
	m := newAll(t, StyleFull)
	var sent int
	w := NewStream(m, 0, func(b []byte) error { sent += len(b); return nil })
	chunk := bytes.Repeat([]byte("0123 abcd@example.org words and ghp_ more\n"), 100)
	peak := 0
	for range 2000 { // ~8 MiB
		_, _ = w.Write(chunk)
		peak = max(peak, cap(w.buf))
	}
	if limit := 6*StreamWindow + 2*len(chunk); peak > limit {
		t.Errorf("buffer reached %d bytes on clean text, want <= %d", peak, limit)
	}
	_, _ = w.Write([]byte("-----BEGIN PRIVATE KEY-----\n"))
	body := bytes.Repeat([]byte("MC4CAQAwBQYDK2VwBCIEI\n"), 200)
	peak = 0
	for range 1000 { // ~4 MiB of key body
		_, _ = w.Write(body)
		peak = max(peak, cap(w.buf))
	}
	if limit := 4*streamMaxHold + 4*StreamWindow; peak > limit {
		t.Errorf("buffer reached %d bytes in an endless key, want <= %d", peak, limit)
	}
	for range 100 {
		_, _ = w.Write(chunk)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := 2000*len(chunk) + len("-----BEGIN PRIVATE KEY-----\n") + 1000*len(body) + 100*len(chunk); sent != want {
		t.Errorf("sent %d bytes, want %d (full style keeps lengths)", sent, want)
	}
}

// A key body longer than the window streams masked with the window's delay
// instead of waiting for its END line.
func TestStreamLongKeyStreams(t *testing.T) {
	t.Parallel()
	m := newAll(t, StyleFull)
	var out bytes.Buffer
	w := NewStream(m, 0, func(b []byte) error { out.Write(b); return nil })
	in := []byte("-----BEGIN PRIVATE KEY-----\n")
	line := []byte("MC4CAQAwBQYDK2VwBCIEI\n")
	for range 5 * StreamWindow / len(line) {
		in = append(in, line...)
	}
	_, _ = w.Write(in)
	if out.Len() < len(in)-3*StreamWindow {
		t.Fatalf("sent %d of %d bytes of an open key body", out.Len(), len(in))
	}
	if bytes.Contains(out.Bytes(), []byte("MC4C")) {
		t.Fatal("key body leaked")
	}
	in = append(in, "-----END PRIVATE KEY-----\ntail\n"...)
	_, _ = w.Write([]byte("-----END PRIVATE KEY-----\ntail\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := newAll(t, StyleFull).Text(in); !bytes.Equal(out.Bytes(), want) {
		t.Fatal("output differs from Text")
	}
	if n := m.Counts()[DetectPEMPrivateKey]; n != 1 {
		t.Fatalf("counted %d keys, want 1", n)
	}
}

// A secret split by an idle flush: the part after the pause is masked when
// the whole is recognised, and the secret counts once.
func TestStreamIdleSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ a, b, leak string }{
		{"card 4111 1111 ", "1111 1111 end\n", "1111 1111 end"},                // first half alone is no card
		{"token ghp_1234567890abcdefghijABCDEFGHIJ", "123456 end\n", "123456"}, // body grows after a recognised prefix
	} {
		m := newAll(t, StyleFull)
		var out bytes.Buffer
		w := NewStream(m, 0, func(b []byte) error { out.Write(b); return nil })
		_, _ = w.Write([]byte(tc.a))
		w.idle() // what the flush timer does
		_, _ = w.Write([]byte(tc.b))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), tc.leak) {
			t.Errorf("%q|%q: the part after the pause leaked: %q", tc.a, tc.b, out.String())
		}
		total := uint64(0)
		for k, v := range m.Counts() {
			if k != "column" {
				total += v
			}
		}
		if total != 1 {
			t.Errorf("%q|%q: counted %v, want one secret", tc.a, tc.b, m.Counts())
		}
	}
}

// FuzzStreamEqualsText: lines of fuzzed text (so no secret is longer than
// the window) streamed in fuzzed pieces come out as Text makes of the whole,
// with the same counts, for every detector at once.
func FuzzStreamEqualsText(f *testing.F) {
	f.Add([]byte("card 4111 1111 1111 1111 mail a@example.com"), uint16(3), uint16(17), uint8(40))
	f.Add([]byte("AKIAIOSFODNN7EXAMPLE eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln DE89370400440532013000"), uint16(8190), uint16(9000), uint8(200))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n"), uint16(1), uint16(4097), uint8(255))
	f.Add([]byte("aws_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY 123-45-6789 ghp_1234567890abcdefghijABCDEFGHIJ1"), uint16(7), uint16(300), uint8(90))
	f.Fuzz(func(t *testing.T, unit []byte, a, b uint16, reps uint8) {
		if len(unit) > 2000 {
			unit = unit[:2000]
		}
		unit = bytes.ReplaceAll(unit, []byte("\n"), []byte(" "))
		line := append(unit, '\n')
		in := bytes.Repeat(line, int(reps)+1)
		stream, whole := newAll(t, StyleFull), newAll(t, StyleFull)
		sizes := []int{int(a)%5000 + 1, int(b)%70000 + 1}
		got := streamChunks(t, stream, in, sizes)
		if want := whole.Text(in); !bytes.Equal(got, want) {
			t.Fatalf("pieces %v: streamed output differs from Text", sizes)
		}
		if gs, gw := fmt.Sprint(stream.Counts()), fmt.Sprint(whole.Counts()); gs != gw {
			t.Fatalf("pieces %v: stream counted %s, Text %s", sizes, gs, gw)
		}
	})
}

// Secrets close to the window's length, cut anywhere, come out as Text makes
// of the whole: the searches that resume near the end of what arrived
// (trailing token, JWT and domain runs) find them.
func TestStreamLongSecretsSplit(t *testing.T) {
	t.Parallel()
	rep := func(s string, n int) string { return strings.Repeat(s, n/len(s)) }
	secrets := map[string]string{
		"jwt":   "eyJhbGciOiJIUzI1NiJ9." + rep("eyJzdWIiOiIxIn0", 6000) + ".c2ln",
		"email": rep("first.last", 3000) + "@" + rep("sub-domain.", 3000) + "example.com",
		"token": "ghp_" + rep("abcDEF0123", 7000),
		"pem":   "-----BEGIN RSA PRIVATE KEY-----\n" + rep("MIIEowIBAAKCAQEA\n", 7000) + "-----END RSA PRIVATE KEY-----",
		"aws":   "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	}
	sizes := []int{7, 1000, 4096, StreamWindow - 1}
	for name, secret := range secrets {
		in := []byte(rep("some text, ", 9000) + " " + secret + " " + rep("more text. ", 9000) + secret + "\n")
		want := newAll(t, StyleFull)
		wantOut := want.Text(in)
		if bytes.Equal(wantOut, in) {
			t.Fatalf("%s: Text masks nothing", name)
		}
		for _, n := range sizes {
			m := newAll(t, StyleFull)
			if got := streamChunks(t, m, in, []int{n}); !bytes.Equal(got, wantOut) {
				t.Errorf("%s in writes of %d: output differs from Text", name, n)
			}
			if g, w := fmt.Sprint(m.Counts()), fmt.Sprint(want.Counts()); g != w {
				t.Errorf("%s in writes of %d: counts %s, Text %s", name, n, g, w)
			}
		}
	}
}
