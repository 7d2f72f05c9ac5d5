package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/jitgate/jitgate/ephemeral/engine/postgres"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestPsqlSelectBlockAndContinue(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	out, errOut, err := psql(t, p, p.secret(),
		"-c", "SELECT count(*) FROM orders",
		"-c", "DELETE FROM orders",
		"-c", "SELECT 'still alive'")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "100\n") || !strings.Contains(out, "still alive") {
		t.Fatalf("stdout %q: want the count and the query after the blocked one", out)
	}
	if !strings.Contains(errOut, "42501") || !strings.Contains(errOut, "jitgate: blocked by policy:") || !strings.Contains(errOut, "(rule test-rule)") {
		t.Fatalf("stderr %q: want 42501 jitgate: blocked by policy ... (rule test-rule)", errOut)
	}
	var n int
	adminQueryRow(t, "SELECT count(*) FROM orders", &n)
	if n != 100 {
		t.Fatalf("orders has %d rows after a blocked DELETE, want 100", n)
	}

	// The recording holds the statements, the verdicts and the result.
	evs := p.events(t)
	var sawBlocked, sawCount bool
	for i, ev := range evs {
		if ev.Type == record.Query && ev.Statement == "DELETE FROM orders" {
			if i+1 >= len(evs) || evs[i+1].Type != record.Verdict || evs[i+1].Allowed == nil || *evs[i+1].Allowed {
				t.Fatalf("DELETE not followed by a refusing verdict: %+v", evs[i+1:])
			}
			sawBlocked = true
		}
		if ev.Type == record.Rows && len(ev.Rows) == 1 && ev.Rows[0][0] != nil && *ev.Rows[0][0] == "100" {
			sawCount = true
		}
	}
	if !sawBlocked || !sawCount {
		t.Fatalf("recording lacks the blocked DELETE (%v) or the count row (%v): %+v", sawBlocked, sawCount, evs)
	}
}

func TestStartupRefusals(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	h, _ := p.host()
	cases := []struct {
		name, user, db, secret, want string
	}{
		{"wrong secret", p.grant.ID, "shop", "not-the-secret", "28P01"},
		{"empty secret", p.grant.ID, "shop", "", "28P01"},
		{"user is not the grant id", "postgres", "shop", p.secret(), "28000"},
		{"other database", p.grant.ID, "postgres", p.secret(), "28000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := pgconn.ParseConfig("sslmode=disable")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Host, cfg.User, cfg.Database, cfg.Password = h, c.user, c.db, c.secret
			cfg.Port = p.portNum(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := pgconn.ConnectConfig(ctx, cfg)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connection accepted")
			}
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != c.want || pe.Severity != "FATAL" {
				t.Fatalf("got %v, want FATAL %s", err, c.want)
			}
		})
	}
	// psql with a wrong secret is refused too.
	_, errOut, err := psql(t, p, "wrong", "-c", "SELECT 1")
	if err == nil || !strings.Contains(errOut, "password authentication failed") {
		t.Fatalf("psql with a wrong secret: err=%v stderr=%q", err, errOut)
	}
}

func TestPgxExtendedProtocol(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	c := p.pgx(t)
	ctx := context.Background()

	var total int
	if err := c.QueryRow(ctx, "SELECT sum(total)::int FROM orders WHERE user_id = $1", 1).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != 25500 {
		t.Fatalf("sum %d, want 25500", total)
	}
	_, err := c.Exec(ctx, "DELETE FROM orders WHERE id = $1", 1)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, "jitgate: blocked by policy:") {
		t.Fatalf("blocked DELETE via Parse: got %v, want 42501 jitgate: blocked by policy", err)
	}
	// Named statements, and the connection is still usable.
	if _, err := c.Prepare(ctx, "by_user", "SELECT count(*) FROM orders WHERE user_id = $1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var n int
		if err := c.QueryRow(ctx, "by_user", 2).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 50 {
			t.Fatalf("count %d, want 50", n)
		}
	}
	if _, err := c.Prepare(ctx, "bad", "DELETE FROM orders"); err == nil {
		t.Fatal("preparing a DELETE was accepted")
	}
	// A batch with a refused statement in the middle fails with the refusal, then
	// the connection is usable (pgx prepares the whole batch first).
	br := c.SendBatch(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{
		{SQL: "SELECT 1"}, {SQL: "DELETE FROM orders"}, {SQL: "SELECT 3"},
	}})
	_, err = br.Exec()
	br.Close()
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("batch: %v, want 42501", err)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the batch: %v", err)
	}
	var n int
	adminQueryRow(t, "SELECT count(*) FROM orders", &n)
	if n != 100 {
		t.Fatalf("orders has %d rows, want 100", n)
	}
}

// rawConn is an authenticated connection through the proxy spoken to message by
// message.
type rawConn struct {
	t  *testing.T
	fe *pgproto3.Frontend
	hj *pgconn.HijackedConn
}

func (p *proxy) raw(t *testing.T) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pg, err := pgconn.Connect(ctx, p.dsn(p.secret()))
	if err != nil {
		t.Fatal(err)
	}
	hj, err := pg.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return &rawConn{t: t, fe: hj.Frontend, hj: hj}
}

// roundTrip sends msgs and returns every message up to ReadyForQuery.
func (r *rawConn) roundTrip(msgs ...pgproto3.FrontendMessage) []pgproto3.BackendMessage {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
	_ = r.hj.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got []pgproto3.BackendMessage
	for {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("receive after %d messages: %v", len(got), err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			c := *m
			got = append(got, &c)
		case *pgproto3.DataRow:
			vals := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					vals[i] = append([]byte{}, v...)
				}
			}
			got = append(got, &pgproto3.DataRow{Values: vals})
		case *pgproto3.ReadyForQuery:
			return append(got, &pgproto3.ReadyForQuery{TxStatus: m.TxStatus})
		case *pgproto3.CommandComplete:
			got = append(got, &pgproto3.CommandComplete{CommandTag: append([]byte{}, m.CommandTag...)})
		case *pgproto3.RowDescription:
			rd := &pgproto3.RowDescription{}
			for _, f := range m.Fields {
				f.Name = append([]byte{}, f.Name...)
				rd.Fields = append(rd.Fields, f)
			}
			got = append(got, rd)
		default:
			got = append(got, m)
		}
	}
}

func errorsIn(msgs []pgproto3.BackendMessage) []*pgproto3.ErrorResponse {
	var out []*pgproto3.ErrorResponse
	for _, m := range msgs {
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			out = append(out, e)
		}
	}
	return out
}

func TestExtendedProtocolAttacks(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	r := p.raw(t)

	// The unnamed statement replaced between Parse and Execute: the allowed SELECT
	// is parsed, then a DELETE replaces it; Bind/Execute must not run the DELETE.
	got := r.roundTrip(
		&pgproto3.Parse{Query: "SELECT 1"},
		&pgproto3.Parse{Query: "DELETE FROM orders"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	errs := errorsIn(got)
	if len(errs) != 1 || errs[0].Code != "42501" || !strings.Contains(errs[0].Message, "blocked by policy") {
		t.Fatalf("replaced unnamed statement: got %+v", got)
	}
	if _, ok := got[len(got)-1].(*pgproto3.ReadyForQuery); !ok {
		t.Fatalf("no ReadyForQuery: %+v", got)
	}

	// In a second batch, the old unnamed statement is gone (PostgreSQL dropped it
	// when the refused Parse replaced it): Bind fails, nothing runs.
	got = r.roundTrip(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if errs := errorsIn(got); len(errs) != 1 || errs[0].Code != "26000" {
		t.Fatalf("bind after a refused parse: got %+v, want 26000", got)
	}

	// A named statement is checked at Parse; its later executions run what was parsed.
	got = r.roundTrip(
		&pgproto3.Parse{Name: "s1", Query: "SELECT count(*) FROM orders"},
		&pgproto3.Bind{PreparedStatement: "s1"},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	if errs := errorsIn(got); len(errs) != 0 {
		t.Fatalf("named statement: %+v", errs)
	}
	if !hasRow(got, "100") {
		t.Fatalf("named statement: no row 100 in %+v", got)
	}
	got = r.roundTrip(&pgproto3.Parse{Name: "s2", Query: "DELETE FROM orders"}, &pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if errs := errorsIn(got); len(errs) != 1 || errs[0].Code != "42501" {
		t.Fatalf("named DELETE: %+v", got)
	}

	// FunctionCall carries no SQL: always refused, the connection stays usable.
	got = r.roundTrip(&pgproto3.FunctionCall{Function: 1598 /* random() */, ResultFormatCode: 0})
	if errs := errorsIn(got); len(errs) != 1 || errs[0].Code != "42501" || !strings.Contains(errs[0].Message, "FunctionCall") {
		t.Fatalf("FunctionCall: %+v", got)
	}
	got = r.roundTrip(&pgproto3.Query{String: "SELECT 42"})
	if !hasRow(got, "42") {
		t.Fatalf("after FunctionCall: %+v", got)
	}

	// Multi-statement strings are judged whole.
	got = r.roundTrip(&pgproto3.Query{String: "SELECT 1; DELETE FROM orders"})
	if errs := errorsIn(got); len(errs) != 1 || errs[0].Code != "42501" || hasRow(got, "1") {
		t.Fatalf("multi-statement: %+v", got)
	}
	var n int
	adminQueryRow(t, "SELECT count(*) FROM orders", &n)
	if n != 100 {
		t.Fatalf("orders has %d rows, want 100", n)
	}
}

func TestBlockedStatementInTransactionAbortsIt(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	r := p.raw(t)
	got := r.roundTrip(&pgproto3.Query{String: "BEGIN"})
	if rfq := got[len(got)-1].(*pgproto3.ReadyForQuery); rfq.TxStatus != 'T' {
		t.Fatalf("BEGIN: status %c", rfq.TxStatus)
	}
	got = r.roundTrip(&pgproto3.Query{String: "DELETE FROM orders"})
	if errs := errorsIn(got); len(errs) != 1 || errs[0].Code != "42501" {
		t.Fatalf("blocked in tx: %+v", got)
	}
	// Like any error, the refusal aborts the transaction block: nothing around a
	// refused statement can commit.
	if rfq := got[len(got)-1].(*pgproto3.ReadyForQuery); rfq.TxStatus != 'E' {
		t.Fatalf("status after a refusal in a transaction: %c, want E", rfq.TxStatus)
	}
	got = r.roundTrip(&pgproto3.Query{String: "ROLLBACK"})
	if rfq := got[len(got)-1].(*pgproto3.ReadyForQuery); rfq.TxStatus != 'I' {
		t.Fatalf("ROLLBACK: status %c", rfq.TxStatus)
	}
}

func hasRow(msgs []pgproto3.BackendMessage, first string) bool {
	for _, m := range msgs {
		if d, ok := m.(*pgproto3.DataRow); ok && len(d.Values) > 0 && string(d.Values[0]) == first {
			return true
		}
	}
	return false
}

func TestReadGrantSessionIsReadOnly(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	c := p.pgx(t)
	ctx := context.Background()
	// A user-defined function that writes looks like a SELECT to any parser; the
	// read-only session makes PostgreSQL itself refuse the write.
	_, err := c.Exec(ctx, "SELECT sneaky_delete()")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || (pe.Code != "25006" && pe.Code != "42501") {
		t.Fatalf("sneaky write: got %v, want 25006 read_only_sql_transaction or a 42501 refusal", err)
	}
	var ro string
	if err := c.QueryRow(ctx, "SHOW default_transaction_read_only").Scan(&ro); err == nil && ro != "on" {
		t.Fatalf("default_transaction_read_only = %q, want on", ro)
	}
	var n int
	adminQueryRow(t, "SELECT count(*) FROM orders", &n)
	if n != 100 {
		t.Fatalf("orders has %d rows after the sneaky write, want 100", n)
	}
}

func TestExec(t *testing.T) {
	t.Parallel()
	o := maskAll
	o.op = "SELECT id, name, card_number, email FROM users ORDER BY id"
	p := startProxy(t, o)
	ctx := context.Background()
	res, err := p.eng.Exec(ctx, o.op)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Columns, ",") != "id,name,card_number,email" || len(res.Rows) != 2 || res.CommandTag != "SELECT 2" {
		t.Fatalf("result %+v", res)
	}
	if *res.Rows[0][1] != "alice" {
		t.Fatalf("unmasked column changed: %q", *res.Rows[0][1])
	}
	for _, row := range res.Rows {
		for _, v := range row {
			if v != nil {
				assertNoLeak(t, "exec", *v)
			}
		}
	}
	// Anything but the approved operation is refused.
	if _, err := p.eng.Exec(ctx, "SELECT 1"); !errors.Is(err, postgres.ErrBlocked) {
		t.Fatalf("other statement: %v, want ErrBlocked", err)
	}

	o = opts{access: spec.Read, op: "DELETE FROM orders"}
	p = startProxy(t, o)
	_, err = p.eng.Exec(ctx, o.op)
	if !errors.Is(err, postgres.ErrBlocked) || !strings.Contains(err.Error(), ":") {
		t.Fatalf("blocked exec: %v, want ErrBlocked with the reason", err)
	}
}

func TestDeadlineEndsLiveSession(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pg, err := pgconn.Connect(ctx, p.dsn(p.secret()))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	if _, err := pg.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// The grant deadline: the session layer cancels Serve's context.
	p.cancel()
	// The client sees the connection end: FATAL 57P01 when it could be written,
	// or the closed connection; either way the next query fails.
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	_, err = pg.Exec(rctx, "SELECT 2").ReadAll()
	if err == nil {
		t.Fatal("query after the deadline succeeded")
	}
	if rctx.Err() != nil {
		t.Fatalf("the connection did not end: %v", err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code != "57P01" {
		t.Fatalf("got %v, want 57P01 grant expired", err)
	}
	// Serve returned for every connection.
	waitFor(t, func() bool { return p.active.Load() == 0 })
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancelRequestIsForwarded(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	ctx := context.Background()
	pg, err := pgconn.Connect(ctx, p.dsn(p.secret()))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := pg.Exec(ctx, "SELECT pg_sleep(60)").ReadAll()
		done <- err
	}()
	// Cancel until the statement ends (the first cancel may arrive before it starts).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case err := <-done:
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Fatalf("got %v, want 57014 query_canceled", err)
			}
			return
		case <-tick.C:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = pg.CancelRequest(cctx)
			cancel()
		case <-timeout:
			t.Fatal("the cancel request did not reach the statement")
		}
	}
}

func TestRecordingFailureEndsSession(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read})
	ctx := context.Background()
	pg, err := pgconn.Connect(ctx, p.dsn(p.secret()))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	// The recording can no longer be written: the next statement must not run.
	if err := p.rec.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = pg.Exec(ctx, "SELECT 1").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "58030" || pe.Severity != "FATAL" {
		t.Fatalf("got %v, want FATAL 58030", err)
	}
	waitFor(t, func() bool { return p.active.Load() == 0 })
}

func TestTLSOffered(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Read, tls: selfSignedTLS(t)})
	out, errOut, err := psqlEnv(t, p, []string{"PGSSLMODE=require"}, "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "-c", "SELECT 'tls ok'")
	if err != nil || !strings.Contains(out, "tls ok") {
		t.Fatalf("psql over TLS: %v\n%s\n%s", err, out, errOut)
	}
	// Without TLS configured, sslmode=require is refused by the client ('N').
	q := startProxy(t, opts{access: spec.Read})
	_, errOut, err = psqlEnv(t, q, []string{"PGSSLMODE=require"}, "-c", "SELECT 1")
	if err == nil || !strings.Contains(errOut, "SSL") {
		t.Fatalf("sslmode=require without TLS: err=%v stderr=%q", err, errOut)
	}
}
