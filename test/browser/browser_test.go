// Package browser tests the approval page (broker/approvalui) the way an
// approver uses it: a real headless Chromium (Debian package chromium, driven
// over the DevTools protocol by github.com/chromedp/chromedp) signs in through
// `jitgate dev`'s DEV ONLY issuer, reads the pending request, and approves it,
// while a real `jitgate exec` waits for that approval against a real
// PostgreSQL (test/pgtest + test/shopdb).
package browser

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jitgate/jitgate/test/shopdb"
	teststack "github.com/jitgate/jitgate/test/stack"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

var jitgateBin string

func TestMain(m *testing.M) { os.Exit(teststack.Main(m, "browser", &jitgateBin)) }

const (
	insertSQL = "INSERT INTO orders (user_id, item, amount) VALUES (1, 'slide rule', 3.50)"
	deleteSQL = "DELETE FROM orders WHERE item = 'punch cards'"
	prSHA     = "9f3c2a1b4d5e6f708192a3b4c5d6e7f809112233"
)

// stack is PostgreSQL with the shop databases and a running `jitgate dev`.
type stack struct {
	t    *testing.T
	base string
	env  []string
	logs *teststack.Buffer
}

func startStack(t *testing.T) *stack {
	t.Helper()
	pg := teststack.StartShop(t)
	s := startDev(t, shopdb.PolicyFor(pg.Addr()), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres"))
	// The banner is printed around the time the listener is up, not
	// necessarily before /healthz answers.
	for end := time.Now().Add(10 * time.Second); !strings.Contains(s.logs.String(), s.base+"/ui/") && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), s.base+"/ui/") {
		t.Errorf("jitgate dev does not print the approval page's URL:\n%s", s.logs.String())
	}
	return s
}

// startDev runs `jitgate dev` with policyText and the test's environment
// plus env until the test ends (its log is logged if the test failed), and
// waits until it answers /healthz.
func startDev(t *testing.T, policyText string, env ...string) *stack {
	t.Helper()
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := teststack.FreeAddr(t)
	s := &stack{t: t, base: "http://" + listen}
	s.env = append(append(os.Environ(), env...), "JITGATE_BROKER="+s.base)
	dev := teststack.StartProcess(t, teststack.ProcessConfig{Bin: jitgateBin, Env: s.env,
		Args: []string{"dev", "--policy", policyPath, "--listen", listen, "--data-dir", filepath.Join(dir, "data")}})
	s.logs = dev.Logs
	teststack.WaitHealthy(t, s.base+"/healthz", dev.Exited())
	return s
}

// proc is a process this test started; Wait runs once, in start.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// stop ends the process (SIGTERM, then SIGKILL to its group) if it still runs.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// token asks the running dev issuer for a token.
func (s *stack) token(sub, groups string, claims ...string) string {
	s.t.Helper()
	args := []string{"dev", "token", "--sub", sub, "--groups", groups}
	for _, c := range claims {
		args = append(args, "--claim", c)
	}
	cmd := exec.Command(jitgateBin, args...)
	cmd.Env = s.env
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("dev token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// agentToken is a CI agent's token with the GitHub Actions claims of PR 42.
func (s *stack) agentToken() string {
	return s.token("agent-1", "ai-agents", "repository=acme/shop", "ref=refs/pull/42/merge", "sha="+prSHA)
}

func (s *stack) jitgate(tok string, args ...string) *exec.Cmd {
	cmd := exec.Command(jitgateBin, args...)
	cmd.Env = append(append([]string{}, s.env...), "JITGATE_TOKEN="+tok)
	return cmd
}

// grant reads a grant through the API.
func (s *stack) grant(tok, id string) map[string]any {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/v1/grants/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var g map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil || resp.StatusCode != 200 {
		s.t.Fatalf("GET grant %s: %d %v", id, resp.StatusCode, err)
	}
	return g
}

// waitPending returns the id of the one pending grant tok may see.
func (s *stack) waitPending(tok string) string {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", s.base+"/v1/grants?state=pending", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var body struct {
				Grants []struct {
					ID string `json:"id"`
				} `json:"grants"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if len(body.Grants) == 1 {
				return body.Grants[0].ID
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("no pending grant appeared")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and returns a
// context whose first tab is open.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is needed at %s: install the Debian package chromium "+
			"(apt-get install -y chromium; scripts/ensure-deps.sh does it for make test): %v", chromiumPath, err)
	}
	profile, err := os.MkdirTemp("", "jitgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 1100),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		// Chromium's helpers may write into the profile briefly after exit.
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// The first run starts the browser: no timeout on it (it would stop the
	// browser when it fires); actions below get their own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// step runs actions with a bound so a broken page fails the test instead of
// hanging it.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// click clicks and waits for the page it leads to; it returns the HTTP status.
func click(t *testing.T, ctx context.Context, sel string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	return resp.Status
}

// signIn goes through the DEV ONLY issuer's form.
func signIn(t *testing.T, ctx context.Context, start, sub, groups string) {
	t.Helper()
	step(t, ctx, "open "+start+" and reach the sign-in form",
		chromedp.Navigate(start),
		chromedp.WaitVisible("#sub"),
	)
	if title := run(t, ctx, "title", chromedp.Title()); !strings.Contains(title, "DEV ONLY sign-in") {
		t.Fatalf("sign-in page title %q", title)
	}
	step(t, ctx, "sign in as "+sub,
		chromedp.SendKeys("#sub", sub),
		chromedp.SendKeys("#groups", groups),
		chromedp.Click("#signin"),
		chromedp.WaitVisible("#signed-in-as"),
	)
	if who := run(t, ctx, "signed-in name", chromedp.Text("#signed-in-as")); who != sub {
		t.Fatalf("signed in as %q, want %q", who, sub)
	}
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := run(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func wantText(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

// TestApprovalPageInChromium: an agent's write waits for a DBA; the DBA signs
// in with Chromium, sees the exact statement, approves, and the waiting
// `jitgate exec` finishes. The requester gets no approve form, and a POST
// without the CSRF token is refused with 403.
func TestApprovalPageInChromium(t *testing.T) {
	s := startStack(t)
	agent := s.agentToken()
	dba := s.token("dba-poller", "dba")
	shots := t.ArtifactDir()

	// The agent's write waits for approval.
	execCmd := s.jitgate(agent, "exec", "--target", "test-db", "--sql", insertSQL, "--reason", "backfill the order lost in PR 42")
	execOut := &teststack.Buffer{}
	execCmd.Stdout, execCmd.Stderr = execOut, execOut
	execProc := start(t, execCmd)
	id := s.waitPending(dba)

	alice := newBrowser(t)
	signIn(t, alice, s.base+"/ui/", "alice", "dba")
	index := run(t, alice, "index text", chromedp.Text("main"))
	wantText(t, "index", index, "Waiting for your decision", id, insertSQL, "INSERT", "write",
		"agent-1", "backfill the order lost in PR 42", "acme/shop#42", prSHA, "test-db", "Pending until")
	href := run(t, alice, "PR link", chromedp.Evaluate[string](`document.querySelector("a.pr").href`))
	if href != "https://github.com/acme/shop/pull/42" {
		t.Errorf("pull request link %q", href)
	}
	screenshot(t, alice, shots, "1-index.png")

	if st := click(t, alice, "#grant-"+id+" a.button.review"); st != 200 {
		t.Fatalf("open grant: status %d", st)
	}
	step(t, alice, "approve form", chromedp.WaitVisible("#approve"))
	screenshot(t, alice, shots, "2-detail.png")
	step(t, alice, "note", chromedp.SendKeys("#approve-reason", "one row into the test db: fine"))
	if st := click(t, alice, "#approve"); st != 200 {
		t.Fatalf("approve: status %d", st)
	}
	wantText(t, "approval result", run(t, alice, "result", chromedp.Text("#result")), "You approved this grant")
	screenshot(t, alice, shots, "3-approved.png")

	// The waiting exec carries on.
	select {
	case <-execProc.done:
		if execProc.err != nil {
			t.Fatalf("approved exec failed: %v\n%s", execProc.err, execOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("exec still waiting 30s after approval:\n%s", execOut.String())
	}
	if !strings.Contains(execOut.String(), "INSERT 0 1") {
		t.Fatalf("exec output lacks INSERT 0 1:\n%s", execOut.String())
	}

	// A second request, filed without waiting.
	out, err := s.jitgate(agent, "request", "--target", "test-db", "--sql", deleteSQL, "--wait=false").Output()
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var g struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(out, &g); err != nil || g.State != "pending" {
		t.Fatalf("request answered %s (%v), want a pending grant", out, err)
	}

	// The requester (here also in the approver group) sees its grant without
	// an approve form.
	requester := newBrowser(t)
	signIn(t, requester, s.base+"/ui/grants/"+g.ID, "agent-1", "ai-agents,dba")
	step(t, requester, "requester's view", chromedp.WaitVisible("#own-grant"))
	if forms := run(t, requester, "forms", chromedp.Evaluate[int](`document.querySelectorAll("#approve, #deny, form[action$='/approve'], form[action$='/deny']").length`)); forms != 0 {
		t.Errorf("the requester sees %d approve/deny controls", forms)
	}
	screenshot(t, requester, shots, "4-requester.png")

	// A POST without the CSRF token is refused, and changes nothing.
	step(t, alice, "open the second grant", chromedp.Navigate(s.base+"/ui/grants/"+g.ID), chromedp.WaitVisible("#approve"))
	if n := run(t, alice, "strip CSRF", chromedp.Evaluate[int](`(() => { const f = document.querySelectorAll("input[name=csrf]"); f.forEach(e => e.remove()); return f.length })()`)); n == 0 {
		t.Fatal("no CSRF field to strip")
	}
	if st := click(t, alice, "#approve"); st != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: status %d, want 403", st)
	}
	wantText(t, "CSRF refusal", run(t, alice, "message", chromedp.Text("#message")), "CSRF token is missing or wrong")
	if st := s.grant(dba, g.ID)["state"]; st != "pending" {
		t.Fatalf("grant is %v after a refused POST, want pending", st)
	}

	// Deny it properly, with a reason.
	step(t, alice, "deny form", chromedp.Navigate(s.base+"/ui/grants/"+g.ID), chromedp.WaitVisible("#deny"),
		chromedp.SendKeys("#deny-reason", "deleting seed data is not part of PR 42"))
	if st := click(t, alice, "#deny"); st != 200 {
		t.Fatalf("deny: status %d", st)
	}
	wantText(t, "deny result", run(t, alice, "result", chromedp.Text("#result")), "You denied this grant")
	if st := s.grant(dba, g.ID)["state"]; st != "denied" {
		t.Fatalf("grant is %v after the denial", st)
	}
}
