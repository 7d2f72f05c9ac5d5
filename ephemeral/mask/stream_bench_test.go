package mask

import (
	"testing"
)

// BenchmarkStream is the stream masker over the 1 MiB mixed corpus in the
// write sizes the engines see (4 KiB, 32 KiB, 256 KiB; 64 B for interactive
// output), next to Text over the
// whole input and the equivalent Go regexps (find only, no masking):
//
//	go test -run '^$' -bench '^BenchmarkStream$' -benchtime 20x ./ephemeral/mask/
func BenchmarkStream(b *testing.B) {
	in := mixedInput()
	m, err := New(Config{Detectors: []string{"all"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("text", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			m.Text(in)
		}
	})
	b.Run("regexp", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			for _, f := range finders {
				base := regexpBaselines[f.name]
				for _, loc := range base.re.FindAllIndex(in, -1) {
					if base.check != nil {
						base.check(in[loc[0]:loc[1]])
					}
				}
			}
		}
	})
	for _, c := range []struct {
		name string
		size int
	}{{"stream/64B", 64}, {"stream/4KiB", 4 << 10}, {"stream/32KiB", 32 << 10}, {"stream/256KiB", 256 << 10}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				w := NewStream(m, 0, func([]byte) error { return nil })
				for p := in; len(p) > 0; {
					n := min(c.size, len(p))
					_, _ = w.Write(p[:n])
					p = p[n:]
				}
				_ = w.Close()
			}
		})
	}
}
