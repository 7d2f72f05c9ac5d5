package postgres_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/ephemeral/engine/postgres"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// serveErrs waits until n connections have been served and returns what
// Serve returned for them.
func (p *proxy) serveErrs(t *testing.T, n int64) []error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.served.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections served", p.served.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.serveMu.Lock()
	defer p.serveMu.Unlock()
	return append([]error(nil), p.errs...)
}

// TestTargetLost: Serve says the target went away (ErrTargetLost, which ends
// the session) when PostgreSQL terminates the upstream connection with
// 57P01 (what a shutdown or pg_terminate_backend sends) and when the target
// refuses connections; a client that leaves is not a target loss.
func TestTargetLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("upstream terminated by the server", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, opts{access: spec.Read})
		c := p.pgx(t)
		var pid int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		admin, err := pgx.Connect(ctx, server(t).AdminDSN("shop"))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "57P01") && !strings.Contains(err.Error(), "administrator command") && !strings.Contains(err.Error(), "closed") {
			t.Fatalf("client after the upstream was terminated: %v", err)
		}
		errs := p.serveErrs(t, 1)
		if len(errs) != 1 || !errors.Is(errs[0], postgres.ErrTargetLost) {
			t.Fatalf("Serve returned %v, want ErrTargetLost", errs)
		}
	})

	t.Run("target refuses connections", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		p := startProxy(t, opts{access: spec.Read, addr: closed})
		if c, err := pgx.Connect(ctx, p.dsn(p.secret())); err == nil {
			c.Close(ctx)
			t.Fatal("a client connected through a proxy whose target is down")
		} else if !strings.Contains(err.Error(), "the target database is unavailable") {
			t.Errorf("client error %v, want the proxy's reason", err)
		}
		errs := p.serveErrs(t, 1)
		if len(errs) != 1 || !errors.Is(errs[0], postgres.ErrTargetLost) {
			t.Fatalf("Serve returned %v, want ErrTargetLost", errs)
		}
	})

	t.Run("client leaves", func(t *testing.T) {
		t.Parallel()
		// The upstream closes right after relaying the client's Terminate,
		// racing the client side: repeat, so the race is met.
		p := startProxy(t, opts{access: spec.Read})
		const n = 40
		for range n {
			c, err := pgx.Connect(ctx, p.dsn(p.secret()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			c.Close(ctx)
		}
		// Nor is it an error in the recording (replays showed a spurious
		// "08006 the target database closed the connection" after exec runs).
		ex := startProxy(t, opts{access: spec.Read, op: "SELECT 1"})
		for range 20 {
			if _, err := ex.eng.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
		for _, pp := range []*proxy{p, ex} {
			for _, ev := range pp.events(t) {
				if ev.Type == record.Error {
					t.Errorf("recording holds an error after clients left normally: %s", ev.Error)
				}
			}
		}
		for _, err := range p.serveErrs(t, n) {
			if errors.Is(err, postgres.ErrTargetLost) {
				t.Fatalf("a client's Terminate counted as the target going away: %v", err)
			}
		}
	})
}
