package audit_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jitgate/jitgate/broker/audit"
)

// BenchmarkAppend compares Append with the baseline of writing and fsyncing a
// line of the same size to a plain file: the difference is encoding, hashing
// and locking. The parallel cases show what group commit buys when many grants
// are decided at once.
//
//	go test -run '^$' -bench Append -benchtime 2s ./broker/audit/
func BenchmarkAppend(b *testing.B) {
	ev := sample(1)
	b.Run("baseline-write-fsync", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		line := make([]byte, 560)
		line[len(line)-1] = '\n'
		for b.Loop() {
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []audit.SyncMode{audit.SyncEach, audit.SyncGroup} {
		b.Run("serial-"+mode.String(), func(b *testing.B) {
			l := openLog(b, filepath.Join(b.TempDir(), "audit.jsonl"), mode)
			for b.Loop() {
				if _, err := l.Append(b.Context(), ev); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel8-"+mode.String(), func(b *testing.B) {
			l := openLog(b, filepath.Join(b.TempDir(), "audit.jsonl"), mode)
			b.SetParallelism(4) // 4 × GOMAXPROCS(2) = 8 appenders
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(b.Context(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
