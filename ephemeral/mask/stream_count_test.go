package mask

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// streamAll writes in to a fresh Stream of m in chunks of size n, closes it
// and returns what it sent.
func streamAll(t testing.TB, m *Masker, in []byte, n int, count bool) []byte {
	t.Helper()
	var out bytes.Buffer
	w := NewStream(m, 0, func(b []byte) error { out.Write(b); return nil })
	w.count = count
	for len(in) > 0 {
		k := min(n, len(in))
		if _, err := w.Write(in[:k]); err != nil {
			t.Fatal(err)
		}
		in = in[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The stream rescans overlapping windows; each secret it sends still counts
// once, as if the whole text had been masked at once.
func TestStreamCountsEachSecretOnce(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "%s line %d card 4111 1111 1111 1111 mail user%d@example.com\n", strings.Repeat("x", 1500), i, i)
	}
	in := []byte(b.String()) // ~160 KiB, many windows
	for _, chunk := range []int{1, 7, 1000, 4096, StreamWindow, 3 * StreamWindow, len(in)} {
		if chunk == 1 && testing.Short() {
			continue
		}
		stream, err := New(Config{Detectors: []string{"credit_card", "email"}})
		if err != nil {
			t.Fatal(err)
		}
		whole, _ := New(Config{Detectors: []string{"credit_card", "email"}})
		got := streamAll(t, stream, in, chunk, true)
		if want := whole.Text(in); !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: streamed output differs from masking the whole text", chunk)
		}
		gc, wc := stream.Counts(), whole.Counts()
		if gc[DetectCreditCard] != 100 || gc[DetectEmail] != 100 || gc["column"] != 0 {
			t.Errorf("chunk %d: stream counts %v, want 100 cards and 100 emails", chunk, gc)
		}
		if fmt.Sprint(gc) != fmt.Sprint(wc) {
			t.Errorf("chunk %d: stream counts %v, Text counts %v", chunk, gc, wc)
		}
	}
}

// A secret split across two writes at any byte counts once.
func TestStreamCountsSplitSecretOnce(t *testing.T) {
	t.Parallel()
	for _, pre := range []int{0, 100, StreamWindow - 7, 2*StreamWindow + 3} {
		text := strings.Repeat("x", pre) + " card 4111 1111 1111 1111 end\n" + strings.Repeat("y ", 5000)
		for split := pre; split < pre+30; split++ {
			m, err := New(Config{Detectors: []string{"credit_card"}})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w := NewStream(m, 0, func(b []byte) error { out.Write(b); return nil })
			_, _ = w.Write([]byte(text[:split]))
			_, _ = w.Write([]byte(text[split:]))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), "4111") {
				t.Fatalf("pre %d split %d: card leaked", pre, split)
			}
			if n := m.Counts()[DetectCreditCard]; n != 1 {
				t.Fatalf("pre %d split %d: counted %d cards, want 1", pre, split, n)
			}
		}
	}
}

// Aborted output was never sent and counts nothing; clean output counts nothing.
func TestStreamCountsNothingUnsent(t *testing.T) {
	t.Parallel()
	m, err := New(Config{Detectors: []string{"credit_card"}})
	if err != nil {
		t.Fatal(err)
	}
	w := NewStream(m, 0, func([]byte) error { return nil })
	_, _ = w.Write([]byte("card 4111 1111 1111 1111 held back"))
	w.Abort()
	streamAll(t, m, bytes.Repeat([]byte("nothing secret here\n"), 5000), 4096, true)
	if n := m.Counts()[DetectCreditCard]; n != 0 {
		t.Fatalf("counted %d cards, want 0", n)
	}
}

// BenchmarkStreamCount is the cost of counting in the stream masker: the
// 1 MiB mixed corpus in 4 KiB writes, uncounted (baseline) and counted; and
// Text with and without its counting.
func BenchmarkStreamCount(b *testing.B) {
	in := mixedInput()
	m, err := New(Config{Detectors: []string{"all"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		count bool
	}{{"stream/uncounted", false}, {"stream/counted", true}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				streamAll(b, m, in, 4096, c.count)
			}
		})
	}
	b.Run("text/uncounted", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			m.masked(in)
		}
	})
	b.Run("text/counted", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			m.Text(in)
		}
	})
}

// FuzzStreamCounts: text with planted cards and emails, written to a Stream
// in pieces cut at fuzzed points, counts what masking the whole text at once
// counts whenever the two outputs agree.
func FuzzStreamCounts(f *testing.F) {
	f.Add([]byte("card 4111 1111 1111 1111 mail a@example.com"), uint16(3), uint16(17), uint8(40))
	f.Add([]byte("4111111111111111"), uint16(8), uint16(9000), uint8(200))
	f.Add([]byte("x@y.io 4111-1111-1111-1111\n"), uint16(0), uint16(1), uint8(0))
	f.Fuzz(func(t *testing.T, unit []byte, a, b uint16, reps uint8) {
		in := bytes.Repeat(append(unit, bytes.Repeat([]byte{'.'}, 300)...), int(reps)+1)
		stream, _ := New(Config{Detectors: []string{"credit_card", "email"}})
		whole, _ := New(Config{Detectors: []string{"credit_card", "email"}})
		var out bytes.Buffer
		w := NewStream(stream, 0, func(p []byte) error { out.Write(p); return nil })
		cuts := []int{int(a) % (len(in) + 1), int(b) % (len(in) + 1)}
		if cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		_, _ = w.Write(in[:cuts[0]])
		_, _ = w.Write(in[cuts[0]:cuts[1]])
		_, _ = w.Write(in[cuts[1]:])
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), whole.Text(in)) {
			return // a different (still masked) cut: counts may differ too
		}
		if gs, gw := fmt.Sprint(stream.Counts()), fmt.Sprint(whole.Counts()); gs != gw {
			t.Fatalf("stream counted %s, whole text %s", gs, gw)
		}
	})
}
