package guard_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestClassAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		class guard.Class
		name  string
		allow map[spec.Access]bool
	}{
		{guard.ClassRead, "read", map[spec.Access]bool{spec.Read: true, spec.Write: true, spec.Admin: true}},
		{guard.ClassWrite, "write", map[spec.Access]bool{spec.Write: true, spec.Admin: true}},
		{guard.ClassAdmin, "admin", map[spec.Access]bool{spec.Admin: true}},
		{guard.ClassForbidden, "forbidden", map[spec.Access]bool{}},
		{guard.Class(42), "class(42)", map[spec.Access]bool{}},
	}
	for _, tt := range tests {
		if got := tt.class.String(); got != tt.name {
			t.Errorf("String() = %q, want %q", got, tt.name)
		}
		for _, a := range []spec.Access{spec.AccessNone, spec.Read, spec.Write, spec.Admin, spec.Access(9)} {
			if got := tt.class.Allowed(a); got != tt.allow[a] {
				t.Errorf("%s.Allowed(%s) = %v, want %v", tt.class, a, got, tt.allow[a])
			}
		}
	}
	if !(guard.ClassRead < guard.ClassWrite && guard.ClassWrite < guard.ClassAdmin && guard.ClassAdmin < guard.ClassForbidden) {
		t.Fatal("classes are not ordered")
	}
	if c, err := guard.ParseClass("Admin"); err != nil || c != guard.ClassAdmin {
		t.Fatalf("ParseClass(Admin) = %v, %v", c, err)
	}
	if _, err := guard.ParseClass("root"); err == nil {
		t.Fatal("ParseClass accepted an unknown class")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  guard.Config
		want string
	}{
		{"no access", guard.Config{}, "allows nothing"},
		{"bad access", guard.Config{Access: spec.Access(7)}, "allows nothing"},
		{"empty kind", guard.Config{Access: spec.Read, DenyKinds: []string{" "}}, "empty statement kind"},
		{"empty function", guard.Config{Access: spec.Read, AllowFunctions: []string{""}}, "empty function name"},
	}
	for _, tt := range tests {
		if _, err := guard.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := guard.New(guard.ConfigFromSpec(spec.Guard{Access: spec.Write, DenyKinds: []string{"TRUNCATE"}})); err != nil {
		t.Fatal(err)
	}
}

// TestInputRefused: bytes the server and the guard might read differently
// are refused before parsing.
func TestInputRefused(t *testing.T) {
	t.Parallel()
	g, err := guard.New(guard.Config{Access: spec.Admin})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sql  string
		err  error
	}{
		{"invalid UTF-8", "SELECT '\xff'", guard.ErrInvalidUTF8},
		// SJIS 0x95 0x5c ends in a backslash byte: under client_encoding=SJIS
		// the server would read the quote differently. Not UTF-8: refused.
		{"SJIS trail byte", "SELECT '\x95\x5c'; DROP TABLE users; --'", guard.ErrInvalidUTF8},
		{"GBK trail byte", "SELECT '\xbf\x27'; DROP TABLE users; --'", guard.ErrInvalidUTF8},
		{"overlong slash", "SELECT '\xc0\xaf'", guard.ErrInvalidUTF8},
		{"NUL truncation", "SELECT 1\x00; DROP TABLE users", guard.ErrNUL},
		{"empty", "", guard.ErrEmpty},
		{"only whitespace", " \n\t", guard.ErrEmpty},
		{"only a comment", "/* x */", guard.ErrEmpty},
		{"only semicolons", ";;", guard.ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := guard.Classify(tt.sql); !errors.Is(err, tt.err) {
				t.Fatalf("Classify err = %v, want %v", err, tt.err)
			}
			v := g.Check(tt.sql)
			if errors.Is(tt.err, guard.ErrEmpty) {
				// No statement runs nothing (EmptyQueryResponse): Check allows it
				// as a read so pings work; Classify still reports ErrEmpty.
				if !v.Allowed || v.Classification.Class != guard.ClassRead || len(v.Classification.Statements) != 0 {
					t.Fatalf("Check = %+v, want an allowed empty read", v)
				}
				return
			}
			if v.Allowed || !strings.HasPrefix(v.Reason, "cannot parse SQL") {
				t.Fatalf("Check = %+v, want a parse refusal", v)
			}
		})
	}
}

func TestStatementDetails(t *testing.T) {
	t.Parallel()
	c, err := guard.Classify("  SELECT * FROM app.accounts a JOIN users USING (id) ;\n WITH x AS (SELECT 1) SELECT * FROM x, orders; DROP TABLE IF EXISTS app.old, t2")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Statements) != 3 || c.Class != guard.ClassAdmin {
		t.Fatalf("got %d statements, class %s", len(c.Statements), c.Class)
	}
	want := []struct {
		sql    string
		kind   string
		tables []string
	}{
		{"SELECT * FROM app.accounts a JOIN users USING (id)", "SELECT", []string{"app.accounts", "users"}},
		{"WITH x AS (SELECT 1) SELECT * FROM x, orders", "SELECT", []string{"orders"}},
		{"DROP TABLE IF EXISTS app.old, t2", "DROP TABLE", []string{"app.old", "t2"}},
	}
	for i, w := range want {
		s := c.Statements[i]
		if s.SQL != w.sql || s.Kind != w.kind || strings.Join(s.Tables, ",") != strings.Join(w.tables, ",") {
			t.Errorf("statement %d = %q %q %v, want %q %q %v", i, s.SQL, s.Kind, s.Tables, w.sql, w.kind, w.tables)
		}
		if len(s.Reasons) == 0 {
			t.Errorf("statement %d has no reasons", i)
		}
	}
	d, err := guard.Classify("DELETE FROM users")
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Statements[0]; !s.UnsafeWrite || s.Class != guard.ClassWrite || !contains(s.Reasons, "DELETE without WHERE") {
		t.Fatalf("unsafe delete: %+v", s)
	}
	f, err := guard.Classify("SELECT pg_read_file('/etc/passwd'), nextval('s')")
	if err != nil {
		t.Fatal(err)
	}
	if r := f.Statements[0].Reasons; len(r) < 2 || !strings.Contains(r[0], "pg_read_file") {
		t.Fatalf("reasons not strictest first: %q", r)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSessionRefusedStringLeavesNoState: a refused string's PREPARE,
// DEALLOCATE or DISCARD must not reach the session.
func TestSessionRefusedStringLeavesNoState(t *testing.T) {
	t.Parallel()
	g, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		t.Fatal(err)
	}
	s := g.NewSession()
	steps := []struct {
		sql     string
		allowed bool
	}{
		{"PREPARE a AS SELECT 1; DROP TABLE users", false}, // refused: a is not recorded
		{"EXECUTE a", false},
		{"PREPARE a AS SELECT 1", true},
		{"DEALLOCATE a; DROP TABLE users", false}, // refused: a stays
		{"EXECUTE a", true},
		{"DISCARD ALL; DROP TABLE users", false},
		{"EXECUTE a", true},
		{"PREPARE b AS SELECT * FROM users; DEALLOCATE a", true},
		{"EXECUTE a", false},
		{"EXECUTE b", true},
		{"DEALLOCATE ALL", true},
		{"EXECUTE b", false},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", true},
		{"FETCH c", true},
		{"CLOSE ALL", true},
		{"FETCH c", false},
	}
	for i, st := range steps {
		if v := s.Check(st.sql); v.Allowed != st.allowed {
			t.Fatalf("step %d %q: allowed = %v, want %v (%s)", i, st.sql, v.Allowed, st.allowed, v.Reason)
		}
	}
}

func TestCheckStartup(t *testing.T) {
	t.Parallel()
	base := func(extra ...string) map[string]string {
		m := map[string]string{"user": "agent", "database": "app"}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		params map[string]string
		db     string
		user   string
		want   string // "" = accepted
	}{
		{"plain", base(), "app", "agent", ""},
		{"psql-like", base("application_name", "psql", "client_encoding", "UTF8"), "app", "agent", ""},
		{"jdbc-like", base("DateStyle", "ISO", "TimeZone", "UTC", "extra_float_digits", "3", "client_encoding", "UTF8"), "app", "agent", ""},
		{"harmless options", base("options", "-c statement_timeout=5s --application_name=my\\ app -cwork_mem=64MB"), "app", "agent", ""},
		{"read-only on", base("options", "-c default_transaction_read_only=on"), "app", "agent", ""},
		{"replication false", base("replication", "false"), "app", "agent", ""},
		{"empty user", base("user", ""), "app", "agent", "empty user"},
		{"missing user", map[string]string{"database": "app"}, "app", "agent", "empty user"},
		{"empty database", base("database", ""), "app", "agent", "empty database"},
		{"missing database", map[string]string{"user": "agent"}, "app", "agent", "empty database"},
		{"other database", base("database", "postgres"), "app", "agent", "not the grant's database"},
		{"other user", base("user", "postgres"), "app", "agent", "not the grant's user"},
		{"case differs", base("database", "App"), "app", "agent", "not the grant's database"},
		{"grant names no database", base(), "", "agent", "names no user or database"},
		{"options role", base("options", "-c role=postgres"), "app", "agent", "role"},
		{"options role glued", base("options", "-crole=postgres"), "app", "agent", "role"},
		{"options long form", base("options", "--role=postgres"), "app", "agent", "role"},
		{"options dash name", base("options", "-c default-transaction-read-only=off"), "app", "agent", "read-only"},
		{"options escaped space", base("options", "-c application_name=x\\ -c\\ role=postgres"), "app", "agent", ""},
		{"options second switch", base("options", "-c application_name=x -c session_authorization=postgres"), "app", "agent", "role"},
		{"options other switch", base("options", "-D /tmp"), "app", "agent", "not allowed"},
		{"options dangling -c", base("options", "-c"), "app", "agent", "without a setting"},
		{"options search_path", base("options", "-c search_path=evil,public"), "app", "agent", "search_path"},
		{"options read-only off", base("options", "-c default_transaction_read_only=off"), "app", "agent", "read-only"},
		{"options scs off", base("options", "-c standard_conforming_strings=off"), "app", "agent", "standard_conforming_strings"},
		{"role parameter", base("role", "postgres"), "app", "agent", "role"},
		{"ROLE parameter", base("ROLE", "postgres"), "app", "agent", "role"},
		{"session_authorization parameter", base("session_authorization", "postgres"), "app", "agent", "role"},
		{"search_path parameter", base("search_path", "evil"), "app", "agent", "search_path"},
		{"SJIS", base("client_encoding", "SJIS"), "app", "agent", "UTF8"},
		{"GBK", base("client_encoding", "gbk"), "app", "agent", "UTF8"},
		{"SQL_ASCII", base("client_encoding", "SQL_ASCII"), "app", "agent", "UTF8"},
		{"read-only off", base("default_transaction_read_only", "off"), "app", "agent", "read-only"},
		{"replication", base("replication", "database"), "app", "agent", "replication"},
		{"custom setting", base("app.tenant_id", "7"), "app", "agent", "not on the guard's list"},
		{"protocol extension", base("_pq_.command_trigger", "x"), "app", "agent", "protocol extension"},
		{"empty key", base("", "x"), "app", "agent", "empty parameter name"},
	}
	g, err := guard.New(guard.Config{Access: spec.Read})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := g.CheckStartup(tt.params, tt.db, tt.user)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, guard.ErrStartup) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrStartup containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckServerParameter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"standard_conforming_strings", "on", true},
		{"standard_conforming_strings", "off", false},
		{"client_encoding", "UTF8", true},
		{"client_encoding", "SJIS", false},
		{"client_encoding", "BIG5", false},
		{"server_version", "15.8", true},
		{"TimeZone", "UTC", true},
	}
	for _, tt := range tests {
		if err := guard.CheckServerParameter(tt.name, tt.value); (err == nil) != tt.ok {
			t.Errorf("%s=%s: err = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
		}
	}
}
