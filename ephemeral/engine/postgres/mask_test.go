package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestMaskingThroughPsql(t *testing.T) {
	t.Parallel()
	p := startProxy(t, maskAll)
	queries := []string{
		"SELECT * FROM users ORDER BY id",
		"SELECT u.card_number AS c, u.email AS e FROM users u",
		"SELECT reverse(card_number), encode(convert_to(card_number, 'UTF8'), 'hex') FROM users",
		"SELECT encode(convert_to(email, 'UTF8'), 'base64'), upper(email), substr(card_number, 1, 8) || substr(card_number, 9) FROM users",
		"SELECT string_agg(card_number, ',') FROM users",
		"SELECT row_to_json(u) FROM users u",
		"SELECT x FROM (SELECT card_number AS x FROM users) s",
		"SELECT cn, contact, upper(cn) FROM v_users",
		"WITH c AS (SELECT card_number FROM users) SELECT * FROM c",
		"SELECT card_number FROM users UNION ALL SELECT email FROM users",
	}
	for _, q := range queries {
		out, errOut, err := psql(t, p, p.secret(), "-c", q)
		if err != nil && !strings.Contains(errOut, "ERROR") {
			t.Fatalf("%s: %v %s", q, err, errOut)
		}
		assertNoLeak(t, q, out+errOut)
	}
	// A cursor's rows come from FETCH, whose text says nothing about the source: the
	// RowDescription's table OID does.
	out, errOut, err := psql(t, p, p.secret(), "-c", "BEGIN", "-c", "DECLARE cur CURSOR FOR SELECT card_number FROM users", "-c", "FETCH ALL cur", "-c", "COMMIT")
	if err != nil || strings.Count(out, "\n") < 4 {
		t.Fatalf("cursor: %v %q %s", err, out, errOut)
	}
	assertNoLeak(t, "cursor", out)

	// Unmasked columns pass, plain or computed from a table (relation kinds resolved
	// through the catalog).
	for q, want := range map[string]string{
		"SELECT name FROM users ORDER BY id":                "alice\nbob\n",
		"SELECT upper(name), id + 1 FROM users ORDER BY id": "ALICE|2\nBOB|3\n",
	} {
		out, errOut, err := psql(t, p, p.secret(), "-c", q)
		if err != nil || out != want {
			t.Errorf("%s: %q %v %s, want %q", q, out, err, errOut, want)
		}
	}
	// The recording holds masked rows only.
	evs := p.events(t)
	var rows int
	for _, ev := range evs {
		for _, r := range ev.Rows {
			rows++
			for _, v := range r {
				if v != nil {
					assertNoLeak(t, "recording", *v)
				}
			}
		}
	}
	if rows == 0 {
		t.Fatal("no rows recorded")
	}
}

func TestMaskingPgxBinaryAndSideChannels(t *testing.T) {
	t.Parallel()
	p := startProxy(t, maskAll)
	c := p.pgx(t)
	ctx := context.Background()

	// Extended protocol, binary results where pgx asks for them (int8 card_num).
	rows, err := c.Query(ctx, "SELECT id, card_number, email, card_num FROM users WHERE id = $1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if v != nil {
				assertNoLeak(t, "binary row", strings.TrimSpace(strings.ReplaceAll(toString(v), " ", "")))
			}
		}
		if vals[0] != int32(1) {
			t.Fatalf("unmasked int column: %#v", vals[0])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The redacted column is announced as text.
	fds := rows.FieldDescriptions()
	if fds[1].DataTypeOID != 25 || fds[2].DataTypeOID != 25 {
		t.Fatalf("redacted columns announced as %d/%d, want text (25)", fds[1].DataTypeOID, fds[2].DataTypeOID)
	}

	// ErrorResponse echoing a value.
	_, err = c.Exec(ctx, "SELECT card_number::int FROM users WHERE id = 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("cast error: %v", err)
	}
	assertNoLeak(t, "error", pe.Message+pe.Detail+pe.Where)
	// RAISE NOTICE.
	var notices []string
	cfg, _ := pgx.ParseConfig(p.dsn(p.secret()))
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	nc, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close(ctx)
	if _, err := nc.Exec(ctx, "SELECT leak_notice()"); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || !strings.HasPrefix(notices[0], "card is ") {
		t.Fatalf("notices %q", notices)
	}
	assertNoLeak(t, "notice", strings.Join(notices, "\n"))
	// pg_notify → NotificationResponse.
	if _, err := nc.Exec(ctx, "LISTEN ch"); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Exec(ctx, "SELECT pg_notify('ch', card_number || ' ' || email) FROM users WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := nc.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "ch" || n.Payload == "" {
		t.Fatalf("notification %+v", n)
	}
	assertNoLeak(t, "notification", n.Payload)
	// set_config is refused by the guard; ParameterStatus values still pass the
	// detectors (here a value the client set itself).
	if _, err := nc.Exec(ctx, "SELECT set_config('application_name', (SELECT card_number FROM users WHERE id = 1), false)"); !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("set_config: %v, want 42501", err)
	}
	if _, err := nc.Exec(ctx, "SET application_name = '"+card1+"'"); err != nil {
		t.Fatal(err)
	}
	if got := nc.PgConn().ParameterStatus("application_name"); got == "" || got == card1 {
		t.Fatalf("application_name ParameterStatus %q: want it masked", got)
	}

	// COPY TO STDOUT is refused while column rules apply; the connection stays usable.
	_, err = nc.PgConn().CopyTo(ctx, &strings.Builder{}, "COPY users TO STDOUT")
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("COPY TO STDOUT: %v, want 42501", err)
	}
	var one int
	if err := nc.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}

	for _, ev := range p.events(t) {
		if ev.Type == record.Error || ev.Type == record.Notice {
			assertNoLeak(t, "recorded "+string(ev.Type), ev.Error+ev.Tag)
		}
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return strings.TrimSpace(strings.Trim(strings.ReplaceAll(fmtAny(v), "\n", ""), "{}"))
}

func TestColumnRulesWithoutDetectorsWithholdEchoingText(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{access: spec.Admin, columns: []string{"public.users.card_number"}})
	ctx := context.Background()
	var notices []string
	cfg, err := pgx.ParseConfig(p.dsn(p.secret()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "SELECT card_number::int FROM users WHERE id = 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "22") || !strings.Contains(pe.Message, "withheld") {
		t.Fatalf("cast error: %v, want class 22, withheld", err)
	}
	assertNoLeak(t, "error", pe.Message+pe.Detail)
	if _, err := c.Exec(ctx, "SELECT leak_notice()"); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "withheld") {
		t.Fatalf("notices %q, want one withheld", notices)
	}
	// Errors that cannot echo values still say what went wrong.
	_, err = c.Exec(ctx, "SELECT * FROM no_such_table")
	if !errors.As(err, &pe) || pe.Code != "42P01" || !strings.Contains(pe.Message, "no_such_table") {
		t.Fatalf("undefined table: %v", err)
	}
}
