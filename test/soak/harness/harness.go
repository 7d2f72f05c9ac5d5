// Package harness runs a whole jitgate stack for the load and fault tests
// (test/soak, test/faults): a real PostgreSQL 15 (test/pgtest) with the shop
// databases, a test OIDC issuer over HTTPS, and the real `jitgate broker serve`
// binary, which launches a real proxy process per session grant. It sits
// outside the request flow and drives it end to end: token → API → grant →
// credential → proxy → PostgreSQL, then reads what the stack exposes (its
// Prometheus metrics, its audit log, its logs, /proc) to check what happened.
//
//	os.Exit(stack.Main(m, "soak", &bin))       // once, in TestMain
//	s := harness.Start(t, harness.Options{Bin: bin, Metrics: true})
//	sess := s.OpenSession(s.Token("agent-1", "ai-agents"), "orders-db", time.Minute)
//	m := s.ScrapeBroker()
package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/stack"
)

// Options shape one stack.
type Options struct {
	// Bin is the jitgate binary (stack.Main or stack.Build). Required.
	Bin string
	// Metrics turns on --metrics-listen (and with it the proxies' metrics).
	Metrics bool
	// LogLevel is the broker's --log-level; default "warn".
	LogLevel string
	// Args are extra `broker serve` flags (--sweep-every 200ms, ...).
	Args []string
}

// Stack is one running stack. Everything stops when the test ends.
type Stack struct {
	T      testing.TB
	PG     *pgtest.Server
	Issuer *devissuer.Issuer
	// Broker is the API's base URL; MetricsAddr the broker's metrics listener.
	Broker, MetricsAddr string
	DataDir             string
	// AdminRelay sits between the broker and PostgreSQL on the relay-db
	// target's admin connection only (the data path goes direct): closing it
	// takes that target's credential source down.
	AdminRelay *Relay
	// Logs is everything the broker (and the proxies it launched) wrote.
	Logs *stack.Buffer

	opts   Options
	env    []string
	args   []string
	mu     sync.Mutex
	broker *stack.Process
}

// Policy targets: orders-db (the shop policy's: column rules and detectors),
// soak-db (same database, detectors only, so a proxy holds one upstream
// connection per client), relay-db (its admin DSN goes through AdminRelay),
// test-db (writes need a dba's approval). Agents in group ai-agents read the
// first three; the rule is agents-read-orders.
const extraTargets = `  - name: soak-db
    kind: postgres
    address: %[1]s
    database: shop
    credentials: {source: local, admin_dsn: env:SHOP_ADMIN_DSN, read_role: shop_read, write_role: shop_write}
    masking: {detectors: [credit_card, email]}
  - name: relay-db
    kind: postgres
    address: %[1]s
    database: shop
    credentials: {source: local, admin_dsn: env:RELAY_ADMIN_DSN, read_role: shop_read, write_role: shop_write}
`

// Start brings a stack up and waits for the broker to answer /healthz.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	pg := stack.StartShop(t)
	iss := stack.StartIssuer(t)
	dir := t.TempDir()

	relay := NewRelay(t, pg.Addr())
	pol := iss.TrustIn(shopdb.PolicyFor(pg.Addr()))
	pol = strings.Replace(pol, "rules:\n", fmt.Sprintf(extraTargets, pg.Addr())+"rules:\n", 1)
	pol = strings.Replace(pol, "targets: [orders-db]", "targets: [orders-db, soak-db, relay-db]", 1)
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := stack.FreeAddr(t)
	s := &Stack{T: t, PG: pg, Issuer: iss.Issuer, Broker: "http://" + listen, DataDir: filepath.Join(dir, "data"),
		AdminRelay: relay, Logs: &stack.Buffer{}, opts: opts}
	relayDSN := strings.Replace(pg.AdminDSN("postgres"), pg.Addr(), relay.Addr(), 1)
	s.env = append(os.Environ(), "SHOP_ADMIN_DSN="+pg.AdminDSN("postgres"), "RELAY_ADMIN_DSN="+relayDSN,
		"SSL_CERT_FILE="+iss.CAFile, "JITGATE_BROKER="+s.Broker)
	s.args = []string{"broker", "serve", "--policy", policyPath, "--listen", listen, "--data-dir", s.DataDir, "--log-level", opts.LogLevel}
	if opts.Metrics {
		s.MetricsAddr = stack.FreeAddr(t)
		s.args = append(s.args, "--metrics-listen", s.MetricsAddr)
	}
	s.args = append(s.args, opts.Args...)
	t.Cleanup(s.logOnFailure)
	s.StartBroker()
	return s
}

// StartBroker starts `jitgate broker serve` on the stack's data directory
// (again, after Kill) and waits until it is healthy. Each start is stopped
// when the test ends.
func (s *Stack) StartBroker() {
	s.T.Helper()
	p := stack.StartProcess(s.T, stack.ProcessConfig{Bin: s.opts.Bin, Args: s.args, Env: s.env,
		Logs: s.Logs, StopGrace: 20 * time.Second, Quiet: true})
	s.mu.Lock()
	s.broker = p
	s.mu.Unlock()
	stack.WaitHealthy(s.T, s.Broker+"/healthz", p.Exited())
}

func (s *Stack) process() *stack.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broker
}

// PID is the broker's process id.
func (s *Stack) PID() int { return s.process().PID() }

// Kill sends the broker SIGKILL and waits for it to be gone. Its proxies get
// SIGTERM from the kernel (PR_SET_PDEATHSIG) and end on their own.
func (s *Stack) Kill() { s.process().Kill() }

// Stop sends the broker SIGTERM and waits (SIGKILL to its group after 20s).
func (s *Stack) Stop() { s.process().Stop() }

// logOnFailure runs after every broker start's own cleanup (cleanups run
// last-in first-out), so the log is complete.
func (s *Stack) logOnFailure() {
	if s.T.Failed() {
		s.T.Logf("jitgate broker log:\n%s", tail(s.Logs.String(), 200))
	}
}

// Token signs a token for sub in groups.
func (s *Stack) Token(sub string, groups ...string) string {
	s.T.Helper()
	tok, err := s.Issuer.Token(sub, groups, "jitgate", nil)
	if err != nil {
		s.T.Fatal(err)
	}
	return tok
}

// API calls the broker's HTTP API with tok and decodes the JSON answer. It is
// safe to call from several goroutines; errors are returned, not fatal.
func (s *Stack) API(tok, method, path string, body any) (int, map[string]any, error) {
	return stack.API(s.Broker, tok, method, path, body)
}

// Session is an open session grant.
type Session struct {
	GrantID string
	// DSN reaches the grant's proxy with the one-time grant secret.
	DSN string
}

// OpenSession requests a read session grant on target and opens its proxy.
func (s *Stack) OpenSession(tok, target string, ttl time.Duration) (*Session, error) {
	code, g, err := s.API(tok, "POST", "/v1/grants", map[string]any{"target": target, "mode": "session", "access": "read", "ttl": ttl.String()})
	if err != nil {
		return nil, err
	}
	if code != http.StatusCreated {
		return nil, fmt.Errorf("request grant: %d %v", code, g)
	}
	id, _ := g["id"].(string)
	code, body, err := s.API(tok, "POST", "/v1/grants/"+id+"/session", nil)
	if err != nil {
		return &Session{GrantID: id}, err
	}
	if code != http.StatusOK {
		return &Session{GrantID: id}, fmt.Errorf("open session %s: %d %v", id, code, body)
	}
	dsn := fmt.Sprintf("postgres://%s:%s@%s:%s/%s?sslmode=disable", body["user"], body["password"], body["host"], body["port"], body["database"])
	return &Session{GrantID: id, DSN: dsn}, nil
}

// Grant fetches one grant as its requester sees it.
func (s *Stack) Grant(tok, id string) map[string]any {
	s.T.Helper()
	code, g, err := s.API(tok, "GET", "/v1/grants/"+id, nil)
	if err != nil || code != 200 {
		s.T.Fatalf("get grant %s: %d %v %v", id, code, g, err)
	}
	return g
}

// WaitGrant polls grant id until ok accepts it or timeout passes; it returns
// the last view.
func (s *Stack) WaitGrant(tok, id string, timeout time.Duration, ok func(map[string]any) bool) map[string]any {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g := s.Grant(tok, id)
		if ok(g) || time.Now().After(deadline) {
			return g
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Roles lists the per-grant roles (jg_*) that exist in the cluster, with
// their VALID UNTIL.
func (s *Stack) Roles() map[string]string {
	s.T.Helper()
	out, err := exec.Command("psql", "-X", "-A", "-t", "-F", "|", s.PG.AdminDSN("postgres"), "-c",
		`SELECT rolname, coalesce(rolvaliduntil::text, '') FROM pg_roles WHERE rolname LIKE 'jg\_%' ORDER BY 1`).CombinedOutput()
	if err != nil {
		s.T.Fatalf("list roles: %v: %s", err, out)
	}
	roles := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name, until, ok := strings.Cut(line, "|"); ok {
			roles[name] = until
		}
	}
	return roles
}

// AuditEvent is one line of the broker's audit log (the fields tests read).
type AuditEvent struct {
	Type    string `json:"type"`
	GrantID string `json:"grant_id"`
	Actor   string `json:"actor"`
	Target  string `json:"target"`
	LeaseID string `json:"lease_id"`
	Detail  string `json:"detail"`
}

// Audit reads the audit log; grantID "" returns every event.
func (s *Stack) Audit(grantID string) []AuditEvent {
	s.T.Helper()
	f, err := os.Open(filepath.Join(s.DataDir, "audit.jsonl"))
	if err != nil {
		s.T.Fatal(err)
	}
	defer f.Close()
	var evs []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			s.T.Fatalf("audit line: %v: %s", err, sc.Bytes())
		}
		if grantID == "" || ev.GrantID == grantID {
			evs = append(evs, ev)
		}
	}
	return evs
}

// ProxyMetricsAddr is where grant id's proxy serves metrics (from its
// session.started audit event).
func (s *Stack) ProxyMetricsAddr(id string) string {
	s.T.Helper()
	for _, ev := range s.Audit(id) {
		if ev.Type == "session.started" {
			if _, after, ok := strings.Cut(ev.Detail, "metrics="); ok {
				return strings.Fields(after)[0]
			}
		}
	}
	s.T.Fatalf("grant %s: no proxy metrics address in its session.started event", id)
	return ""
}

// ProxyPIDs lists the broker's proxy children (jitgate __proxy) from /proc.
//
// Only proxies serving a grant count: those with a recording (.jgr) open.
// The broker also keeps one spare proxy started ahead, waiting for a spec
// and holding nothing; SparePIDs lists it.
func (s *Stack) ProxyPIDs() []int {
	var out []int
	for _, pid := range Children(s.PID(), "__proxy") {
		if holdsRecording(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// SparePIDs lists the broker's proxies that wait for a spec (no recording open).
func (s *Stack) SparePIDs() []int {
	var out []int
	for _, pid := range Children(s.PID(), "__proxy") {
		if !holdsRecording(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// holdsRecording reports whether process pid has a recording file open.
func holdsRecording(pid int) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasSuffix(target, ".jgr") {
			return true
		}
	}
	return false
}

// Children lists the processes whose parent is ppid and whose command line
// contains arg.
func Children(ppid int, arg string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(ppid) {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cl, []byte(arg)) {
			out = append(out, pid)
		}
	}
	return out
}

// RSS is a process's resident set size in bytes (VmRSS in /proc/PID/status)
// and the anonymous part of it (RssAnon: heap and stacks, private to the
// process; the rest is mostly the binary's pages, shared between proxies).
func RSS(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		for key, dst := range map[string]*int64{"VmRSS:": &rss, "RssAnon:": &anon} {
			if v, ok := strings.CutPrefix(line, key); ok {
				f := strings.Fields(v)
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("pid %d: %s %w", pid, key, err)
				}
				*dst = kb * 1024
				found++
			}
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("pid %d: no VmRSS/RssAnon", pid)
	}
	return rss, anon, nil
}

// OpenFDs counts a process's open file descriptors.
func OpenFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
