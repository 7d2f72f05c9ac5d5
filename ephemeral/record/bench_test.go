package record_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record"
)

// benchEvents is one statement's worth of what the PostgreSQL engine records.
func benchEvents() []record.Event {
	yes := true
	rows := make([][]*string, 10)
	for i := range rows {
		id, name, card, email := strconv.Itoa(i), "customer "+strconv.Itoa(i), "************1111", "****@example.com"
		rows[i] = []*string{&id, &name, &card, &email}
	}
	return []record.Event{
		{Type: record.Query, Conn: 1, Statement: "SELECT id, name, card_number, email FROM users WHERE region = 'eu' ORDER BY id LIMIT 10"},
		{Type: record.Verdict, Conn: 1, Allowed: &yes},
		{Type: record.Rows, Conn: 1, Columns: []string{"id", "name", "card_number", "email"}, Rows: rows, RowCount: 10},
		{Type: record.Result, Conn: 1, Tag: "SELECT 10"},
	}
}

// plainJSONL is the baseline: v1's approach, a mutex-guarded json.Encoder on a
// buffered file, no chunking, hashing, compression or signing.
type plainJSONL struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	enc *json.Encoder
}

func (p *plainJSONL) Write(ev record.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enc.Encode(ev)
}

// BenchmarkWrite compares the recorder's Write (the proxy's hot path) with
// chunking, zstd, SHA-256 chaining and Ed25519 seals against the plain JSONL
// baseline, in the same run:
//
//	go test -run '^$' -bench Write -benchtime 200000x ./ephemeral/record/
func BenchmarkWrite(b *testing.B) {
	evs := benchEvents()
	size := 0
	for _, ev := range evs {
		j, _ := json.Marshal(ev)
		size += len(j) + 1
	}
	run := func(b *testing.B, write func(record.Event) error) {
		b.SetBytes(int64(size / len(evs)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := write(evs[i%len(evs)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("baseline-jsonl-bufio", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "plain.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		p := &plainJSONL{f: f, w: bufio.NewWriterSize(f, 64<<10)}
		p.enc = json.NewEncoder(p.w)
		p.enc.SetEscapeHTML(false)
		run(b, p.Write)
		b.StopTimer()
		_ = p.w.Flush()
		f.Close()
	})
	b.Run("v2-chunked-signed", func(b *testing.B) {
		r, err := record.Create(context.Background(), record.Config{Dir: b.TempDir(), Header: header("g-bench"), Signer: newSigner(b),
			MaxBytes: 1 << 40})
		if err != nil {
			b.Fatal(err)
		}
		run(b, r.Write)
		if err := r.Close(); err != nil { // the timer includes sealing the tail
			b.Fatal(err)
		}
	})
}
