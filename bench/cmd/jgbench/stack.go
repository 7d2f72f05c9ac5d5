package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jitgate/jitgate/test/pgtest"
)

// Roles and objects the harness creates in database "bench".
const (
	benchDB     = "bench"
	staticUser  = "bench_static" // the static-password login of direct, relay, pgbouncer and psql -c
	targetName  = "bench-db"
	benchGroups = "bench-agents"
)

// customersSQL gives the masking rules something to mask in exec mode.
const customersSQL = `
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, card text);
INSERT INTO customers VALUES
 (1, 'Ada Lovelace', 'ada@example.com', '4111 1111 1111 1111'),
 (2, 'Grace Hopper', 'grace@example.org', '5500-0000-0000-0004'),
 (3, 'Alan Turing', 'alan@example.net', '340000000000009'),
 (4, 'Edsger Dijkstra', 'ewd@example.nl', NULL),
 (5, 'Barbara Liskov', 'liskov@example.edu', '4012888888881881');
`

// execSQL is the statement of the exec-mode comparison: masked columns, detectors on.
const execSQL = "SELECT id, name, email, card FROM customers ORDER BY id"

// grantSQL is the statement of the grant-issuance measurement (never run).
const grantSQL = "SELECT count(*) FROM customers"

const policyTmpl = `version: 1
# Written by bench/cmd/jgbench. jitgate dev adds its DEV-ONLY issuer.
issuers:
  - name: example
    issuer: https://idp.example.invalid/oauth2/default
    audience: api://jitgate
    groups_claim: groups
targets:
  - name: %[2]s
    kind: postgres
    address: %[1]s
    database: %[3]s
    credentials:
      source: local
      admin_dsn: env:BENCH_ADMIN_DSN
      read_role: bench_read
      write_role: bench_write
    masking:
      columns: ["public.customers.email", "public.customers.card"]
      detectors: [credit_card, email]
rules:
  - name: bench-agents
    when: '"%[4]s" in identity.groups'
    targets: [%[2]s]
    access: write
    max_ttl: 30m
`

// stack is everything the run started; stop ends it in reverse order.
type stack struct {
	log       *slog.Logger
	dir       string
	pg        *pgtest.Server
	staticPW  string
	relayAddr string
	bouncer   string // host:port of pgbouncer
	broker    string // http://host:port of jitgate dev
	dataDir   string
	token     string
	bin       string // the jitgate binary
	devPID    int
	stops     []func()
	versions  map[string]string
}

func (s *stack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// cleanEnv is the environment for client tools: no PG* or JITGATE_* from the
// caller's shell leaks into a measurement.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "JITGATE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func (s *stack) startPostgres(ctx context.Context, scale int) error {
	s.log.Info("starting PostgreSQL (test/pgtest)")
	pg, err := pgtest.StartServer()
	if err != nil {
		return err
	}
	s.pg = pg
	s.stops = append(s.stops, pg.Stop)
	s.staticPW = randHex(16)
	if err := pg.Exec(ctx, "postgres", "CREATE DATABASE "+benchDB); err != nil {
		return err
	}
	s.log.Info("pgbench -i", "scale", scale)
	init := exec.CommandContext(ctx, "pgbench", "-i", "-s", strconv.Itoa(scale), "-q", pg.AdminDSN(benchDB))
	init.Env = cleanEnv()
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	setup := customersSQL + `
CREATE ROLE bench_read NOLOGIN;
CREATE ROLE bench_write NOLOGIN;
GRANT bench_read TO bench_write;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_read;
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bench_write;
CREATE ROLE ` + staticUser + ` LOGIN PASSWORD '` + s.staticPW + `';
GRANT bench_write TO ` + staticUser + `;`
	if err := pg.Exec(ctx, benchDB, setup); err != nil {
		return err
	}
	if err := pg.Exec(ctx, benchDB, "VACUUM ANALYZE"); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, filepath.Join(pg.BinDir, "postgres"), "--version").Output()
	if err == nil {
		s.versions["postgres"] = strings.TrimSpace(string(out))
	}
	return nil
}

// startRelay starts `jgbench relay` (this binary) as its own process, like the
// proxies it is compared with.
func (s *stack) startRelay(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "relay", "-upstream", s.pg.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	s.stops = append(s.stops, func() {
		stdin.Close()
		waitOrKill(cmd, 5*time.Second)
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("relay did not report its address: %w", err)
	}
	s.relayAddr = strings.TrimSpace(line)
	return nil
}

func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// startPgbouncer runs pgbouncer in session mode with SCRAM and an auth_file, on
// a free loopback port. pgbouncer refuses to run as root; as root it runs as
// the postgres user (whom pgtest also runs PostgreSQL as).
func (s *stack) startPgbouncer(ctx context.Context) error {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return fmt.Errorf("pgbouncer not found (scripts/ensure-deps.sh bench installs it): %w", err)
	}
	dir := filepath.Join(s.dir, "pgbouncer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	ini := fmt.Sprintf(`[databases]
%[1]s = host=127.0.0.1 port=%[2]d dbname=%[1]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[3]s
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[4]s/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 32
logfile = %[4]s/pgbouncer.log
pidfile = %[4]s/pgbouncer.pid
log_connections = 0
log_disconnections = 0
`, benchDB, s.pg.Port, port, dir)
	files := map[string]string{
		"pgbouncer.ini": ini,
		// A plain-text password lets pgbouncer answer the client's SCRAM
		// exchange and run its own SCRAM exchange with PostgreSQL.
		"userlist.txt": fmt.Sprintf("%q %q\n", staticUser, s.staticPW),
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgbouncer refuses to run as root and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return err
		}
		if cred != nil {
			_ = os.Chown(p, int(cred.Uid), int(cred.Gid))
		}
	}
	if cred != nil {
		_ = os.Chown(dir, int(cred.Uid), int(cred.Gid))
		_ = os.Chmod(s.dir, 0o755) // the postgres user must reach dir
	}
	var logBuf syncBuffer
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pgbouncer: %w", err)
	}
	s.stops = append(s.stops, func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		waitOrKill(cmd, 5*time.Second)
	})
	if err := waitTCP(ctx, addr, 10*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		return fmt.Errorf("pgbouncer did not start: %v\n%s%s", err, logBuf.String(), b)
	}
	s.bouncer = addr
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		s.versions["pgbouncer"] = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	}
	return nil
}

func waitTCP(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not accept connections within %s", addr, within)
}

// startJitgate writes the bench policy and runs `jitgate dev` on a free port,
// then asks its dev issuer for a token in the bench group.
func (s *stack) startJitgate(ctx context.Context, bin string) error {
	policy := filepath.Join(s.dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(policyTmpl, s.pg.Addr(), targetName, benchDB, benchGroups)), 0o600); err != nil {
		return err
	}
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	s.dataDir = filepath.Join(s.dir, "jitgate-data")
	s.broker = "http://" + listen
	logf, err := os.Create(filepath.Join(s.dir, "jitgate-dev.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "dev", "--policy", policy, "--listen", listen, "--data-dir", s.dataDir, "--log-level", "warn")
	cmd.Env = cleanEnv("BENCH_ADMIN_DSN=" + s.pg.AdminDSN("postgres"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start jitgate dev: %w", err)
	}
	s.devPID = cmd.Process.Pid
	s.stops = append(s.stops, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
	if err := waitHTTP(ctx, s.broker+"/healthz", 30*time.Second); err != nil {
		b, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("jitgate dev: %v\n%s", err, b)
	}
	s.bin = bin
	return s.refreshToken(ctx)
}

// refreshToken asks the dev issuer for a new token. Dev tokens live minutes,
// shorter than a full run: every phase and every jitgate run takes a fresh one
// (outside the measured time).
func (s *stack) refreshToken(ctx context.Context) error {
	tok := exec.CommandContext(ctx, s.bin, "dev", "token", "--broker", s.broker, "--sub", "bench-agent", "--groups", benchGroups)
	tok.Env = cleanEnv()
	out, err := tok.Output()
	if err != nil {
		return fmt.Errorf("jitgate dev token: %v", err)
	}
	s.token = strings.TrimSpace(string(out))
	return nil
}

func waitHTTP(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy within %s", url, within)
}

// jitgateEnv is the environment of jitgate CLI commands.
func (s *stack) jitgateEnv() []string {
	return cleanEnv("JITGATE_BROKER="+s.broker, "JITGATE_TOKEN="+s.token)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
