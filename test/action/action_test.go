// Package action tests the repository's GitHub Action (action.yml) the way a
// runner executes it: action.yml is parsed, its composite `runs.steps` run
// one after another with bash (`bash --noprofile --norc -eo pipefail`, as the
// runner does), inputs and step outputs are substituted into each step's env,
// and GITHUB_OUTPUT, GITHUB_PATH, GITHUB_STEP_SUMMARY and RUNNER_TEMP behave as
// on a runner. ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN are answered by a local
// stand-in for GitHub's token service that returns a test-issuer token with
// GitHub's claims, and the action talks to a real `jitgate broker serve` with a
// real PostgreSQL behind it.
//
// The stand-in runner supports only what action.yml uses: bash `run:` steps,
// `env:` with ${{ inputs.* }}, and outputs from ${{ steps.*.outputs.* }}. Any
// other expression, and any ${{ }} inside a script, fails the test: inputs
// must reach scripts through env, never by text substitution (script injection).
package action

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/test/shopdb"
	teststack "github.com/jitgate/jitgate/test/stack"
)

var (
	repoRoot   string
	jitgateBin string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	os.Exit(teststack.Main(m, "action", &jitgateBin))
}

// actionFile is the part of action.yml the runner reads.
type actionFile struct {
	Inputs map[string]struct {
		Required bool   `yaml:"required"`
		Default  string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Value string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string `yaml:"using"`
		Steps []step `yaml:"steps"`
	} `yaml:"runs"`
}

type step struct {
	ID    string            `yaml:"id"`
	Name  string            `yaml:"name"`
	Shell string            `yaml:"shell"`
	Run   string            `yaml:"run"`
	Uses  string            `yaml:"uses"`
	If    string            `yaml:"if"`
	Env   map[string]string `yaml:"env"`
}

func loadAction(t *testing.T) actionFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a actionFile
	if err := yaml.Unmarshal(b, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	return a
}

// TestActionShape checks what a runner would refuse or what would be unsafe.
func TestActionShape(t *testing.T) {
	t.Parallel()
	a := loadAction(t)
	if a.Runs.Using != "composite" {
		t.Fatalf("runs.using = %q, want composite", a.Runs.Using)
	}
	for _, in := range []string{"broker", "audience", "target", "sql", "command", "format", "reason", "version", "binary"} {
		if _, ok := a.Inputs[in]; !ok {
			t.Errorf("input %s missing", in)
		}
	}
	for _, out := range []string{"grant-id", "recording"} {
		if _, ok := a.Outputs[out]; !ok {
			t.Errorf("output %s missing", out)
		}
	}
	for i, s := range a.Runs.Steps {
		if s.Shell != "bash" || s.Run == "" || s.Uses != "" || s.If != "" {
			t.Errorf("step %d (%s): want a bash run step (shell %q, uses %q, if %q)", i, s.ID, s.Shell, s.Uses, s.If)
		}
		if strings.Contains(s.Run, "${{") {
			t.Errorf("step %d (%s): a ${{ }} expression inside a script is a script-injection hole; pass it through env", i, s.ID)
		}
	}
}

// runner is a stand-in GitHub runner for one action invocation.
type runner struct {
	t       *testing.T
	action  actionFile
	inputs  map[string]string
	env     map[string]string
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	outputs map[string]map[string]string // step id → outputs
	// lastRunnerTemp is RUNNER_TEMP of the last run.
	lastRunnerTemp string
}

// result is what a workflow sees after the action ran.
type result struct {
	exit    int
	failed  string // id of the failing step
	outputs map[string]string
	stdout  string
	stderr  string
	summary string
}

var exprRE = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// eval substitutes the expressions the action may use; anything else fails.
func (r *runner) eval(s string) string {
	return exprRE.ReplaceAllStringFunc(s, func(m string) string {
		e := exprRE.FindStringSubmatch(m)[1]
		switch {
		case strings.HasPrefix(e, "inputs."):
			name := strings.TrimPrefix(e, "inputs.")
			in, ok := r.action.Inputs[name]
			if !ok {
				r.t.Fatalf("expression %q names an undeclared input", m)
			}
			if v, ok := r.inputs[name]; ok {
				return v
			}
			return in.Default
		case strings.HasPrefix(e, "steps."):
			parts := strings.Split(e, ".")
			if len(parts) != 4 || parts[2] != "outputs" {
				r.t.Fatalf("unsupported expression %q", m)
			}
			return r.outputs[parts[1]][parts[3]]
		case e == "github.action_path":
			return repoRoot
		}
		r.t.Fatalf("the stand-in runner does not support the expression %q", m)
		return ""
	})
}

func (r *runner) run(ctx context.Context) result {
	t := r.t
	for name, in := range r.action.Inputs {
		if _, given := r.inputs[name]; in.Required && !given {
			t.Fatalf("test bug: required input %s not given", name)
		}
	}
	for name := range r.inputs {
		if _, ok := r.action.Inputs[name]; !ok {
			t.Fatalf("input %s is not declared in action.yml", name)
		}
	}
	temp := t.TempDir()
	pathFile := filepath.Join(temp, "github_path")
	summaryFile := filepath.Join(temp, "step_summary")
	_ = os.WriteFile(pathFile, nil, 0o600)
	_ = os.WriteFile(summaryFile, nil, 0o600)
	runnerTemp := filepath.Join(temp, "runner_temp")
	_ = os.MkdirAll(runnerTemp, 0o700)
	r.lastRunnerTemp = runnerTemp
	r.outputs = map[string]map[string]string{}
	res := result{}
	for i, s := range r.action.Runs.Steps {
		id := s.ID
		if id == "" {
			id = fmt.Sprintf("__step%d", i)
		}
		outFile := filepath.Join(temp, id+".output")
		_ = os.WriteFile(outFile, nil, 0o600)
		script := filepath.Join(temp, id+".sh")
		if err := os.WriteFile(script, []byte(s.Run), 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for k, v := range r.env {
			env[k] = v
		}
		// GITHUB_PATH entries from earlier steps go in front of PATH.
		if b, _ := os.ReadFile(pathFile); len(b) > 0 {
			lines := strings.Fields(string(b))
			slices.Reverse(lines)
			env["PATH"] = strings.Join(lines, ":") + ":" + env["PATH"]
		}
		env["RUNNER_TEMP"], env["GITHUB_OUTPUT"], env["GITHUB_PATH"], env["GITHUB_STEP_SUMMARY"] = runnerTemp, outFile, pathFile, summaryFile
		env["GITHUB_ACTION_PATH"] = repoRoot
		for k, v := range s.Env {
			env[k] = r.eval(v)
		}
		cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Dir = temp
		cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err := cmd.Run()
		r.outputs[id] = parseOutputs(t, outFile)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res.exit, res.failed = ee.ExitCode(), id
			break
		}
		if err != nil {
			t.Fatalf("step %s: %v", id, err)
		}
	}
	res.outputs = map[string]string{}
	for name, o := range r.action.Outputs {
		res.outputs[name] = r.eval(o.Value)
	}
	b, _ := os.ReadFile(summaryFile)
	res.stdout, res.stderr, res.summary = r.stdout.String(), r.stderr.String(), string(b)
	return res
}

// parseOutputs reads a GITHUB_OUTPUT file: name=value lines and
// name<<DELIMITER heredocs.
func parseOutputs(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var val []string
			for sc.Scan() && sc.Text() != delim {
				val = append(val, sc.Text())
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("GITHUB_OUTPUT line %q is neither name=value nor a heredoc", line)
		}
		out[name] = val
	}
	return out
}

// stack is PostgreSQL, a test issuer over HTTPS, `jitgate broker serve`, and a
// stand-in for GitHub's OIDC token service.
type stack struct {
	t       *testing.T
	broker  string
	issuer  *devissuer.Issuer
	tokens  *tokenService
	tokURL  string
	logs    *teststack.Buffer
	dataDir string
}

// tokenService answers ACTIONS_ID_TOKEN_REQUEST_URL: each runner request token
// is one job, with its own GitHub claims.
type tokenService struct {
	mu     sync.Mutex
	iss    *devissuer.Issuer
	jobs   map[string]map[string]any
	calls  map[string]int
	audWas map[string][]string
}

func (s *tokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	claims, ok := s.jobs[bearer]
	if !ok || r.URL.Query().Get("api-version") != "2.0" {
		http.Error(w, `{"message":"bad request token"}`, http.StatusUnauthorized)
		return
	}
	aud := r.URL.Query().Get("audience")
	s.calls[bearer]++
	s.audWas[bearer] = append(s.audWas[bearer], aud)
	sub, _ := claims["sub"].(string)
	tok, err := s.iss.Token(sub, nil, aud, claims)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"count": 1, "value": tok})
}

// job registers a job with GitHub's claims for a pull request of acme/shop
// (event may be overridden) and returns its runner request token.
func (s *tokenService) job(name, event string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := "runner-" + name
	s.jobs[tok] = map[string]any{
		"sub": "repo:acme/shop:" + event, "repository": "acme/shop", "repository_owner": "acme", "event_name": event,
		"ref": "refs/pull/42/merge", "sha": "0123abcd", "actor": "octocat", "run_id": "4242", "workflow": "db checks",
		"job_workflow_ref": "acme/shop/.github/workflows/pr.yml@refs/pull/42/merge",
	}
	return tok
}

func (s *tokenService) callsFor(tok string) (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[tok], slices.Clone(s.audWas[tok])
}

const policyTmpl = `version: 1
issuers:
  - name: github
    issuer: %[1]s
    audience: jitgate-ci
    groups_claim: groups
targets:
  - name: orders-db
    kind: postgres
    address: %[2]s
    database: shop
    credentials: {source: local, admin_dsn: env:SHOP_ADMIN_DSN, read_role: shop_read, write_role: shop_write}
    masking:
      columns: ["public.users.password_hash", "public.users.card_number", "*.email"]
      detectors: [credit_card, email]
  - name: test-db
    kind: postgres
    address: %[2]s
    database: shop_test
    credentials: {source: local, admin_dsn: env:SHOP_ADMIN_DSN, read_role: test_read, write_role: test_write}
rules:
  - name: no-pull-request-target
    effect: deny
    when: 'has(claims.event_name) && claims.event_name == "pull_request_target"'
    targets: ["*"]
  - name: pr-reads-orders
    when: 'identity.issuer == "github" && claims.repository == "acme/shop" && claims.event_name == "pull_request"'
    targets: [orders-db]
    access: read
  - name: pr-writes-test-db
    when: 'identity.issuer == "github" && claims.repository == "acme/shop" && claims.event_name == "pull_request"'
    targets: [test-db]
    access: write
    approval: {approvers: {groups: [dba]}, quorum: 1, timeout: 15m}
`

func startStack(t *testing.T) *stack {
	t.Helper()
	pg := teststack.StartShop(t)
	its := teststack.StartIssuer(t)
	iss := its.Issuer
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(fmt.Sprintf(policyTmpl, its.URL, pg.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, issuer: iss, dataDir: filepath.Join(dir, "data")}
	s.tokens = &tokenService{iss: iss, jobs: map[string]map[string]any{}, calls: map[string]int{}, audWas: map[string][]string{}}
	tts := httptest.NewServer(s.tokens)
	t.Cleanup(tts.Close)
	// GitHub's URL already carries a query; the CLI appends &audience=.
	s.tokURL = tts.URL + "/_apis/distributedtask/oidctoken?api-version=2.0"

	listen := teststack.FreeAddr(t)
	s.broker = "http://" + listen
	b := teststack.StartProcess(t, teststack.ProcessConfig{Bin: jitgateBin,
		Args: []string{"broker", "serve", "--policy", policyPath, "--listen", listen, "--data-dir", s.dataDir, "--log-level", "warn"},
		Env:  append(append(os.Environ(), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres")), its.Env()...)})
	s.logs = b.Logs
	teststack.WaitHealthy(t, s.broker+"/healthz", b.Exited())
	return s
}

// newRunner prepares a runner for one job. Only standard system directories
// are on PATH: jitgate itself must come from the action's install step.
func (s *stack) newRunner(t *testing.T, runnerToken string, inputs map[string]string) *runner {
	env := map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": os.Getenv("HOME"), "LANG": "C.UTF-8",
		"GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "4242",
		"GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/42/merge", "GITHUB_SHA": "0123abcd",
		"ACTIONS_ID_TOKEN_REQUEST_URL": s.tokURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": runnerToken,
		// The runner's environment must not leak a token or broker into the action.
		"JITGATE_TOKEN": "should-be-ignored",
	}
	if runnerToken == "" {
		delete(env, "ACTIONS_ID_TOKEN_REQUEST_URL")
		delete(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	}
	in := map[string]string{"broker": s.broker, "audience": "jitgate-ci", "binary": jitgateBin}
	for k, v := range inputs {
		in[k] = v
	}
	return &runner{t: t, action: loadAction(t), inputs: in, env: env}
}

func (s *stack) api(tok, method, path string, body any, out any) int {
	s.t.Helper()
	code, raw, err := teststack.Call(s.broker, tok, method, path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return code
}

var grantIDRE = regexp.MustCompile(`^g_[A-Za-z0-9_-]+$`)

func TestAction(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := context.Background()

	t.Run("read with masking, csv", func(t *testing.T) {
		t.Parallel()
		job := s.tokens.job("csv", "pull_request")
		res := s.newRunner(t, job, map[string]string{"target": "orders-db", "format": "csv",
			"sql": "SELECT name, email, card_number FROM users ORDER BY id"}).run(ctx)
		if res.exit != 0 {
			t.Fatalf("exit %d in %s\nstdout %s\nstderr %s", res.exit, res.failed, res.stdout, res.stderr)
		}
		if !strings.HasPrefix(res.stdout, `"name","email","card_number"`) || !strings.Contains(res.stdout, `"Ada Lovelace"`) {
			t.Fatalf("stdout %s", res.stdout)
		}
		for _, secret := range slices.Concat(shopdb.Cards, shopdb.Emails) {
			if strings.Contains(res.stdout+res.stderr+res.summary, secret) {
				t.Errorf("planted %q in the job log", secret)
			}
		}
		if !grantIDRE.MatchString(res.outputs["grant-id"]) {
			t.Fatalf("grant-id output %q", res.outputs["grant-id"])
		}
		if _, err := os.Stat(res.outputs["recording"]); err != nil || !strings.HasPrefix(res.outputs["recording"], s.dataDir) {
			t.Fatalf("recording output %q: %v", res.outputs["recording"], err)
		}
		b, err := os.ReadFile(res.outputs["result-file"])
		if err != nil || !strings.Contains(string(b), res.outputs["grant-id"]) {
			t.Fatalf("result-file: %v %s", err, b)
		}
		if !strings.Contains(res.summary, res.outputs["grant-id"]) || !strings.Contains(res.summary, "SELECT 3") {
			t.Errorf("step summary %q", res.summary)
		}
		// One token request, for the configured audience; the runner's stray
		// JITGATE_TOKEN was not used.
		if n, auds := s.tokens.callsFor(job); n != 1 || auds[0] != "jitgate-ci" {
			t.Errorf("token service: %d calls, audiences %v", n, auds)
		}
		// The grant carries the PR context for approvers and audit.
		var g map[string]any
		s.api(s.ghToken(t, "pull_request"), "GET", "/v1/grants/"+res.outputs["grant-id"], nil, &g)
		if c, _ := g["claims"].(map[string]any); c["repository"] != "acme/shop" || c["ref"] != "refs/pull/42/merge" {
			t.Errorf("grant claims %v", g["claims"])
		}
	})

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		res := s.newRunner(t, s.tokens.job("table", "pull_request"), map[string]string{"target": "orders-db",
			"sql": "SELECT id, item FROM orders WHERE id IN (2, 3) ORDER BY id"}).run(ctx)
		if res.exit != 0 || !regexp.MustCompile(`(?m)^id\s+item\n2\s+compiler\n3\s+bombe\nSELECT 2$`).MatchString(res.stdout) {
			t.Fatalf("exit %d\nstdout %q\nstderr %s", res.exit, res.stdout, res.stderr)
		}
	})

	t.Run("denied write fails the step with exit 3", func(t *testing.T) {
		t.Parallel()
		res := s.newRunner(t, s.tokens.job("denied", "pull_request"), map[string]string{"target": "orders-db",
			"sql": "DELETE FROM orders WHERE id = 1"}).run(ctx)
		if res.exit != 3 || res.failed != "run" || !strings.Contains(res.stderr, "denied") || !strings.Contains(res.stdout, "::error title=jitgate::") {
			t.Fatalf("exit %d in %s\nstdout %s\nstderr %s", res.exit, res.failed, res.stdout, res.stderr)
		}
		if res.outputs["grant-id"] != "" {
			t.Errorf("grant-id output on a denial: %q", res.outputs["grant-id"])
		}
	})

	t.Run("pull_request_target is refused", func(t *testing.T) {
		t.Parallel()
		res := s.newRunner(t, s.tokens.job("prt", "pull_request_target"), map[string]string{"target": "orders-db",
			"sql": "SELECT 1"}).run(ctx)
		if res.exit != 3 || !strings.Contains(res.stderr, "no-pull-request-target") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", res.exit, res.stdout, res.stderr)
		}
	})

	t.Run("write after approval", func(t *testing.T) {
		t.Parallel()
		done := make(chan result, 1)
		r := s.newRunner(t, s.tokens.job("approval", "pull_request"), map[string]string{"target": "test-db", "wait-timeout": "5m",
			"sql": "INSERT INTO orders (user_id, item, amount) VALUES (1, 'ci fixture', 1.00)", "reason": "PR #42 fixture"})
		go func() { done <- r.run(ctx) }()
		dba := s.ghToken(t, "pull_request", "dba")
		var id string
		deadline := time.Now().Add(2 * time.Minute)
		for id == "" && time.Now().Before(deadline) {
			var out struct {
				Grants []struct {
					ID     string `json:"id"`
					Reason string `json:"reason"`
				} `json:"grants"`
			}
			s.api(dba, "GET", "/v1/grants?state=pending&target=test-db", nil, &out)
			for _, g := range out.Grants {
				if g.Reason == "PR #42 fixture" {
					id = g.ID
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if id == "" {
			t.Fatal("no pending grant appeared")
		}
		if code := s.api(dba, "POST", "/v1/grants/"+id+"/approve", map[string]string{"reason": "fixture ok"}, nil); code != 200 {
			t.Fatalf("approve: %d", code)
		}
		res := <-done
		if res.exit != 0 || !strings.Contains(res.stdout, "INSERT 0 1") || res.outputs["grant-id"] != id || res.outputs["recording"] == "" {
			t.Fatalf("exit %d\noutputs %v\nstdout %s\nstderr %s", res.exit, res.outputs, res.stdout, res.stderr)
		}
	})

	t.Run("connect runs a command against the session proxy", func(t *testing.T) {
		t.Parallel()
		res := s.newRunner(t, s.tokens.job("connect", "pull_request"), map[string]string{"target": "orders-db",
			"command": "n=$(psql -X -A -t -c 'SELECT count(*) FROM orders')\necho \"orders=$n\""}).run(ctx)
		if res.exit != 0 || !strings.Contains(res.stdout, "orders=4") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", res.exit, res.stdout, res.stderr)
		}
		if !grantIDRE.MatchString(res.outputs["grant-id"]) || res.outputs["recording"] == "" {
			t.Fatalf("outputs %v\nstderr %s", res.outputs, res.stderr)
		}
		// The command's own failure is the step's failure.
		res = s.newRunner(t, s.tokens.job("connect-fail", "pull_request"), map[string]string{"target": "orders-db",
			"command": "psql -X -v ON_ERROR_STOP=1 -c 'DELETE FROM orders'"}).run(ctx)
		if res.exit == 0 || !grantIDRE.MatchString(res.outputs["grant-id"]) {
			t.Fatalf("exit %d outputs %v\nstderr %s", res.exit, res.outputs, res.stderr)
		}
	})

	t.Run("input and environment errors", func(t *testing.T) {
		t.Parallel()
		job := s.tokens.job("inputs", "pull_request")
		for _, tc := range []struct {
			name   string
			token  string
			inputs map[string]string
			exit   int
			want   string
		}{
			{"sql and command", job, map[string]string{"target": "orders-db", "sql": "SELECT 1", "command": "true"}, 2, "not both"},
			{"neither", job, map[string]string{"target": "orders-db"}, 2, "give sql (exec) or command"},
			{"bad format", job, map[string]string{"target": "orders-db", "sql": "SELECT 1", "format": "xml"}, 2, "format must be"},
			{"no id-token permission", "", map[string]string{"target": "orders-db", "sql": "SELECT 1"}, 2, "id-token: write"},
			{"missing binary", job, map[string]string{"target": "orders-db", "sql": "SELECT 1", "binary": "/nonexistent/jitgate"}, 2, "not an executable file"},
			{"wrong audience", job, map[string]string{"target": "orders-db", "sql": "SELECT 1", "audience": "someone-else"}, 2, "audience"},
		} {
			res := s.newRunner(t, tc.token, tc.inputs).run(ctx)
			if res.exit != tc.exit || !strings.Contains(res.stdout+res.stderr, tc.want) {
				t.Errorf("%s: exit %d (want %d)\nstdout %s\nstderr %s", tc.name, res.exit, tc.exit, res.stdout, res.stderr)
			}
		}
	})

	// Installing with Go: a stand-in `go` on PATH records how it was called and
	// installs the binary TestMain built (building cmd/jitgate itself is what
	// TestMain already does, so the real compiler adds nothing here but time).
	t.Run("installs with go build or go install", func(t *testing.T) {
		t.Parallel()
		shimDir := t.TempDir()
		shim := "#!/bin/bash\n" +
			"echo \"$PWD|$*|GOBIN=${GOBIN:-}\" >> \"$SHIM_LOG\"\n" +
			"case \"$1\" in\n" +
			"  build) while [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then cp \"$SHIM_BIN\" \"$2\"; fi; shift; done ;;\n" +
			"  install) cp \"$SHIM_BIN\" \"$GOBIN/jitgate\" ;;\n" +
			"  *) exit 1 ;;\n" +
			"esac\n"
		if err := os.WriteFile(filepath.Join(shimDir, "go"), []byte(shim), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, version, want string
		}{
			{"the action's own checkout", "", "|build -trimpath -o %s/jitgate-bin/jitgate ./cmd/jitgate|GOBIN="},
			{"a released version", "v0.9.1", "|install github.com/jitgate/jitgate/cmd/jitgate@v0.9.1|GOBIN=%s/jitgate-bin"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				log := filepath.Join(t.TempDir(), "go.log")
				r := s.newRunner(t, s.tokens.job("build-"+tc.version, "pull_request"), map[string]string{"target": "orders-db", "format": "json",
					"sql": "SELECT item FROM orders WHERE id = 1", "version": tc.version})
				delete(r.inputs, "binary")
				r.env["PATH"] = shimDir + ":" + r.env["PATH"]
				r.env["SHIM_LOG"], r.env["SHIM_BIN"] = log, jitgateBin
				res := r.run(ctx)
				if res.exit != 0 || !strings.Contains(res.stdout, "analytical engine") {
					t.Fatalf("exit %d in %s\nstdout %s\nstderr %s", res.exit, res.failed, res.stdout, res.stderr)
				}
				b, _ := os.ReadFile(log)
				calls := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(calls) != 1 {
					t.Fatalf("go called %d times: %q", len(calls), calls)
				}
				dir, rest, _ := strings.Cut(calls[0], "|")
				temp := r.lastRunnerTemp
				if want := fmt.Sprintf(tc.want, temp); "|"+rest != want || (tc.version == "" && dir != repoRoot) {
					t.Fatalf("go called as %q in %s, want %q in %s", rest, dir, want, repoRoot)
				}
			})
		}
		// No Go and no binary: a clear error, not a half-installed step.
		r := s.newRunner(t, s.tokens.job("nogo", "pull_request"), map[string]string{"target": "orders-db", "sql": "SELECT 1"})
		delete(r.inputs, "binary")
		for _, d := range strings.Split(r.env["PATH"], ":") {
			if _, err := os.Stat(filepath.Join(d, "go")); err == nil {
				t.Skipf("go is installed in %s, on the stand-in runner's PATH", d)
			}
		}
		if res := r.run(ctx); res.exit != 2 || res.failed != "install" || !strings.Contains(res.stdout, "actions/setup-go") {
			t.Fatalf("exit %d in %s\nstdout %s\nstderr %s", res.exit, res.failed, res.stdout, res.stderr)
		}
	})
}

// ghToken signs a token for this stack's GitHub issuer (for API calls made by
// the test itself, e.g. an approver).
func (s *stack) ghToken(t *testing.T, event string, groups ...string) string {
	t.Helper()
	sub := "repo:acme/shop:" + event
	if len(groups) > 0 {
		sub = "human:" + strings.Join(groups, ",")
	}
	tok, err := s.issuer.Token(sub, groups, "jitgate-ci", map[string]any{"repository": "acme/shop", "event_name": event})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
