package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

var (
	benchOnce sync.Once
	benchErr  error
)

// benchDB creates the pgbench tables (scale 1) in database "bench", readable by the
// minted role.
func benchDB(t testing.TB) {
	t.Helper()
	s := server(t)
	benchOnce.Do(func() {
		ctx := context.Background()
		if benchErr = s.Exec(ctx, "postgres", "CREATE DATABASE bench"); benchErr != nil {
			return
		}
		cmd := exec.CommandContext(ctx, "pgbench", "-i", "-s", "1", "-q", s.AdminDSN("bench"))
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			benchErr = errors.New("pgbench -i: " + err.Error() + ": " + string(out))
			return
		}
		benchErr = s.Exec(ctx, "bench", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO jg_minted")
	})
	if benchErr != nil {
		t.Fatal(benchErr)
	}
}

func TestPgbenchSelectOnly(t *testing.T) {
	t.Parallel()
	benchDB(t)
	p := startProxy(t, opts{access: spec.Read, db: "bench"})
	h, port := p.host()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pgbench", "-n", "-S", "-c", "4", "-t", "200", "-h", h, "-p", port, "-U", p.grant.ID, "bench")
	cmd.Env = cleanEnv("PGPASSWORD="+p.secret(), "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench through the proxy: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "number of transactions actually processed: 800/800") {
		t.Fatalf("pgbench output:\n%s", s)
	}
	if strings.Contains(s, "number of failed transactions:") && !strings.Contains(s, "number of failed transactions: 0 ") {
		t.Fatalf("pgbench reports failures:\n%s", s)
	}
	waitFor(t, func() bool { return p.active.Load() == 0 })
	p.serveMu.Lock()
	defer p.serveMu.Unlock()
	if len(p.errs) != 0 {
		t.Fatalf("Serve errors: %v", p.errs)
	}
}

// copyRelay is the naive baseline: one goroutine per direction, io.Copy.
func copyRelay(t testing.TB, upstream string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// BenchmarkSelectRoundTrip runs pgbench -S's statement as sequential simple-query
// round trips, directly, through an io.Copy relay and through the engine, in one run.
// distinct-text varies the literal like pgbench does (every statement is new to the
// guard's cache); same-text repeats one statement (the relay's own cost):
//
//	go test ./ephemeral/engine/postgres -run '^$' -bench SelectRoundTrip -benchtime 3s
func BenchmarkSelectRoundTrip(b *testing.B) {
	benchDB(b)
	s := server(b)
	p := startProxy(b, opts{access: spec.Read, db: "bench"})
	minted := func(addr string) string {
		return "postgres://" + mintedUsr + ":" + mintedPW + "@" + addr + "/bench?sslmode=disable"
	}
	targets := []struct {
		name string
		dsn  string
	}{
		{"direct", minted(s.Addr())},
		{"iocopy", minted(copyRelay(b, s.Addr()))},
		{"engine", p.dsn(p.secret())},
	}
	for _, tg := range targets {
		for _, same := range []bool{false, true} {
			name := tg.name + "/distinct-text"
			if same {
				name = tg.name + "/same-text"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				pg, err := pgconn.Connect(ctx, tg.dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer pg.Close(ctx)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					aid := 1 + i%100000
					if same {
						aid = 1
					}
					sql := "SELECT abalance FROM pgbench_accounts WHERE aid = " + strconv.Itoa(aid)
					res, err := pg.Exec(ctx, sql).ReadAll()
					if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
						b.Fatalf("%v %v", err, res)
					}
				}
			})
		}
	}
}
