// Package adversarial replays the guard's and the masker's adversarial case
// tables (ephemeral/guard/testdata/cases.yaml, ephemeral/mask/testdata/
// lineage_cases.yaml) end to end: through the real PostgreSQL engine of the
// ephemeral proxy, with the real psql (simple protocol) and pgx (extended
// protocol) clients, against a real PostgreSQL 15. The guard's unit tests
// prove the classification; these prove the proxy enforces it on the wire and
// that masked values never reach a client, whatever the statement does.
package adversarial

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/ephemeral/engine/postgres"
	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/pgtest"
)

const clientSecret = "adversarial-grant-secret"

// proxy is one engine serving on a loopback listener.
type proxy struct {
	addr  string
	grant *spec.Grant
}

// startProxy serves one grant (access level a, upstream login as role/pw on db)
// until the test ends.
func startProxy(t *testing.T, pg *pgtest.Server, db, role, pw string, a spec.Access, gcfg guard.Config, mcfg mask.Config) *proxy {
	t.Helper()
	g := &spec.Grant{
		ID: "g_adv_" + strconv.Itoa(int(time.Now().UnixNano()%1e9)), Mode: spec.Session,
		Target:       spec.Target{Name: "adv", Protocol: spec.Postgres, Address: pg.Addr(), Database: db},
		ClientSecret: spec.WireSecret(clientSecret), Deadline: time.Now().Add(30 * time.Minute),
		Credential: spec.Credential{Username: role, Password: spec.WireSecret(pw), LeaseID: "test"},
		Guard:      spec.Guard{Access: a}, Record: spec.Record{Dir: t.TempDir()},
	}
	gcfg.Access = a
	gd, err := guard.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := mask.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := record.Open(g.Record.Dir, record.Header{GrantID: g.ID, Mode: "session", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := postgres.New(postgres.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = eng.Serve(ctx, c) }()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); _ = rec.Close() })
	return &proxy{addr: ln.Addr().String(), grant: g}
}

func (p *proxy) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	host, port, _ := net.SplitHostPort(p.addr)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable", host, port, p.grant.ID, clientSecret, p.grant.Target.Database))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (p *proxy) dsn() string {
	host, port, _ := net.SplitHostPort(p.addr)
	return fmt.Sprintf("postgres://%s:%s@%s:%s/%s?sslmode=disable", p.grant.ID, clientSecret, host, port, p.grant.Target.Database)
}

// blocked reports whether err is the proxy's policy refusal.
func blocked(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501" && strings.Contains(pe.Message, "blocked by policy")
}

func mustExec(t *testing.T, pg *pgtest.Server, db, sql string) {
	t.Helper()
	if err := pg.Exec(context.Background(), db, sql); err != nil {
		t.Fatal(err)
	}
}
