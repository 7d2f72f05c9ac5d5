package ssh

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

const testCard = "4111 1111 1111 1111"

func newTestMasker(t testing.TB, style mask.Style) *mask.Masker {
	t.Helper()
	m, err := mask.New(mask.Config{Detectors: []string{"credit_card", "aws_access_key", "pem_private_key"}, Style: style,
		TokenKey: []byte("0123456789abcdef0123")})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// feed writes chunks to a maskWriter that never flushes on idle, closes it
// and returns everything it sent.
func feed(t testing.TB, m *mask.Masker, chunks [][]byte) string {
	t.Helper()
	var out bytes.Buffer
	w := newMaskWriter(m, time.Hour, func(b []byte) error { out.Write(b); return nil })
	for _, c := range chunks {
		if _, err := w.Write(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestMaskWriterSplitSecret(t *testing.T) {
	for _, style := range []mask.Style{mask.StyleFull, mask.StylePartial, mask.StyleToken} {
		m := newTestMasker(t, style)
		for _, pre := range []int{0, 100, maskWindow - 7, maskWindow + 3, 3 * maskWindow} {
			text := strings.Repeat("x", pre) + " card " + testCard + " end\n" + strings.Repeat("y ", 5000)
			want := string(m.Text([]byte(text)))
			for split := pre; split < pre+30; split++ {
				got := feed(t, m, [][]byte{[]byte(text[:split]), []byte(text[split:])})
				if strings.Contains(got, testCard) || strings.Contains(got, "4111 1111") {
					t.Fatalf("%s: split at %d leaked the card", style, split)
				}
				if got != want {
					t.Fatalf("%s: split at %d: output differs from masking the whole text", style, split)
				}
			}
		}
	}
}

func TestMaskWriterByteByByte(t *testing.T) {
	m := newTestMasker(t, mask.StyleFull)
	text := "a " + testCard + " b AKIAIOSFODNN7EXAMPLE c\n"
	chunks := make([][]byte, len(text))
	for i := range text {
		chunks[i] = []byte{text[i]}
	}
	if got, want := feed(t, m, chunks), string(m.Text([]byte(text))); got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestMaskWriterIdleFlush(t *testing.T) {
	m := newTestMasker(t, mask.StyleFull)
	got := make(chan string, 1)
	w := newMaskWriter(m, time.Millisecond, func(b []byte) error { got <- string(b); return nil })
	defer w.Close()
	_, _ = w.Write([]byte("$ "))
	select {
	case s := <-got:
		if s != "$ " {
			t.Fatalf("flushed %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a prompt was held back")
	}
}

func TestMaskWriterWithoutDetectorsPassesThrough(t *testing.T) {
	m, _ := mask.New(mask.Config{})
	var n int
	w := newMaskWriter(m, time.Hour, func(b []byte) error { n += len(b); return nil })
	_, _ = w.Write([]byte(testCard))
	if n != len(testCard) {
		t.Fatal("a masker without detectors held output back")
	}
}

// FuzzMaskWriter: however the output is cut into reads, a planted card
// number never comes out, and the result equals masking the whole text.
func FuzzMaskWriter(f *testing.F) {
	f.Add([]byte("hello"), uint16(3), uint16(17), uint8(0))
	f.Add(bytes.Repeat([]byte("z"), 9000), uint16(8190), uint16(8200), uint8(1))
	m := newTestMasker(f, mask.StyleFull)
	f.Fuzz(func(t *testing.T, filler []byte, at, cut uint16, style uint8) {
		if len(filler) > 40000 {
			filler = filler[:40000]
		}
		// Keep digits out of the filler so it cannot glue onto the card.
		filler = bytes.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return 'd'
			}
			return r
		}, filler)
		pos := int(at) % (len(filler) + 1)
		text := append(append(append([]byte{}, filler[:pos]...), []byte(" "+testCard+" ")...), filler[pos:]...)
		c := int(cut) % (len(text) + 1)
		var chunks [][]byte
		for i := 0; i < len(text); i += max(c, 1) {
			chunks = append(chunks, text[i:min(len(text), i+max(c, 1))])
		}
		got := feed(t, m, chunks)
		if strings.Contains(got, testCard) {
			t.Fatalf("card leaked with reads of %d bytes", c)
		}
		if want := string(m.Text(text)); got != want {
			t.Fatalf("reads of %d bytes: output differs from whole-text masking", c)
		}
	})
}

func TestOffersKex(t *testing.T) {
	pkt := func(kex string) []byte {
		var p []byte
		p = append(p, 0, 0, 0, 0, 4, msgKexInit)
		p = append(p, make([]byte, 16)...)
		p = append(p, byte(len(kex)>>24), byte(len(kex)>>16), byte(len(kex)>>8), byte(len(kex)))
		p = append(p, kex...)
		n := len(p) - 4
		p[0], p[1], p[2], p[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return p
	}
	full := append([]byte("SSH-2.0-x\r\n"), pkt("curve25519-sha256,"+kexStrictClient)...)
	for i := 0; i < len(full); i++ {
		if _, complete, err := offersKex(full[:i], kexStrictClient); complete || err != nil {
			t.Fatalf("prefix %d: complete=%v err=%v", i, complete, err)
		}
	}
	if ok, complete, err := offersKex(full, kexStrictClient); !ok || !complete || err != nil {
		t.Fatalf("full: %v %v %v", ok, complete, err)
	}
	if ok, complete, _ := offersKex(append([]byte("banner\r\nSSH-2.0-x\r\n"), pkt("curve25519-sha256")...), kexStrictServer); ok || !complete {
		t.Fatal("a KEXINIT without kex-strict was accepted")
	}
	for _, bad := range [][]byte{
		[]byte("SSH-1.5-old\r\n"),
		append([]byte("SSH-2.0-x\r\n"), 0, 0, 0x90, 0, 4, 20),
		append([]byte("SSH-2.0-x\r\n"), 0, 0, 0, 12, 4, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
	} {
		if _, _, err := offersKex(bad, kexStrictClient); err == nil {
			t.Errorf("offersKex(%q) accepted", bad)
		}
	}
}

func FuzzOffersKex(f *testing.F) {
	f.Add([]byte("SSH-2.0-x\r\n\x00\x00\x00\x20\x04\x14"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = offersKex(b, kexStrictClient)
	})
}
