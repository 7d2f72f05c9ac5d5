package mask_test

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  mask.Config
		want string
	}{
		{mask.Config{Detectors: []string{"credit_card", "bogus_detector"}}, `"bogus_detector"`},
		{mask.Config{Columns: []string{"card_number"}}, `"card_number"`},
		{mask.Config{Columns: []string{"a.b.c.d"}}, `"a.b.c.d"`},
		{mask.Config{Columns: []string{"public..ssn"}}, `"public..ssn"`},
		{mask.Config{Columns: []string{`public."Users".ssn`}}, `"public.\"Users\".ssn"`},
		{mask.Config{Style: mask.StyleToken}, "token key"},
		{mask.Config{Style: mask.StyleToken, TokenKey: []byte("short")}, "token key"},
		{mask.Config{Style: mask.Style(9)}, "unknown style"},
	} {
		_, err := mask.New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, mask.ErrConfig) {
			t.Errorf("New(%+v) = %v, want an ErrConfig naming %s", c.cfg, err, c.want)
		}
	}
}

func TestParseStyle(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]mask.Style{"": mask.StyleFull, "full": mask.StyleFull, "Partial": mask.StylePartial, "token": mask.StyleToken} {
		got, err := mask.ParseStyle(in)
		if err != nil || got != want || got.String() != strings.ToLower(strings.TrimSpace(map[bool]string{true: "full", false: in}[in == ""])) {
			t.Errorf("ParseStyle(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := mask.ParseStyle("hash"); err == nil || !strings.Contains(err.Error(), `"hash"`) {
		t.Errorf("ParseStyle(hash) = %v", err)
	}
}

func TestColumnMasked(t *testing.T) {
	t.Parallel()
	m, err := mask.New(mask.Config{Columns: []string{"public.users.card_number", "*.email", "public.*.ssn", "users.phone", "billing.accounts.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Enabled() || !m.HasColumnRules() {
		t.Fatal("rules not enabled")
	}
	for _, c := range []struct {
		ref  mask.ColumnRef
		want bool
	}{
		{mask.ColumnRef{"public", "users", "card_number"}, true},
		{mask.ColumnRef{"PUBLIC", "Users", "CARD_NUMBER"}, true},
		{mask.ColumnRef{"other", "users", "card_number"}, false},
		{mask.ColumnRef{"public", "orders", "card_number"}, false},
		{mask.ColumnRef{"crm", "contacts", "email"}, true}, // *.email: any table, any schema
		{mask.ColumnRef{"public", "contacts", "emails"}, false},
		{mask.ColumnRef{"public", "employees", "ssn"}, true},
		{mask.ColumnRef{"hr", "employees", "ssn"}, false},
		{mask.ColumnRef{"any", "users", "phone"}, true},
		{mask.ColumnRef{"any", "people", "phone"}, false},
		{mask.ColumnRef{"billing", "accounts", "iban"}, true},
		{mask.ColumnRef{"billing", "invoices", "iban"}, false},
		// unknown parts match conservatively
		{mask.ColumnRef{"", "users", "card_number"}, true},
		{mask.ColumnRef{"", "", "card_number"}, true},
		{mask.ColumnRef{"", "", "ssn"}, true},
		{mask.ColumnRef{"", "orders", "note"}, false},
		{mask.ColumnRef{"", "users", ""}, true},
		{mask.ColumnRef{"", "orders", ""}, true}, // orders may have an email column
		{mask.ColumnRef{"", "orders", "memo"}, false},
		{mask.ColumnRef{"", "", "note"}, true}, // could be billing.accounts.note
	} {
		if got := m.ColumnMasked(c.ref); got != c.want {
			t.Errorf("ColumnMasked(%s) = %v, want %v", c.ref, got, c.want)
		}
	}
}

func TestStyles(t *testing.T) {
	t.Parallel()
	card := "pay 4111 1111 1111 1111 now"
	email := "to alice@example.com."
	for _, c := range []struct {
		style          mask.Style
		in, want       string
		wantRe, secret string
	}{
		{mask.StyleFull, card, "pay **** **** **** **** now", "", ""},
		{mask.StylePartial, card, "pay **** **** **** 1111 now", "", ""},
		{mask.StyleFull, email, "to *****@*******.***.", "", ""},
		{mask.StylePartial, email, "to *****@example.com.", "", ""},
		{mask.StylePartial, "ssn 123-45-6789", "ssn ***-**-****", "", ""},
		{mask.StyleToken, card, "", `^pay tok_[0-9a-f]{12} now$`, "4111"},
		{mask.StyleToken, email, "", `^to tok_[0-9a-f]{12}\.$`, "alice"},
	} {
		m, err := mask.New(mask.Config{Detectors: []string{"all"}, Style: c.style, TokenKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		got := string(m.Text([]byte(c.in)))
		if c.want != "" && got != c.want {
			t.Errorf("%s: %q -> %q, want %q", c.style, c.in, got, c.want)
		}
		if c.wantRe != "" && (!regexp.MustCompile(c.wantRe).MatchString(got) || strings.Contains(got, c.secret)) {
			t.Errorf("%s: %q -> %q, want /%s/", c.style, c.in, got, c.wantRe)
		}
	}
}

func TestTokenStyleIsDeterministicAndKeyed(t *testing.T) {
	t.Parallel()
	m1, _ := mask.New(mask.Config{Detectors: []string{"credit_card"}, Style: mask.StyleToken, TokenKey: testKey})
	m2, _ := mask.New(mask.Config{Detectors: []string{"credit_card"}, Style: mask.StyleToken, TokenKey: []byte("another key, 16+ bytes")})
	a := string(m1.Text([]byte("4111 1111 1111 1111")))
	b := string(m1.Text([]byte("4111-1111-1111-1111")))
	c := string(m1.Text([]byte("5555555555554444")))
	d := string(m2.Text([]byte("4111 1111 1111 1111")))
	if a != b {
		t.Errorf("same card, different layout: %q vs %q", a, b)
	}
	if a == c || a == d {
		t.Errorf("tokens collide: %q %q %q", a, c, d)
	}
}

func TestValueRedaction(t *testing.T) {
	t.Parallel()
	fields := []mask.Field{{Name: "c", Resolved: true, RelKind: 'r', Source: mask.ColumnRef{"public", "users", "c"}, TextLike: true}}
	for _, c := range []struct {
		style   mask.Style
		in      string
		want    string
		wantPfx string
	}{
		{mask.StyleFull, "4111111111111111", "********", ""},
		{mask.StyleFull, "7", "********", ""},
		{mask.StyleFull, "", "********", ""},
		{mask.StylePartial, "4111 1111 1111 1111", "********1111", ""},
		{mask.StylePartial, "alice@example.com", "********@example.com", ""},
		{mask.StylePartial, "1234", "********", ""}, // short values are masked too
		{mask.StylePartial, "123-45-6789", "********", ""},
		{mask.StyleToken, "4111111111111111", "", "tok_"},
	} {
		m, err := mask.New(mask.Config{Columns: []string{"users.c"}, Style: c.style, TokenKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		p := m.Plan(fields, nil)
		if p.Action(0) != mask.ActionRedact {
			t.Fatalf("not redacted: %s", p.Reason(0))
		}
		got := string(m.Value(p, 0, []byte(c.in)))
		if c.want != "" && got != c.want || c.wantPfx != "" && (!strings.HasPrefix(got, c.wantPfx) || len(got) != 16) {
			t.Errorf("%s %q -> %q", c.style, c.in, got)
		}
		if m.Value(p, 0, nil) != nil {
			t.Error("NULL became a value")
		}
		if m.Counts()["column"] == 0 {
			t.Error("column count not incremented")
		}
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	table := func(col string) mask.Field {
		return mask.Field{Name: col, Resolved: true, RelKind: 'r', Source: mask.ColumnRef{"public", "users", col}, TextLike: true}
	}
	computed := mask.Field{Name: "x", Computed: true, TextLike: true}
	rules := []string{"public.users.card_number"}
	lin := func(sql string, kind byte) *mask.Lineage {
		l, err := mask.Analyze(sql)
		if err != nil {
			t.Fatal(err)
		}
		for i := range l[0].Relations {
			l[0].Relations[i].Kind = kind
		}
		return &l[0]
	}
	R, S, P := mask.ActionRedact, mask.ActionScan, mask.ActionPass
	for _, c := range []struct {
		name      string
		columns   []string
		detectors []string
		fields    []mask.Field
		lin       *mask.Lineage
		want      []mask.Action
		through   bool
	}{
		{"nothing configured", nil, nil, []mask.Field{computed, table("a")}, nil, []mask.Action{P, P}, true},
		{"detectors only", nil, []string{"email"}, []mask.Field{computed, table("a")}, nil, []mask.Action{S, S}, false},
		{"table columns", rules, nil, []mask.Field{table("id"), table("card_number")}, nil, []mask.Action{P, R}, false},
		{"table columns, detectors", rules, []string{"all"}, []mask.Field{table("id"), table("card_number")}, nil, []mask.Action{S, R}, false},
		{"unmasked table column only", rules, nil, []mask.Field{table("id")}, nil, []mask.Action{P}, true},
		{"view column", rules, nil, []mask.Field{{Name: "cc", Resolved: true, RelKind: 'v', Source: mask.ColumnRef{"public", "v", "cc"}}}, nil, []mask.Action{R}, false},
		{"matview column", rules, nil, []mask.Field{{Name: "cc", Resolved: true, RelKind: 'm', Source: mask.ColumnRef{"public", "v", "cc"}}}, nil, []mask.Action{R}, false},
		{"foreign column", rules, nil, []mask.Field{{Name: "cc", Resolved: true, RelKind: 'f', Source: mask.ColumnRef{"public", "v", "cc"}}}, nil, []mask.Action{R}, false},
		{"unresolved column", rules, nil, []mask.Field{{Name: "cc"}}, nil, []mask.Action{R}, false},
		{"computed, no lineage", rules, nil, []mask.Field{computed}, nil, []mask.Action{R}, false},
		{"computed, unknown lineage", rules, nil, []mask.Field{computed}, &mask.Lineage{Unknown: true}, []mask.Action{R}, false},
		{"computed, lineage of another shape", rules, nil, []mask.Field{computed, computed}, lin("SELECT count(*) FROM users", 'r'), []mask.Action{R, R}, false},
		{"count(*)", rules, nil, []mask.Field{computed}, lin("SELECT count(*) FROM users", 0), []mask.Action{P}, true},
		{"upper(name), kinds resolved", rules, nil, []mask.Field{computed}, lin("SELECT upper(name) FROM users", 'r'), []mask.Action{P}, true},
		{"upper(name), kinds unknown", rules, nil, []mask.Field{computed}, lin("SELECT upper(name) FROM users", 0), []mask.Action{R}, false},
		{"upper(name) over a view", rules, nil, []mask.Field{computed}, lin("SELECT upper(name) FROM users", 'v'), []mask.Action{R}, false},
		{"reverse(card_number)", rules, []string{"all"}, []mask.Field{computed, table("id")}, lin("SELECT reverse(card_number), id FROM users", 'r'), []mask.Action{R, S}, false},
		{"star then computed", rules, nil, []mask.Field{table("id"), table("card_number"), computed}, lin("SELECT *, md5(card_number) FROM users", 'r'), []mask.Action{P, R, R}, false},
	} {
		m, err := mask.New(mask.Config{Columns: c.columns, Detectors: c.detectors})
		if err != nil {
			t.Fatal(err)
		}
		p := m.Plan(c.fields, c.lin)
		for i, w := range c.want {
			if p.Action(i) != w {
				t.Errorf("%s: column %d: %s (%s), want %s", c.name, i, p.Action(i), p.Reason(i), w)
			}
		}
		if p.Passthrough() != c.through {
			t.Errorf("%s: passthrough %v", c.name, p.Passthrough())
		}
		if p.Action(len(c.fields)) != mask.ActionRedact || p.Action(-1) != mask.ActionRedact {
			t.Errorf("%s: a column outside the plan is not redacted", c.name)
		}
	}
}

func TestValueScanAndPass(t *testing.T) {
	t.Parallel()
	m, _ := mask.New(mask.Config{Detectors: []string{"email"}})
	p := m.Plan([]mask.Field{{Name: "memo", Computed: true, TextLike: true}}, nil)
	in := []byte("contact alice@example.com")
	if out := m.Value(p, 0, in); bytes.Contains(out, []byte("alice")) {
		t.Fatalf("scan kept the email: %q", out)
	}
	clean := []byte("nothing")
	if out := m.Value(p, 0, clean); &out[0] != &clean[0] {
		t.Fatal("clean value was copied")
	}
	off, _ := mask.New(mask.Config{})
	pp := off.Plan([]mask.Field{{Name: "memo", Computed: true}}, nil)
	if out := off.Value(pp, 0, in); &out[0] != &in[0] || off.Enabled() {
		t.Fatal("pass changed the value")
	}
}

func TestSensitive(t *testing.T) {
	t.Parallel()
	m, err := mask.New(mask.Config{Columns: []string{"public.users.card_number"}, Detectors: []string{"email"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sql  string
		kind byte
		want bool
	}{
		{"SELECT 1 FROM users WHERE card_number::int = 0", 'r', true},
		{"SELECT id FROM users WHERE id = 1", 'r', false},
		{"SELECT id FROM users WHERE id = 1", 0, true}, // users could be a view
		{"SELECT o.id FROM orders o JOIN users u ON u.card_number = o.memo", 'r', true},
		{"SELECT id FROM users ORDER BY card_number::int", 'r', true},
		{"SELECT id FROM users GROUP BY id HAVING max(card_number::int) > 0", 'r', true},
		{"SELECT 1 FROM orders WHERE EXISTS (SELECT 1 FROM users WHERE card_number::int = 0)", 'r', true},
		{"SELECT count(*) FROM users", 'r', false},
		{"EXPLAIN ANALYZE SELECT card_number::int FROM users", 'r', true},
		{"EXPLAIN SELECT id FROM users", 'r', false},
		{"CREATE TABLE t AS SELECT card_number FROM users", 'r', true},
		{"COPY users TO STDOUT", 'r', true},
		{"COPY users (id) TO STDOUT", 'r', false},
		{"COPY (SELECT reverse(card_number) FROM users) TO STDOUT", 'r', true},
		{"DO $$BEGIN RAISE NOTICE '%', 1; END$$", 'r', true},
		{"CALL do_things()", 'r', true},
		{"EXECUTE stmt1", 'r', true},
		{"FETCH ALL FROM c", 'r', true},
		{"SELECT set_config('application_name', card_number, false) FROM users", 'r', true},
		{"SELECT pg_notify('ch', card_number) FROM users", 'r', true},
		{"UPDATE orders SET memo = 'x' WHERE memo = (SELECT card_number FROM users LIMIT 1)", 'r', true},
		{"UPDATE orders SET memo = 'x' WHERE id = 1", 'r', false},
		{"BEGIN", 0, false},
		{"SET statement_timeout = 1000", 0, false},
	} {
		lins, err := mask.Analyze(c.sql)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		lin := &lins[0]
		for i := range lin.Relations {
			lin.Relations[i].Kind = c.kind
		}
		if got := m.Sensitive(lin); got != c.want {
			t.Errorf("Sensitive(%s) = %v, want %v (reads %v)", c.sql, got, c.want, lin.Reads)
		}
		msg := []byte(`invalid input syntax for type integer: "4111111111111111", mail bob@example.com`)
		out := string(m.TextFor(lin, msg))
		if c.want && out != mask.SensitiveTextMarker || !c.want && (strings.Contains(out, "bob@") || !strings.Contains(out, "4111111111111111")) {
			t.Errorf("TextFor(%s) = %q", c.sql, out)
		}
	}
	if !m.Sensitive(nil) {
		t.Error("unknown statement is not sensitive")
	}
	none, _ := mask.New(mask.Config{Detectors: []string{"all"}})
	if none.Sensitive(nil) {
		t.Error("sensitive without column rules")
	}
}
