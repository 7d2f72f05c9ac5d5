package main

// Tests of `jitgate mcp`: the SDK's own client drives the server, in memory,
// over stdio (the real binary) and over streamable HTTP, against a real
// `jitgate dev` (its broker, dev issuer and ephemeral proxies) and a real
// PostgreSQL with the shop database.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/jitgate/jitgate/broker/httpapi"
	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/sshtest"
	teststack "github.com/jitgate/jitgate/test/stack"
)

// The jitgate binary, built once for the tests that need a real `jitgate dev`
// (its local launcher starts proxies from its own executable).
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func jitgateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "jitgate-cmd-test-"); binErr != nil {
			return
		}
		binPath, binErr = teststack.Build(binDir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// devStack is PostgreSQL with the shop databases and `jitgate dev` with the
// shop policy.
type devStack struct {
	t      *testing.T
	broker string
	policy string
	pol    *policy.Policy
	logs   *lockedBuffer
	env    []string
}

func startDev(t *testing.T) *devStack {
	t.Helper()
	jitgateBinary(t) // build while PostgreSQL starts
	pg := teststack.StartShop(t)
	return startDevPolicy(t, shopdb.PolicyFor(pg.Addr()), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres"))
}

// startDevPolicy runs `jitgate dev` with policyText and extra environment.
func startDevPolicy(t *testing.T, policyText string, env ...string) *devStack {
	t.Helper()
	bin := jitgateBinary(t)
	dir := t.TempDir()
	d := &devStack{t: t, policy: filepath.Join(dir, "policy.yaml"), logs: &lockedBuffer{}}
	if err := os.WriteFile(d.policy, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if d.pol, err = policy.Load(d.policy); err != nil {
		t.Fatal(err)
	}
	listen := freeLoopbackAddr(t)
	d.broker = "http://" + listen
	d.env = append(append(os.Environ(), env...), "JITGATE_BROKER="+d.broker)
	p := teststack.StartProcess(t, teststack.ProcessConfig{Bin: bin, Env: d.env, Logs: d.logs,
		Args: []string{"dev", "--policy", d.policy, "--listen", listen, "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn"}})
	teststack.WaitHealthy(t, d.broker+"/healthz", p.Exited())
	return d
}

// token mints a token from the dev issuer.
func (d *devStack) token(sub string, groups ...string) string {
	d.t.Helper()
	resp, err := http.PostForm(d.broker+"/dev/oidc/token", url.Values{"sub": {sub}, "groups": {strings.Join(groups, ",")}, "aud": {"jitgate"}})
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.IDToken == "" {
		d.t.Fatalf("dev token: status %d, %v", resp.StatusCode, err)
	}
	return out.IDToken
}

// api calls the broker as tok.
func (d *devStack) api(tok, method, path string, body any, out any) int {
	d.t.Helper()
	code, raw, err := teststack.Call(d.broker, tok, method, path, body)
	if err != nil {
		d.t.Fatal(err)
	}
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return code
}

// pendingGrant waits until approver sees exactly one pending grant and returns its id.
func (d *devStack) pendingGrant(approver string) string {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var out struct {
			Grants []struct {
				ID string `json:"id"`
			} `json:"grants"`
		}
		d.api(approver, "GET", "/v1/grants?state=pending", nil, &out)
		if len(out.Grants) == 1 {
			return out.Grants[0].ID
		}
		if len(out.Grants) > 1 {
			d.t.Fatalf("%d pending grants, want 1", len(out.Grants))
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatal("no pending grant appeared")
	return ""
}

// progressLog collects progress notifications.
type progressLog struct {
	mu   sync.Mutex
	msgs []string
}

func (p *progressLog) add(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, req.Params.Message)
}

func (p *progressLog) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.msgs)
}

// connectMCP serves newMCPServer(cfg) in memory and returns a connected client.
func connectMCP(t *testing.T, cfg mcpConfig, progress *progressLog) *mcp.ClientSession {
	t.Helper()
	srv, err := newMCPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, ct := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := &mcp.ClientOptions{}
	if progress != nil {
		opts.ProgressNotificationHandler = progress.add
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close(); ss.Wait() })
	return cs
}

// call calls a tool and decodes its structured outcome; raw is the whole
// result as JSON (content and structured content), for leak checks.
func call[T any](t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any, progressToken any) (T, *mcp.CallToolResult, string) {
	t.Helper()
	params := &mcp.CallToolParams{Name: tool, Arguments: args}
	if progressToken != nil {
		params.SetProgressToken(progressToken)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", tool, err)
	}
	raw, _ := json.Marshal(res)
	var out T
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: structured content %s: %v", tool, b, err)
	}
	// The text content carries the same JSON for clients that ignore structuredContent.
	if len(res.Content) == 0 {
		t.Fatalf("%s: no text content", tool)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || !json.Valid([]byte(tc.Text)) {
		t.Fatalf("%s: first content is not JSON text: %#v", tool, res.Content[0])
	}
	return out, res, string(raw)
}

func TestMCPListTools(t *testing.T) {
	t.Parallel()
	cs := connectMCP(t, mcpConfig{Broker: "http://127.0.0.1:1", Tokens: staticToken("x")}, nil)
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	required := map[string][]string{
		toolListTargets: nil,
		toolSQLQuery:    {"target", "sql", "reason"},
		toolGrantStatus: {"grant_id"},
		toolSSHExec:     {"target", "command", "reason"},
		toolKubectlExec: {"target", "namespace", "pod", "command", "reason"},
		toolHTTPRequest: {"target", "method", "path", "reason"},
		toolReadConfig:  {"target", "reason"},
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		want, ok := required[tool.Name]
		if !ok {
			t.Errorf("unexpected tool %s", tool.Name)
			continue
		}
		schema := tool.InputSchema.(map[string]any)
		var got []string
		if r, ok := schema["required"].([]any); ok {
			for _, s := range r {
				got = append(got, s.(string))
			}
		}
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: required %v, want %v", tool.Name, got, want)
		}
		if tool.Description == "" || tool.OutputSchema == nil {
			t.Errorf("%s: no description or output schema", tool.Name)
		}
	}
	if len(names) != len(required) {
		t.Errorf("tools %v, want %d tools", names, len(required))
	}
}

// TestMCPAgainstDev is the main scenario: a model's tool calls against a real
// jitgate dev and PostgreSQL.
func TestMCPAgainstDev(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	agent := d.token("agent-1", "ai-agents")
	dba := d.token("alice", "dba")
	cfg := mcpConfig{Broker: d.broker, Tokens: staticToken(agent), Policy: d.pol, ApprovalWait: 2 * time.Minute, ApproveURL: d.broker + "/ui"}
	cs := connectMCP(t, cfg, nil)

	t.Run("list_targets from the broker", func(t *testing.T) {
		out, res, _ := call[listTargetsOut](t, cs, toolListTargets, map[string]any{}, nil)
		if res.IsError || out.State != "ok" || out.Source != "broker" {
			t.Fatalf("%+v", out)
		}
		if out.Identity == nil || out.Identity.Issuer != "dev" || out.Identity.Subject != "agent-1" || !slices.Contains(out.Identity.Groups, "ai-agents") {
			t.Fatalf("identity %+v", out.Identity)
		}
		got := map[string][]accessJSON{}
		for _, tg := range out.Targets {
			got[tg.Name] = tg.Access
			if tg.Kind != "postgres" || tg.Tool != toolSQLQuery {
				t.Errorf("%s: kind %s tool %s", tg.Name, tg.Kind, tg.Tool)
			}
		}
		if a := got["orders-db"]; len(a) != 1 || a[0].Level != "read" || a[0].Effect != "allow" || a[0].Rule != "agents-read-orders" {
			t.Errorf("orders-db access %+v", a)
		}
		// write needs a dba; read is covered by the same rule (write covers read), also with approval.
		a := got["test-db"]
		if len(a) != 2 || a[1].Level != "write" || a[1].Effect != "approve" || !slices.Equal(a[1].Approvers, []string{"dba"}) || a[1].Quorum != 1 {
			t.Errorf("test-db access %+v", a)
		}
		// Someone outside ai-agents may ask for nothing.
		other := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(d.token("bob", "sales")), Policy: d.pol}, nil)
		out, _, _ = call[listTargetsOut](t, other, toolListTargets, map[string]any{}, nil)
		if out.State != "ok" || len(out.Targets) != 0 {
			t.Errorf("bob sees %+v", out.Targets)
		}
	})

	t.Run("list_targets without a local policy asks the broker", func(t *testing.T) {
		nop := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent)}, nil)
		out, res, _ := call[listTargetsOut](t, nop, toolListTargets, map[string]any{}, nil)
		if res.IsError || out.State != "ok" || out.Source != "broker" || len(out.Targets) != 2 {
			t.Fatalf("%+v", out)
		}
	})

	t.Run("masked query", func(t *testing.T) {
		out, res, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{
			"target": "orders-db", "sql": "SELECT id, name, email, card_number, password_hash FROM users ORDER BY id", "reason": "debug signup bug"}, nil)
		if res.IsError || out.State != "ok" || len(out.Rows) != 3 || out.Tag != "SELECT 3" {
			t.Fatalf("%s", raw)
		}
		if !strings.HasPrefix(out.GrantID, "g_") || out.Recording == "" {
			t.Fatalf("grant %q recording %q", out.GrantID, out.Recording)
		}
		if _, err := os.Stat(out.Recording); err != nil {
			t.Errorf("recording: %v", err)
		}
		if *out.Rows[0][1] != "Ada Lovelace" {
			t.Errorf("unmasked column changed: %q", *out.Rows[0][1])
		}
		for _, secret := range slices.Concat(shopdb.Cards, shopdb.Emails, shopdb.Hashes) {
			if strings.Contains(raw, secret) {
				t.Errorf("planted %q reached the model:\n%s", secret, raw)
			}
		}
		if out.Next != "" {
			t.Errorf("a success suggests a next step: %q", out.Next)
		}
		// A statement PostgreSQL rejects says so, masked, and that the statement is at fault.
		out, res, raw = call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT card_number::int FROM users", "reason": "r"}, nil)
		if !res.IsError || out.State != "failed" || !strings.Contains(out.Message, "22P02") || !strings.Contains(out.Next, "correct the statement") {
			t.Errorf("%s", raw)
		}
		for _, card := range shopdb.Cards {
			if strings.Contains(raw, card) {
				t.Errorf("card %q in an error text:\n%s", card, raw)
			}
		}
		// max_rows truncates what the model sees, and says so.
		out, _, _ = call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT item FROM orders ORDER BY id", "reason": "r", "max_rows": 2}, nil)
		if out.State != "ok" || len(out.Rows) != 2 || out.RowCount != 4 || !out.Truncated {
			t.Errorf("max_rows: %+v", out)
		}
	})

	t.Run("denied and blocked statements are structured results", func(t *testing.T) {
		for _, tc := range []struct {
			name, target, sql string
			state, reason     string
		}{
			{"write on a read-only target", "orders-db", "DELETE FROM orders WHERE id = 1", "denied", "no rule grants write on orders-db"},
			{"forbidden function", "orders-db", "SELECT pg_read_file('/etc/passwd')", "denied", "pg_read_file"},
			{"multi-statement smuggling", "orders-db", "SELECT 1; DROP TABLE orders", "denied", "admin"},
			{"unparseable", "orders-db", "SELEC * FROM users", "denied", "cannot be parsed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, res, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{"target": tc.target, "sql": tc.sql, "reason": "test"}, nil)
				if !res.IsError || out.State != tc.state || !strings.HasPrefix(out.GrantID, "g_") || out.Next == "" {
					t.Fatalf("%s", raw)
				}
				if !strings.Contains(strings.Join(out.Reasons, "; "), tc.reason) {
					t.Fatalf("reasons %q lack %q", out.Reasons, tc.reason)
				}
			})
		}
		// Nothing was deleted or dropped.
		out, _, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT count(*) FROM orders", "reason": "r"}, nil)
		if out.State != "ok" || *out.Rows[0][0] != "4" {
			t.Fatalf("%s", raw)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		out, res, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "nope-db", "sql": "SELECT 1", "reason": "r"}, nil)
		if !res.IsError || out.State != "bad_request" || !strings.Contains(out.Message, "unknown target") || !strings.Contains(out.Next, "list_targets") {
			t.Fatalf("%s", raw)
		}
		out, _, raw = call[outcome](t, cs, toolSSHExec, map[string]any{"target": "orders-db", "command": "ls", "reason": "r"}, nil)
		if out.State != "bad_request" || !strings.Contains(out.Message, "postgres target") || !strings.Contains(out.Next, toolSQLQuery) {
			t.Fatalf("kind mismatch: %s", raw)
		}
		out, _, raw = call[outcome](t, cs, toolGrantStatus, map[string]any{"grant_id": "../../v1/grants"}, nil)
		if out.State != "bad_request" {
			t.Fatalf("grant id: %s", raw)
		}
		out, _, raw = call[outcome](t, cs, toolGrantStatus, map[string]any{"grant_id": "g_doesnotexist"}, nil)
		if out.State != "not_found" {
			t.Fatalf("unknown grant: %s", raw)
		}
		// The schema makes the model say why; without a reason nothing is filed.
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: toolSQLQuery, Arguments: map[string]any{"target": "orders-db", "sql": "SELECT 1"}})
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(res); !res.IsError || !strings.Contains(string(b), `missing properties: [\"reason\"]`) {
			t.Fatalf("missing reason accepted: %s", b)
		}
	})

	t.Run("the broker refuses what the policy does not know", func(t *testing.T) {
		// Without a local policy the broker has the word: it refuses the request.
		nop := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent)}, nil)
		out, res, raw := call[outcome](t, nop, toolKubectlExec, map[string]any{"target": "prod-k8s", "namespace": "shop", "pod": "api-0", "command": []string{"env"}, "reason": "r"}, nil)
		if !res.IsError || out.State != "bad_request" || !strings.Contains(out.Message, `unknown target "prod-k8s"`) || out.GrantID != "" {
			t.Errorf("%s: %s", toolKubectlExec, raw)
		}
		// The broker refuses a shell command aimed at a postgres target
		// outright: nothing is filed, nothing runs.
		out, res, raw = call[outcome](t, nop, toolSSHExec, map[string]any{"target": "orders-db", "command": "SELECT count(*) FROM orders", "reason": "r"}, nil)
		if !res.IsError || out.State != "bad_request" || !strings.Contains(out.Message, "command is for ssh targets") || out.GrantID != "" {
			t.Fatalf("%s", raw)
		}
	})

	t.Run("pending approval completes while the call waits", func(t *testing.T) {
		progress := &progressLog{}
		waiting := connectMCP(t, cfg, progress)
		type callResult struct {
			out outcome
			res *mcp.CallToolResult
			raw string
		}
		done := make(chan callResult, 1)
		go func() {
			out, res, raw := call[outcome](t, waiting, toolSQLQuery, map[string]any{"target": "test-db",
				"sql": "INSERT INTO orders (user_id, item, amount) VALUES (1, 'mcp fixture', 1.00)", "reason": "PR #42 fixture"}, "tok-1")
			done <- callResult{out, res, raw}
		}()
		id := d.pendingGrant(dba)
		// The requester cannot approve its own grant.
		if code := d.api(agent, "POST", "/v1/grants/"+id+"/approve", map[string]string{"reason": "me"}, nil); code != 403 {
			t.Fatalf("self-approval: status %d", code)
		}
		if code := d.api(dba, "POST", "/v1/grants/"+id+"/approve", map[string]string{"reason": "fixture is fine"}, nil); code != 200 {
			t.Fatalf("approve: status %d", code)
		}
		r := <-done
		if r.res.IsError || r.out.State != "ok" || r.out.Tag != "INSERT 0 1" || r.out.GrantID != id || r.out.Recording == "" {
			t.Fatalf("%s", r.raw)
		}
		msgs := progress.all()
		if len(msgs) == 0 || !strings.Contains(msgs[0], id) || !strings.Contains(msgs[0], "dba") {
			t.Fatalf("progress notifications %q", msgs)
		}
	})

	t.Run("pending beyond the wait returns, grant_status finishes it", func(t *testing.T) {
		short := cfg
		short.ApprovalWait = 0
		quick := connectMCP(t, short, nil)
		out, res, raw := call[outcome](t, quick, toolSQLQuery, map[string]any{"target": "test-db",
			"sql": "UPDATE orders SET amount = 2.00 WHERE item = 'mcp fixture'", "reason": "PR #42"}, nil)
		if res.IsError || out.State != "pending" || out.Approval == nil || out.Approval.Command != "jitgate approve "+out.GrantID ||
			out.Approval.URL != d.broker+"/ui/grants/"+out.GrantID || !slices.Equal(out.Approval.Groups, []string{"dba"}) ||
			!strings.Contains(out.Next, "grant_status") || len(out.Statements) != 1 || out.Statements[0].Class != "write" {
			t.Fatalf("%s", raw)
		}
		// Still pending: grant_status says so without running anything.
		st, _, raw := call[outcome](t, quick, toolGrantStatus, map[string]any{"grant_id": out.GrantID}, nil)
		if st.State != "pending" {
			t.Fatalf("%s", raw)
		}
		if code := d.api(dba, "POST", "/v1/grants/"+out.GrantID+"/approve", nil, nil); code != 200 {
			t.Fatalf("approve: %d", code)
		}
		// run=false reports the approval without running.
		st, _, raw = call[outcome](t, quick, toolGrantStatus, map[string]any{"grant_id": out.GrantID, "run": false}, nil)
		if st.State != "approved" || !strings.Contains(st.Next, "grant_status") {
			t.Fatalf("%s", raw)
		}
		st, res, raw = call[outcome](t, quick, toolGrantStatus, map[string]any{"grant_id": out.GrantID, "wait": true}, nil)
		if res.IsError || st.State != "ok" || st.Tag != "UPDATE 1" {
			t.Fatalf("%s", raw)
		}
		// It ran once; asking again reports the end, not a second run.
		st, _, raw = call[outcome](t, quick, toolGrantStatus, map[string]any{"grant_id": out.GrantID}, nil)
		if st.State != "ended" || st.Recording == "" {
			t.Fatalf("%s", raw)
		}
	})

	t.Run("an approver's denial reaches the model with the reason", func(t *testing.T) {
		short := cfg
		short.ApprovalWait = 0
		quick := connectMCP(t, short, nil)
		out, _, raw := call[outcome](t, quick, toolSQLQuery, map[string]any{"target": "test-db", "sql": "DELETE FROM orders WHERE id = 4", "reason": "cleanup"}, nil)
		if out.State != "pending" {
			t.Fatalf("%s", raw)
		}
		if code := d.api(dba, "POST", "/v1/grants/"+out.GrantID+"/deny", map[string]string{"reason": "not on a Friday"}, nil); code != 200 {
			t.Fatalf("deny: %d", code)
		}
		st, res, raw := call[outcome](t, quick, toolGrantStatus, map[string]any{"grant_id": out.GrantID, "wait": true}, nil)
		if !res.IsError || st.State != "denied" || !strings.Contains(strings.Join(st.Reasons, ";"), "not on a Friday") {
			t.Fatalf("%s", raw)
		}
	})

	t.Run("token and broker failures", func(t *testing.T) {
		bad := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken("not-a-token")}, nil)
		out, res, raw := call[outcome](t, bad, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT 1", "reason": "r"}, nil)
		if !res.IsError || out.State != "unauthenticated" {
			t.Fatalf("%s", raw)
		}
		down := connectMCP(t, mcpConfig{Broker: "http://" + freeLoopbackAddr(t), Tokens: staticToken(agent)}, nil)
		out, res, raw = call[outcome](t, down, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT 1", "reason": "r"}, nil)
		if !res.IsError || out.State != "unreachable" {
			t.Fatalf("%s", raw)
		}
		missing := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: fileToken(filepath.Join(t.TempDir(), "absent"))}, nil)
		out, _, raw = call[outcome](t, missing, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT 1", "reason": "r"}, nil)
		if out.State != "unauthenticated" || !strings.Contains(out.Message, "token file") {
			t.Fatalf("%s", raw)
		}
	})

	t.Run("stdio: the real binary", func(t *testing.T) {
		tokFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokFile, []byte(agent+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(jitgateBinary(t), "mcp", "--broker", d.broker, "--token-file", tokFile, "--policy", d.policy)
		cmd.Env = append(os.Environ(), "JITGATE_TOKEN=", "ACTIONS_ID_TOKEN_REQUEST_URL=")
		cmd.Stderr = &lockedBuffer{}
		ctx := context.Background()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "stdio-client", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		out, _, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT item FROM orders WHERE id = 3", "reason": "r"}, nil)
		if out.State != "ok" || len(out.Rows) != 1 || *out.Rows[0][0] != "bombe" {
			t.Fatalf("%s\nstderr: %s", raw, cmd.Stderr)
		}
	})

	t.Run("streamable HTTP", func(t *testing.T) {
		srv, err := newMCPServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(mcpHTTPHandler(srv, nil))
		defer ts.Close()
		ctx := context.Background()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "http-client", Version: "1"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: ts.URL + "/mcp"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		out, _, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "orders-db", "sql": "SELECT item FROM orders WHERE id = 2", "reason": "r"}, nil)
		if out.State != "ok" || *out.Rows[0][0] != "compiler" {
			t.Fatalf("%s", raw)
		}
		// DNS rebinding: a page on another name that resolves to 127.0.0.1 is refused.
		req, _ := http.NewRequest("POST", ts.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Host = "evil.example"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign Host: status %d, want 403", resp.StatusCode)
		}
		// A browser's cross-origin POST is refused too.
		req, _ = http.NewRequest("POST", ts.URL+"/mcp", strings.NewReader(`{}`))
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://evil.example")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-origin: status %d, want 403", resp.StatusCode)
		}
	})
}

func TestMCPCommandRefusals(t *testing.T) {
	t.Parallel()
	bin := jitgateBinary(t)
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"HTTP off loopback", []string{"mcp", "--token", "x", "--http", "0.0.0.0:0"}, nil, "loopback only"},
		{"no token", []string{"mcp"}, []string{"JITGATE_TOKEN=", "JITGATE_TOKEN_FILE=", "ACTIONS_ID_TOKEN_REQUEST_URL=", "JITGATE_ISSUER="}, "no token"},
		{"device login without client id", []string{"mcp", "--issuer", "https://idp.example"}, []string{"JITGATE_TOKEN=", "JITGATE_CLIENT_ID=", "ACTIONS_ID_TOKEN_REQUEST_URL="}, "--client-id"},
		{"bad broker URL", []string{"mcp", "--token", "x", "--broker", "ftp://x"}, nil, "not an http(s) URL"},
		{"broken policy", []string{"mcp", "--token", "x", "--policy", "/nonexistent/policy.yaml"}, nil, "policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err %v, output %s; want exit %d and %q", err, out, exitUsage, tc.want)
			}
		})
	}
}

// TestMCPRequestFailed maps every broker refusal to an outcome the model can act on.
func TestMCPRequestFailed(t *testing.T) {
	t.Parallel()
	tools := &mcpTools{cfg: mcpConfig{ApproveURL: "https://jit.example/ui"}}
	denied, _ := json.Marshal(map[string]any{"error": map[string]string{"code": "denied", "message": "denied by policy: x"},
		"grant": map[string]any{"id": "g_1", "state": "denied", "rule": "no-prod", "reasons": []string{"denied by rule no-prod"}}})
	for _, tc := range []struct {
		name  string
		err   error
		kind  spec.Protocol
		state string
		want  string
	}{
		{"policy denial", &apiError{Status: 403, Code: "denied", Message: "denied by policy: x", Body: denied}, spec.Postgres, "denied", "denied by rule no-prod"},
		{"unknown target", &apiError{Status: 400, Code: "bad_request", Message: `bad request: unknown target "x"`}, spec.Postgres, "bad_request", "unknown target"},
		{"engine missing", &apiError{Status: 400, Code: "bad_request", Message: `malformed JSON: json: unknown field "operation"`}, spec.SSH, "unsupported", "does not accept ssh exec grants yet"},
		{"sql bad request is not 'unsupported'", &apiError{Status: 400, Code: "bad_request", Message: `malformed JSON: json: unknown field "x"`}, spec.Postgres, "bad_request", "refused the request"},
		{"expired token", &apiError{Status: 401, Code: "invalid_token", Message: "token expired"}, spec.Postgres, "unauthenticated", "token expired"},
		{"broker trouble", &apiError{Status: 503, Code: "unavailable", Message: "store down"}, spec.Postgres, "failed", "store down"},
		{"network", errors.New("dial tcp: connection refused"), spec.Postgres, "unreachable", "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tools.requestFailed(tc.err, tc.kind)
			if o.State != tc.state || !strings.Contains(o.Message+strings.Join(o.Reasons, ";"), tc.want) {
				t.Fatalf("%+v, want state %s with %q", o, tc.state, tc.want)
			}
			if tc.state == "denied" && (o.GrantID != "g_1" || o.Rule != "no-prod" || o.Next == "") {
				t.Fatalf("denial lacks grant, rule or next step: %+v", o)
			}
		})
	}
}

func TestMCPClaimsIdentity(t *testing.T) {
	t.Parallel()
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	iss.SetURL("https://token.actions.githubusercontent.com")
	tok, err := iss.Token("repo:acme/shop:pull_request", nil, "jitgate", map[string]any{"repository": "acme/shop", "repository_owner": "acme", "event_name": "pull_request", "run_id": 7})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load("../../examples/github-actions-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	who, err := claimsIdentity(tok, p, "http://127.0.0.1:8700")
	if err != nil {
		t.Fatal(err)
	}
	if who.IssuerName != "github" || who.Subject != "repo:acme/shop:pull_request" || who.Claims["run_id"] != int64(7) {
		t.Fatalf("%+v", who)
	}
	targets := offlineTargets(p, who)
	if len(targets) != 2 || targets[0].Name != "staging-db" || targets[0].Access[0].Effect != "allow" ||
		targets[1].Name != "pr-test-db" || targets[1].Access[len(targets[1].Access)-1].Effect != "approve" {
		t.Fatalf("%+v", targets)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + "bm90IGpzb24" + ".c", strings.Repeat("a", 20000) + ".e30.c"} {
		if _, err := claimsIdentity(bad, p, ""); err == nil {
			t.Errorf("claimsIdentity(%.20q) accepted", bad)
		}
	}
}

func TestValidGrantID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"g_ABCDEFGHIJKLMNOPQRSTUVWXYZ": true, "g_abc-123": true, "": false, "g_": false, "x_abc": false,
		"g_../../etc": false, "g_a/b": false, "g_a?b": false, "g_a%2F": false, "g_" + strings.Repeat("a", 70): false,
	} {
		if got := validGrantID(id); got != want {
			t.Errorf("validGrantID(%q) = %v", id, got)
		}
	}
}

// fakeIdP is an OIDC issuer with a device authorization endpoint (RFC 8628).
type fakeIdP struct {
	srv         *httptest.Server
	iss         *devissuer.Issuer
	device      bool
	mu          sync.Mutex
	polls       int
	pendingFor  int
	deviceCalls int
	// expiredID makes the device flow's ID token expired on arrival, so the
	// login must refresh it at once.
	expiredID bool
}

func newFakeIdP(t *testing.T, device bool, pendingFor int) *fakeIdP {
	t.Helper()
	f := &fakeIdP{device: device, pendingFor: pendingFor}
	var err error
	if f.iss, err = devissuer.New(devissuer.Options{}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		doc := map[string]any{"issuer": f.srv.URL, "token_endpoint": f.srv.URL + "/token", "authorization_endpoint": f.srv.URL + "/authorize",
			"jwks_uri": f.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"}}
		if f.device {
			doc["device_authorization_endpoint"] = f.srv.URL + "/device"
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.deviceCalls++
		f.mu.Unlock()
		if r.FormValue("client_id") != "jitgate-mcp" {
			http.Error(w, `{"error":"invalid_client"}`, 401)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"device_code": "dev-code-1", "user_code": "WDJB-MJHT",
			"verification_uri": f.srv.URL + "/activate", "expires_in": 600, "interval": 1})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		f.iss.SetURL(f.srv.URL)
		if r.FormValue("grant_type") == "refresh_token" {
			if r.FormValue("refresh_token") != "refresh-1" {
				w.WriteHeader(400)
				_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
				return
			}
			idt, _ := f.iss.Token("ada", []string{"ai-agents"}, "jitgate-mcp", map[string]any{"refreshed": true})
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque-access-2", "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
			return
		}
		if r.FormValue("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || r.FormValue("device_code") != "dev-code-1" {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		f.mu.Lock()
		f.polls++
		pending := f.polls <= f.pendingFor
		f.mu.Unlock()
		if pending {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"authorization_pending"}`))
			return
		}
		extra := map[string]any{}
		if f.expiredID {
			extra["exp"] = time.Now().Add(-time.Minute).Unix()
		}
		idt, _ := f.iss.Token("ada", []string{"ai-agents"}, "jitgate-mcp", extra)
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque-access", "token_type": "Bearer", "expires_in": 3600,
			"id_token": idt, "refresh_token": "refresh-1"})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func TestDeviceLogin(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, true, 1)
	prompt := &lockedBuffer{}
	d, err := newDeviceLogin(context.Background(), deviceLoginConfig{Issuer: idp.srv.URL, ClientID: "jitgate-mcp", Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Until the human signs in, tools get the link and code, not a hang.
	cs := connectMCP(t, mcpConfig{Broker: "http://127.0.0.1:1", Tokens: d}, nil)
	deadline := time.Now().Add(30 * time.Second)
	var tok string
	sawLogin := false
	for time.Now().Before(deadline) {
		tok, err = d.Token(context.Background())
		if err == nil {
			break
		}
		var le *loginRequiredError
		if errors.As(err, &le) && !sawLogin {
			sawLogin = true
			out, res, raw := call[outcome](t, cs, toolSQLQuery, map[string]any{"target": "x", "sql": "SELECT 1", "reason": "r"}, nil)
			if !res.IsError || out.State != "login_required" || out.Login == nil || out.Login.UserCode != "WDJB-MJHT" || !strings.Contains(out.Message, "/activate") {
				t.Fatalf("%s", raw)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no token: %v", err)
	}
	if !sawLogin {
		t.Fatal("the sign-in was never pending")
	}
	claims, err := jwtClaims(tok)
	if err != nil || claims["sub"] != "ada" || claims["aud"] != "jitgate-mcp" {
		t.Fatalf("token claims %v, %v (the ID token is what the broker verifies)", claims, err)
	}
	if !strings.Contains(prompt.String(), "WDJB-MJHT") {
		t.Errorf("no sign-in instructions on the prompt: %q", prompt.String())
	}
}

// TestDeviceLoginRefresh: an ID token that expires (here: on arrival, while
// the access token is still valid) is refreshed with the refresh token.
func TestDeviceLoginRefresh(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, true, 0)
	idp.expiredID = true
	d, err := newDeviceLogin(context.Background(), deviceLoginConfig{Issuer: idp.srv.URL, ClientID: "jitgate-mcp", MinHold: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if tok, err := d.Token(context.Background()); err == nil {
			claims, _ := jwtClaims(tok)
			if claims["refreshed"] != true {
				t.Fatalf("served an expired ID token: %v", claims)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no refreshed token")
}

func TestDeviceLoginNeedsDeviceEndpoint(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, false, 0)
	_, err := newDeviceLogin(context.Background(), deviceLoginConfig{Issuer: idp.srv.URL, ClientID: "jitgate-mcp"})
	if err == nil || !strings.Contains(err.Error(), "no device_authorization_endpoint") || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("err = %v", err)
	}
	_, err = newDeviceLogin(context.Background(), deviceLoginConfig{Issuer: "http://" + freeLoopbackAddr(t), ClientID: "x"})
	if err == nil || !strings.Contains(err.Error(), "discovery") {
		t.Fatalf("unreachable issuer: err = %v", err)
	}
}

func freeLoopbackAddr(t *testing.T) string { return teststack.FreeAddr(t) }

type lockedBuffer = teststack.Buffer

// TestMCPRunRefusals maps the broker's answers to POST .../run. A block by the
// proxy's guard at run time cannot be provoked through a real broker (it checks
// statements with the same guard first), so a stand-in answers with the
// broker's documented error envelope.
func TestMCPRunRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		code   string
		msg    string
		state  string
		want   string
	}{
		{"guard block", 403, "denied", "denied by policy: blocked: COPY ... TO PROGRAM is forbidden", "blocked", "blocked by the proxy's guard"},
		{"expired", 410, "expired", "grant expired", "expired", "expired before it ran"},
		{"someone else's grant", 403, "forbidden", "only the requester can run grant g_x", "forbidden", "only the requester"},
		{"target down", 503, "unavailable", "unavailable: connect: connection refused", "failed", "the operation failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "POST" || r.URL.Path != "/v1/grants/g_x/run" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tc.status)
				_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": tc.code, "message": tc.msg},
					"grant": map[string]any{"id": "g_x", "state": "ended", "target": "orders-db"}, "recording": "/rec/g_x.jsonl"})
			}))
			defer broker.Close()
			tools := &mcpTools{cfg: mcpConfig{}}
			o := tools.run(context.Background(), &apiClient{base: broker.URL, token: "t", http: broker.Client()}, httpapiGrant("g_x"), 0)
			if o.State != tc.state || !strings.Contains(o.Message, tc.want) || o.GrantID != "g_x" {
				t.Fatalf("%+v", o)
			}
			if tc.state == "blocked" && (o.Recording != "/rec/g_x.jsonl" || len(o.Reasons) != 1 || o.Next == "") {
				t.Fatalf("block without recording, reason or next step: %+v", o)
			}
		})
	}
}

func httpapiGrant(id string) httpapi.GrantView {
	return httpapi.GrantView{ID: id, State: "approved", Target: "orders-db", Mode: "exec"}
}

// FuzzJWTClaims: the unverified claim reader (list_targets, doctor, device
// login expiry) never panics, and what it accepts is a JWT-shaped object.
func FuzzJWTClaims(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjoxLjV9.c2ln")
	f.Add("a.e30.b")
	f.Add("a.bnVsbA.b")
	f.Add("..")
	f.Add("a.W10.b")
	f.Fuzz(func(t *testing.T, tok string) {
		claims, err := jwtClaims(tok)
		if err != nil {
			return
		}
		if claims == nil || strings.Count(tok, ".") != 2 || len(tok) > 16<<10 {
			t.Fatalf("accepted %q as %v", tok, claims)
		}
		_, _ = claimsIdentity(tok, &policy.Policy{Issuers: []policy.Issuer{{Name: "x", Issuer: "https://x", GroupsClaim: "g"}}}, "http://b")
	})
}

// TestMCPSSH: ssh_exec and read_config against a real OpenSSH server through
// jitgate dev, its SSH proxy and a per-grant certificate from the embedded CA.
func TestMCPSSH(t *testing.T) {
	t.Parallel()
	if _, err := sshtest.SSHD(); err != nil {
		t.Skipf("no sshd: %v (make deps installs openssh-server)", err)
	}
	srv, caFile := teststack.SSHTarget(t, t.TempDir(), map[string]string{"notes.txt": "customer card 4111 1111 1111 1111\nowner: ops\n"})
	notes := filepath.Join(srv.Home, "notes.txt")
	d := startDevPolicy(t, fmt.Sprintf(`version: 1
targets:
%s
rules:
  - name: agents-run-commands
    when: '"ai-agents" in identity.groups'
    targets: [web-1]
    access: read
`, teststack.SSHPolicyTarget("web-1", srv, caFile)))
	agent := d.token("agent-1", "ai-agents")
	cs := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent), Policy: d.pol}, nil)

	lt, _, raw := call[listTargetsOut](t, cs, toolListTargets, map[string]any{}, nil)
	if len(lt.Targets) != 1 || lt.Targets[0].Kind != "ssh" || !strings.Contains(lt.Targets[0].Tool, toolSSHExec) {
		t.Fatalf("%s", raw)
	}
	out, res, raw := call[outcome](t, cs, toolSSHExec, map[string]any{"target": "web-1", "command": "echo hello from $(whoami); cat notes.txt", "reason": "r"}, nil)
	if res.IsError || out.State != "ok" || !strings.Contains(out.Output, "hello from "+srv.User) || !strings.Contains(out.Output, "customer card") || out.Tag != "exit 0" {
		t.Fatalf("%s", raw)
	}
	if strings.Contains(strings.ReplaceAll(raw, " ", ""), "4111111111111111") {
		t.Fatalf("card reached the model: %s", raw)
	}
	out, _, raw = call[outcome](t, cs, toolReadConfig, map[string]any{"target": "web-1", "path": notes, "reason": "r"}, nil)
	if out.State != "ok" || !strings.Contains(out.Output, "owner: ops") || strings.Contains(strings.ReplaceAll(raw, " ", ""), "4111111111111111") {
		t.Fatalf("%s", raw)
	}
	// A path with shell metacharacters is one quoted argument, never a second command.
	out, _, raw = call[outcome](t, cs, toolReadConfig, map[string]any{"target": "web-1", "path": "/nonexistent; rm -rf " + notes, "reason": "r"}, nil)
	if out.State != "ok" || !strings.Contains(out.Tag, "exit 1") {
		t.Fatalf("%s", raw)
	}
	for _, attack := range []string{"rm -rf notes.txt", "bash -c 'rm -rf notes.txt'", "echo rm notes.txt | sh"} {
		out, res, raw := call[outcome](t, cs, toolSSHExec, map[string]any{"target": "web-1", "command": attack, "reason": "r"}, nil)
		if !res.IsError || out.State != "denied" || !strings.Contains(strings.Join(out.Reasons, ";"), "refused") {
			t.Errorf("%q: %s", attack, raw)
		}
	}
	if _, err := os.Stat(notes); err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	// sql_query aimed at the ssh target, without a local policy to catch it:
	// the broker refuses SQL for an ssh target; nothing is filed or run.
	nop := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent)}, nil)
	out, res, raw = call[outcome](t, nop, toolSQLQuery, map[string]any{"target": "web-1", "sql": "SELECT 1", "reason": "r"}, nil)
	if !res.IsError || out.State != "bad_request" || !strings.Contains(out.Message, "sql is for postgres targets") || out.GrantID != "" {
		t.Fatalf("%s", raw)
	}
}

// TestMCPHTTP: http_request against a real upstream through jitgate dev and
// its HTTP proxy: the request goes out as the API's "http" operation, the
// proxy injects the token the model never sees, masks the response, and the
// broker refuses what the target's rules do not allow before anything runs.
func TestMCPHTTP(t *testing.T) {
	t.Parallel()
	const apiToken = "mcp-api-token-not-for-models"
	var calls atomic.Int32
	var mu sync.Mutex
	var lastBody, lastType, lastAuth string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		lastBody, lastType, lastAuth = string(b), r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+apiToken {
			http.Error(w, "no token", 401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"method":%q,"owner":{"email":"ops@example.com","password":"hunter2"},"beta":true}`, r.Method)
	}))
	t.Cleanup(api.Close)
	d := startDevPolicy(t, fmt.Sprintf(`version: 1
targets:
  - name: flags-api
    kind: http
    address: %s
    http:
      rules:
        - {methods: [GET], path: /v1/flags}
        - {methods: [POST], path: /v1/items}
        - {path: /v1/admin/**, effect: deny}
    credentials: {source: local, token: env:MCP_API_TOKEN}
    masking: {detectors: [email], json_fields: [password]}
rules:
  - name: agents-call-api
    when: '"ai-agents" in identity.groups'
    targets: [flags-api]
    access: write
`, strings.TrimPrefix(api.URL, "http://")), "MCP_API_TOKEN="+apiToken)
	agent := d.token("agent-1", "ai-agents")
	cs := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent), Policy: d.pol}, nil)

	out, res, raw := call[outcome](t, cs, toolHTTPRequest, map[string]any{"target": "flags-api", "method": "get", "path": "/v1/flags", "reason": "r"}, nil)
	if res.IsError || out.State != "ok" || out.Tag != "HTTP 200" || !strings.Contains(out.Output, `"beta":true`) || !strings.Contains(out.Output, `"method":"GET"`) {
		t.Fatalf("GET: %s", raw)
	}
	for _, secret := range []string{"hunter2", "ops@example.com", apiToken} {
		if strings.Contains(raw, secret) {
			t.Errorf("%q reached the model: %s", secret, raw)
		}
	}
	out, res, raw = call[outcome](t, cs, toolHTTPRequest, map[string]any{"target": "flags-api", "method": "POST", "path": "/v1/items", "body": `{"name":"widget"}`, "reason": "r"}, nil)
	if res.IsError || out.State != "ok" || !strings.Contains(out.Output, `"method":"POST"`) {
		t.Fatalf("POST: %s", raw)
	}
	mu.Lock()
	if lastBody != `{"name":"widget"}` || lastType != "application/json" || lastAuth != "Bearer "+apiToken {
		t.Errorf("upstream saw body %q, Content-Type %q, Authorization %q", lastBody, lastType, lastAuth)
	}
	mu.Unlock()
	before := calls.Load()
	for _, tc := range []struct{ method, path string }{
		{"DELETE", "/v1/flags"},
		{"GET", "/v1/admin/keys"},
		{"GET", "/v1/flags/../admin/keys"},
	} {
		out, res, raw := call[outcome](t, cs, toolHTTPRequest, map[string]any{"target": "flags-api", "method": tc.method, "path": tc.path, "reason": "r"}, nil)
		if !res.IsError || out.State != "denied" || !strings.Contains(strings.Join(out.Reasons, ";"), "refused") {
			t.Errorf("%s %s: %s", tc.method, tc.path, raw)
		}
	}
	// Bad input never reaches the broker.
	for _, args := range []map[string]any{
		{"target": "flags-api", "method": "CONNECT", "path": "/", "reason": "r"},
		{"target": "flags-api", "method": "GET", "path": "/v1/flags\r\nX-Evil: 1", "reason": "r"},
		{"target": "flags-api", "method": "GET", "path": "//evil.example/x", "reason": "r"},
		{"target": "flags-api", "method": "POST", "path": "/v1/items", "body": "x", "content_type": "text/plain\r\nX-Evil: 1", "reason": "r"},
	} {
		out, res, raw := call[outcome](t, cs, toolHTTPRequest, args, nil)
		if !res.IsError || out.State != "bad_request" || out.GrantID != "" {
			t.Errorf("%v: %s", args, raw)
		}
	}
	if calls.Load() != before {
		t.Fatalf("refused requests reached the upstream (%d calls)", calls.Load()-before)
	}
	// read_config with a key aimed at the http target is refused locally.
	out, res, raw = call[outcome](t, cs, toolReadConfig, map[string]any{"target": "flags-api", "key": "flags/beta", "reason": "r"}, nil)
	if !res.IsError || out.State != "bad_request" || !strings.Contains(out.Message, "is a http target") {
		t.Fatalf("read_config on http: %s", raw)
	}
}

func TestHTTPOperation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   httpRequestIn
		want string
		bad  bool
	}{
		{in: httpRequestIn{Method: "get", Path: "/v1/flags?env=prod"}, want: "GET /v1/flags?env=prod"},
		{in: httpRequestIn{Method: "POST", Path: "/v1/items", Body: `{"a":1}`}, want: "POST /v1/items\nContent-Type: application/json\n\n{\"a\":1}"},
		{in: httpRequestIn{Method: "PUT", Path: "/v1/note", Body: "hello"}, want: "PUT /v1/note\nContent-Type: text/plain; charset=utf-8\n\nhello"},
		{in: httpRequestIn{Method: "POST", Path: "/v1/f", Body: "a=1", ContentType: "application/x-www-form-urlencoded"}, want: "POST /v1/f\nContent-Type: application/x-www-form-urlencoded\n\na=1"},
		{in: httpRequestIn{Method: "TRACE", Path: "/"}, bad: true},
		{in: httpRequestIn{Method: "GET", Path: "v1/flags"}, bad: true},
		{in: httpRequestIn{Method: "GET", Path: "/a b"}, bad: true},
		{in: httpRequestIn{Method: "GET", Path: "/a\nHost: evil"}, bad: true},
		{in: httpRequestIn{Method: "POST", Path: "/a", Body: "x", ContentType: "a\nb"}, bad: true},
	} {
		got, o := httpOperation(tc.in)
		if tc.bad != (o != nil) || got != tc.want {
			t.Errorf("%+v: got %q, refused %v", tc.in, got, o != nil)
		}
	}
}

// TestMCPReadConfig: read_config with a key against a config target through
// jitgate dev: the broker reads the embedded store, the proxy masks, and a
// key outside the target's globs is denied before anything is issued.
func TestMCPReadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storePath := filepath.Join(dir, "store.json")
	if err := os.WriteFile(storePath, []byte(`{"flags":{"beta":"true","db_password":"pw-never-shown"},"admin":{"root":"root-never-shown"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDevPolicy(t, fmt.Sprintf(`version: 1
targets:
  - name: app-config
    kind: config
    keys: ["flags/*"]
    credentials: {source: local, store: "file:%s"}
rules:
  - name: agents-read-config
    when: '"ai-agents" in identity.groups'
    targets: [app-config]
    access: read
`, storePath))
	agent := d.token("agent-1", "ai-agents")
	cs := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent), Policy: d.pol}, nil)
	out, res, raw := call[outcome](t, cs, toolReadConfig, map[string]any{"target": "app-config", "key": "flags/*", "reason": "r"}, nil)
	if res.IsError || out.State != "ok" || out.Tag != "KEYS 2" || len(out.Rows) != 2 {
		t.Fatalf("%s", raw)
	}
	if strings.Contains(raw, "pw-never-shown") || !strings.Contains(raw, `"true"`) {
		t.Fatalf("masking: %s", raw)
	}
	for _, key := range []string{"admin/root", "flags/../admin/root"} {
		out, res, raw := call[outcome](t, cs, toolReadConfig, map[string]any{"target": "app-config", "key": key, "reason": "r"}, nil)
		if !res.IsError || out.State != "denied" || strings.Contains(raw, "root-never-shown") {
			t.Errorf("%q: %s", key, raw)
		}
	}
	// A path aimed at the config target is for ssh targets: refused locally.
	out, res, raw = call[outcome](t, cs, toolReadConfig, map[string]any{"target": "app-config", "path": "/etc/passwd", "reason": "r"}, nil)
	if !res.IsError || out.State != "bad_request" || out.GrantID != "" {
		t.Fatalf("path on a config target: %s", raw)
	}
	out, res, raw = call[outcome](t, cs, toolReadConfig, map[string]any{"target": "app-config", "reason": "r"}, nil)
	if !res.IsError || out.State != "bad_request" {
		t.Fatalf("neither key nor path: %s", raw)
	}
}
