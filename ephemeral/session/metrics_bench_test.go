package session_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// copyEngine echoes every byte back, so a benchmark measures the proxy's
// per-connection path and nothing else.
type copyEngine struct{}

func (copyEngine) Serve(ctx context.Context, c net.Conn) error {
	defer c.Close()
	_, err := io.Copy(c, c)
	return err
}

func (copyEngine) Exec(context.Context, string) (*spec.Result, error) { return &spec.Result{}, nil }

// BenchmarkRelayMetrics compares a client round trip through a session proxy
// with metrics off (baseline) and on (every client read and write counted).
//
//	go test -run '^$' -bench RelayMetrics -count 5 ./ephemeral/session
func BenchmarkRelayMetrics(b *testing.B) {
	for _, c := range []struct{ name, metrics string }{{"off", ""}, {"on", "127.0.0.1:0"}} {
		b.Run(c.name, func(b *testing.B) {
			g := &spec.Grant{ID: "g_bench", Mode: spec.Session, Rule: "r",
				Target:       spec.Target{Name: "db", Protocol: spec.Postgres, Address: "127.0.0.1:1", Database: "db"},
				ClientSecret: spec.NewSecret("s").Wire(), Listen: "127.0.0.1:0", Deadline: time.Now().Add(time.Hour),
				Guard: spec.Guard{Access: spec.Read}, Record: spec.Record{Dir: b.TempDir()}, Metrics: c.metrics}
			ctx, cancel := context.WithCancel(context.Background())
			pr, pw := io.Pipe()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = session.Run(ctx, session.Config{Grant: g, Status: pw, Logger: slog.New(slog.DiscardHandler),
					Engines: map[spec.Protocol]session.Factory{spec.Postgres: func(*spec.Grant, *record.Recorder, *slog.Logger) (session.Engine, error) {
						return copyEngine{}, nil
					}}})
				pw.Close()
			}()
			dec := json.NewDecoder(pr)
			var ready spec.Status
			if err := dec.Decode(&ready); err != nil || ready.Type != spec.StatusReady {
				b.Fatalf("ready: %+v %v", ready, err)
			}
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			conn, err := net.Dial("tcp", ready.Addr)
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, 512) // about one small query and its answer
			buf := make([]byte, len(msg))
			b.SetBytes(int64(2 * len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			conn.Close()
			cancel()
			<-done
		})
	}
}
