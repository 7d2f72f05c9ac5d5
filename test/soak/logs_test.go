package soak

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jitgate/jitgate/test/soak/harness"
)

// notAboutAGrant are the only log messages allowed without a grant attribute:
// process start-up and issuer discovery, which happen outside any grant.
var notAboutAGrant = []string{
	"broker listening",
	"metrics listening",
	"identity: oidc discovery done",
	"identity: jwks fetched",
}

var logAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// TestEveryGrantLogLineNamesItsGrant runs a session grant (with a blocked
// statement), an allowed exec grant and an approved exec grant through a
// broker at debug level, then reads everything the broker and its proxies
// wrote: each line must carry grant=<one of ours>, except the listed
// start-up lines; and both the broker and the proxies must have said
// something about every grant.
func TestEveryGrantLogLineNamesItsGrant(t *testing.T) {
	t.Parallel()
	s := harness.Start(t, harness.Options{Bin: bin, LogLevel: "debug", Metrics: true})
	ctx := context.Background()
	agent, dba := s.Token("agent-l", "ai-agents"), s.Token("alice", "dba")
	var ids []string

	sess, err := s.OpenSession(agent, "orders-db", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, sess.GrantID)
	conn, err := pgx.Connect(ctx, sess.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM orders"); err == nil {
		t.Fatal("DELETE was not blocked")
	}
	conn.Close(ctx)
	if code, g, err := s.API(agent, "POST", "/v1/grants/"+sess.GrantID+"/end", nil); err != nil || code != 200 {
		t.Fatalf("end: %d %v %v", code, g, err)
	}

	run := func(target, sql string, approver string) {
		t.Helper()
		code, g, err := s.API(agent, "POST", "/v1/grants", map[string]any{"target": target, "sql": sql})
		if err != nil || (code != 201 && code != 202) {
			t.Fatalf("request %s: %d %v %v", sql, code, g, err)
		}
		id := g["id"].(string)
		ids = append(ids, id)
		if approver != "" {
			if code, g, err := s.API(approver, "POST", "/v1/grants/"+id+"/approve", map[string]any{"reason": "ok"}); err != nil || code != 200 {
				t.Fatalf("approve: %d %v %v", code, g, err)
			}
		}
		if code, g, err := s.API(agent, "POST", "/v1/grants/"+id+"/run", nil); err != nil || code != 200 {
			t.Fatalf("run %s: %d %v %v", sql, code, g, err)
		}
	}
	run("orders-db", "SELECT count(*) FROM orders", "")
	run("test-db", "UPDATE orders SET amount = amount WHERE id = 4", dba)
	s.Stop()

	brokerSaid, proxySaid := map[string]int{}, map[string]int{}
	lines := strings.Split(strings.TrimSpace(s.Logs.String()), "\n")
	for _, line := range lines {
		attrs := map[string]string{}
		for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
			if _, dup := attrs[m[1]]; !dup {
				attrs[m[1]] = strings.Trim(m[2], `"`)
			}
		}
		if attrs["time"] == "" || attrs["level"] == "" || attrs["msg"] == "" {
			t.Errorf("not a structured log line: %q", line)
			continue
		}
		id, ok := attrs["grant"]
		if !ok {
			if !slices.Contains(notAboutAGrant, attrs["msg"]) {
				t.Errorf("log line without grant=: %q", line)
			}
			continue
		}
		if !slices.Contains(ids, id) {
			t.Errorf("log line names grant %q, not one of ours %v: %q", id, ids, line)
		}
		if _, fromProxy := attrs["proxy"]; fromProxy {
			proxySaid[id]++
		} else {
			brokerSaid[id]++
		}
	}
	for _, id := range ids {
		if brokerSaid[id] == 0 || proxySaid[id] == 0 {
			t.Errorf("grant %s: %d broker and %d proxy log lines, want both > 0", id, brokerSaid[id], proxySaid[id])
		}
	}
	if len(lines) < 3*len(ids) {
		t.Errorf("only %d log lines for %d grants at debug level", len(lines), len(ids))
	}
}
