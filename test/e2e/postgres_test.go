package e2e

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/test/shopdb"
)

// TestPostgresGrants drives one stack through the foundation's paths: allowed
// read, masking, blocked writes over both protocols, exec, connect, approvals,
// revocation and the audit chain.
func TestPostgresGrants(t *testing.T) {
	e := newEnv(t)
	agent := e.token("agent-7", "ai-agents")
	dba := e.token("alice", "dba")

	t.Run("allowed read through exec", func(t *testing.T) {
		out, errOut, code := e.run(agent, "exec", "--target", "orders-db", "--sql", "SELECT id, item FROM orders ORDER BY id")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"analytical engine", "compiler", "bombe", "(4 rows)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("masked columns and their disguises", func(t *testing.T) {
		for _, sql := range []string{
			"SELECT id, name, email, password_hash, card_number FROM users ORDER BY id",
			"SELECT encode(convert_to(card_number, 'UTF8'), 'hex') AS x FROM users",
			"SELECT reverse(card_number) AS x, upper(email) AS y FROM users",
			"SELECT u FROM users u",
		} {
			out, errOut, code := e.run(agent, "exec", "--target", "orders-db", "--format", "json", "--sql", sql)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", sql, code, errOut)
			}
			assertNoSecrets(t, sql, out)
		}
		// Unmasked columns still come through.
		out, _, _ := e.run(agent, "exec", "--target", "orders-db", "--format", "json", "--sql", "SELECT name FROM users ORDER BY id")
		if !strings.Contains(out, "Ada Lovelace") {
			t.Errorf("an unmasked column was masked:\n%s", out)
		}
	})

	t.Run("DELETE refused before a credential exists", func(t *testing.T) {
		_, errOut, code := e.run(agent, "exec", "--target", "orders-db", "--sql", "DELETE FROM orders")
		if code != 3 {
			t.Fatalf("exit %d, want 3 (denied): %s", code, errOut)
		}
		if !strings.Contains(errOut, "denied") {
			t.Errorf("stderr does not say denied: %s", errOut)
		}
	})

	t.Run("blocked DELETE over the simple protocol in a psql session", func(t *testing.T) {
		out, errOut, code := e.run(agent, "connect", "--target", "orders-db", "--quiet", "--",
			"psql", "-X", "-A", "-t", "-c", "DELETE FROM orders WHERE id = 1", "-c", "SELECT count(*) FROM orders")
		if !strings.Contains(errOut, "blocked by policy") {
			t.Fatalf("psql stderr lacks the block reason (exit %d): %s", code, errOut)
		}
		if strings.TrimSpace(out) != "4" {
			t.Fatalf("the connection should stay usable and the row stay: stdout %q", out)
		}
		if got := scalar(t, e, "shop", "SELECT count(*) FROM orders"); got != "4" {
			t.Fatalf("orders count after a blocked DELETE = %s, want 4", got)
		}
	})

	t.Run("blocked DELETE over the extended protocol (pgx)", func(t *testing.T) {
		conn := openSession(t, e, agent, "read")
		_, err := conn.Exec(context.Background(), "DELETE FROM orders WHERE id = $1", 1)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Fatalf("DELETE via Parse/Bind: err %v, want SQLSTATE 42501", err)
		}
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM orders WHERE id > $1", 0).Scan(&n); err != nil || n != 4 {
			t.Fatalf("after the block the connection must stay usable: n=%d err=%v", n, err)
		}
	})

	t.Run("psql session through connect", func(t *testing.T) {
		out, errOut, code := e.run(agent, "connect", "--target", "orders-db", "--quiet", "--", "psql", "-X", "-A", "-t", "-c", "SELECT item FROM orders WHERE id = 2")
		if code != 0 || strings.TrimSpace(out) != "compiler" {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
		}
	})

	t.Run("write waits for a DBA, then runs", func(t *testing.T) {
		sql := "INSERT INTO orders (user_id, item, amount) VALUES (2, 'e2e widget', 1.50)"
		cmd := exec.Command(jitgateBin, "exec", "--target", "test-db", "--sql", sql, "--reason", "e2e")
		cmd.Env = append(append([]string{}, e.cmdEnv...), "JITGATE_TOKEN="+agent)
		outBuf := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = outBuf, outBuf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		id := waitForPending(t, e, dba)
		// The requester cannot approve its own grant.
		if st, body := e.api(agent, "POST", "/v1/grants/"+id+"/approve", map[string]string{}); st != 403 {
			t.Fatalf("self-approval: status %d %v, want 403", st, body)
		}
		if _, errOut, code := e.run(dba, "approve", id, "--reason", "ok"); code != 0 {
			t.Fatalf("approve: exit %d: %s", code, errOut)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("approved exec failed: %v\n%s", err, outBuf.String())
		}
		if !strings.Contains(outBuf.String(), "INSERT 0 1") {
			t.Fatalf("exec output lacks the command tag:\n%s", outBuf.String())
		}
		if got := scalar(t, e, "shop_test", "SELECT count(*) FROM orders WHERE item = 'e2e widget'"); got != "1" {
			t.Fatalf("row count = %s, want 1", got)
		}
	})

	t.Run("a CI job files, leaves, and resumes after approval", func(t *testing.T) {
		sql := "UPDATE orders SET amount = amount + 1 WHERE user_id = 1"
		out, errOut, code := e.run(agent, "exec", "--no-wait", "--target", "test-db", "--sql", sql)
		if code != 0 {
			t.Fatalf("--no-wait: exit %d: %s", code, errOut)
		}
		var filed struct{ ID, State string }
		if err := json.Unmarshal([]byte(out), &filed); err != nil || filed.State != "pending" {
			t.Fatalf("--no-wait output %q: %v", out, err)
		}
		// The approver sees PostgreSQL's estimate of the rows the write touches.
		_, g := e.api(dba, "GET", "/v1/grants/"+filed.ID, nil)
		if est, ok := g["estimated_rows"].(float64); !ok || est < 1 {
			t.Errorf("approver view lacks a row estimate: %v", g["estimated_rows"])
		}
		if _, errOut, code := e.run(agent, "grants", "run", filed.ID); code != 1 || !strings.Contains(errOut, "waiting for approval") {
			t.Fatalf("running a pending grant: exit %d %s", code, errOut)
		}
		if _, errOut, code := e.run(dba, "approve", filed.ID); code != 0 {
			t.Fatalf("approve: %s", errOut)
		}
		if _, errOut, code := e.run(agent, "grants", "wait", filed.ID); code != 0 {
			t.Fatalf("grants wait: exit %d %s", code, errOut)
		}
		out, errOut, code = e.run(agent, "grants", "run", filed.ID)
		if code != 0 || !strings.Contains(out, "UPDATE 2") {
			t.Fatalf("grants run: exit %d\n%s\n%s", code, out, errOut)
		}
		// An exec grant runs once.
		if _, _, code := e.run(agent, "grants", "run", filed.ID); code == 0 {
			t.Fatal("an exec grant ran twice")
		}
	})

	t.Run("per-grant roles are gone after their grants end", func(t *testing.T) {
		if roles := e.perGrantRoles(); len(roles) != 0 {
			t.Fatalf("per-grant roles left behind: %v", roles)
		}
	})

	t.Run("audit chain verifies, and a tampered copy is caught", func(t *testing.T) {
		logPath := filepath.Join(e.dataDir, "audit.jsonl")
		out, errOut, code := e.run("", "audit", "verify", "--file", logPath)
		if code != 0 {
			t.Fatalf("verify: exit %d: %s %s", code, out, errOut)
		}
		raw, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) < 10 {
			t.Fatalf("only %d audit events", len(lines))
		}
		for _, want := range []string{"grant.requested", "grant.decided", "grant.approved", "credential.issued", "credential.revoked", "command.blocked", "session.ended"} {
			if !strings.Contains(string(raw), want) {
				t.Errorf("audit log has no %s event", want)
			}
		}
		lines[4] = strings.Replace(lines[4], "agent-7", "agent-8", 1)
		if !strings.Contains(lines[4], "agent-8") {
			lines[4] = strings.Replace(lines[4], `"seq":5`, `"seq":55`, 1)
		}
		tampered := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(tampered, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, code = e.run("", "audit", "verify", "--file", tampered)
		if code != 1 || !strings.Contains(errOut, "line 5") {
			t.Fatalf("tampered log: exit %d, stderr %q; want exit 1 naming line 5", code, errOut)
		}
	})
}

// TestSessionExpiry: the proxy itself ends a live session at the grant's deadline.
func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	agent := e.token("agent-9", "ai-agents")
	st, body := e.api(agent, "POST", "/v1/grants", map[string]any{"target": "orders-db", "mode": "session", "access": "read", "ttl": "3s"})
	if st != 201 {
		t.Fatalf("request: %d %v", st, body)
	}
	id := body["id"].(string)
	st, sess := e.api(agent, "POST", "/v1/grants/"+id+"/session", nil)
	if st != 200 {
		t.Fatalf("session: %d %v", st, sess)
	}
	expires, err := time.Parse(time.RFC3339Nano, sess["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	conn := connectPgx(t, sess)
	ctx := context.Background()
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Keep querying until the proxy cuts the connection.
	var ended time.Time
	for time.Now().Before(expires.Add(10 * time.Second)) {
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			ended = time.Now()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ended.IsZero() {
		t.Fatal("the session outlived its deadline by 10s")
	}
	if late := ended.Sub(expires); late > time.Second {
		t.Fatalf("session ended %s after the deadline, want within 1s", late)
	}
	if ended.Before(expires.Add(-time.Second)) {
		t.Fatalf("session ended %s before the deadline", expires.Sub(ended))
	}
	// The grant ends and its role is dropped.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		_, g := e.api(agent, "GET", "/v1/grants/"+id, nil)
		if g["state"] == "ended" && len(e.perGrantRoles()) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, g := e.api(agent, "GET", "/v1/grants/"+id, nil)
	t.Fatalf("after expiry: grant %v, roles %v", g, e.perGrantRoles())
}

// TestTokensRefused: the broker refuses tokens that are expired, from an issuer
// the policy does not list, or for another audience, with 401 and a reason.
func TestTokensRefused(t *testing.T) {
	e := newEnv(t)
	foreign, stop, err := startForeignIssuer()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	expired, err := e.issuer.Sign(map[string]any{"sub": "agent", "aud": "jitgate", "groups": []string{"ai-agents"},
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	wrongAud, _ := e.issuer.Token("agent", []string{"ai-agents"}, "some-other-api", nil)
	foreignTok, _ := foreign.Token("agent", []string{"ai-agents"}, "jitgate", nil)
	for _, tc := range []struct{ name, tok, want string }{
		{"expired", expired, "expired"},
		{"foreign issuer", foreignTok, "issuer"},
		{"wrong audience", wrongAud, "audience"},
		{"garbage", "not.a.token", ""},
		{"missing", "", "missing bearer token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := e.api(tc.tok, "POST", "/v1/grants", map[string]any{"target": "orders-db", "sql": "SELECT 1"})
			if st != 401 {
				t.Fatalf("status %d, want 401: %v", st, body)
			}
			msg := body["error"].(map[string]any)["message"].(string)
			if !strings.Contains(strings.ToLower(msg), tc.want) {
				t.Fatalf("message %q does not mention %q", msg, tc.want)
			}
		})
	}
	// Bad input gets 4xx and leaves no grant behind.
	good := e.token("agent-1", "ai-agents")
	for _, tc := range []struct {
		name string
		body any
		code int
	}{
		{"unknown target", map[string]any{"target": "nope", "sql": "SELECT 1"}, 400},
		{"unknown field", map[string]any{"target": "orders-db", "sql": "SELECT 1", "sudo": true}, 400},
		{"oversize", map[string]any{"target": "orders-db", "sql": "SELECT '" + strings.Repeat("x", 2<<20) + "'"}, 413},
	} {
		st, body := e.api(good, "POST", "/v1/grants", tc.body)
		if st != tc.code {
			t.Errorf("%s: status %d, want %d: %v", tc.name, st, tc.code, body)
		}
	}
	if _, body := e.api(good, "GET", "/v1/grants", nil); len(body["grants"].([]any)) != 0 {
		t.Fatalf("bad requests left grants behind: %v", body["grants"])
	}
}

func assertNoSecrets(t *testing.T, sql, out string) {
	t.Helper()
	var secrets []string
	secrets = append(secrets, shopdb.Emails...)
	secrets = append(secrets, shopdb.Hashes...)
	for _, c := range shopdb.Cards {
		secrets = append(secrets, c, strings.NewReplacer(" ", "", "-", "").Replace(c))
	}
	for _, s := range secrets {
		forms := map[string]string{"raw": s, "hex": hex.EncodeToString([]byte(s)), "base64": base64.StdEncoding.EncodeToString([]byte(s)), "reversed": reverse(s), "upper": strings.ToUpper(s)}
		for form, v := range forms {
			if strings.Contains(strings.ToLower(out), strings.ToLower(v)) {
				t.Errorf("%s: the %s form of %q reached the client:\n%s", sql, form, s, out)
			}
		}
	}
	if regexp.MustCompile(`\d{13,}`).MatchString(strings.NewReplacer(" ", "", "-", "").Replace(out)) {
		t.Errorf("%s: a long digit run reached the client:\n%s", sql, out)
	}
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

func scalar(t *testing.T, e *env, db, sql string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-A", "-t", e.pg.AdminDSN(db), "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func waitForPending(t *testing.T, e *env, approver string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, body := e.api(approver, "GET", "/v1/grants?state=pending", nil)
		if gs, _ := body["grants"].([]any); len(gs) > 0 {
			return gs[0].(map[string]any)["id"].(string)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no pending grant appeared")
	return ""
}

func openSession(t *testing.T, e *env, tok, access string) *pgx.Conn {
	t.Helper()
	st, body := e.api(tok, "POST", "/v1/grants", map[string]any{"target": "orders-db", "mode": "session", "access": access, "ttl": "1m"})
	if st != 201 {
		t.Fatalf("request session: %d %v", st, body)
	}
	id := body["id"].(string)
	st, sess := e.api(tok, "POST", "/v1/grants/"+id+"/session", nil)
	if st != 200 {
		t.Fatalf("open session: %d %v", st, sess)
	}
	conn := connectPgx(t, sess)
	t.Cleanup(func() { e.api(tok, "POST", "/v1/grants/"+id+"/end", nil) })
	return conn
}

func connectPgx(t *testing.T, sess map[string]any) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.User, cfg.Password, cfg.Database = sess["host"].(string), sess["user"].(string), sess["password"].(string), sess["database"].(string)
	var port int
	for _, c := range sess["port"].(string) {
		port = port*10 + int(c-'0')
	}
	cfg.Port = uint16(port)
	cfg.TLSConfig = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to the proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
