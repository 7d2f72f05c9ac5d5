// Package pgtest starts a real, throw-away PostgreSQL server for tests: initdb into a
// temporary directory, listening on a free loopback port, with scram-sha-256
// authentication and a superuser whose password is returned in the admin DSN.
//
// It needs the Debian package postgresql-15 (`make test` installs it when missing).
// When the test process runs as root, the server runs as the "postgres" user, since
// PostgreSQL refuses to run as root.
//
//	srv := pgtest.Start(t)           // stopped by t.Cleanup
//	conn, _ := pgx.Connect(ctx, srv.AdminDSN("postgres"))
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running PostgreSQL cluster.
type Server struct {
	Host     string
	Port     int
	Password string // of the superuser "postgres"
	Dir      string
	BinDir   string
	cmd      *exec.Cmd
	runAs    *syscall.Credential
}

// BinDir finds PostgreSQL's versioned server binary directory (newest first).
func BinDir() (string, error) {
	if d := os.Getenv("JITGATE_PG_BIN"); d != "" {
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("pgtest: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: install the Debian package postgresql-15 (make test does this as root)")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

// Start initialises and starts a cluster; it is stopped and removed by tb.Cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := StartServer()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Stop() })
	return s
}

// StartServer starts a cluster outside a test (demo, benchmarks). Call Stop.
func StartServer() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jitgate-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", BinDir: bin, Dir: dir, Password: randHex(16)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.runAs = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.runAs != nil {
		_ = os.Chown(pwfile, int(s.runAs.Uid), int(s.runAs.Gid))
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = freePort()
		s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.Port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+dir,
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=300", "-c", "shared_buffers=64MB")
		var logBuf bytes.Buffer
		s.cmd.Stdout, s.cmd.Stderr = &logBuf, &logBuf
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.runAs, Setpgid: true}
		if err := s.cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: start postgres: %w", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- s.cmd.Wait() }()
		if err := s.waitReady(exited); err == nil {
			go func() { <-exited }()
			s.cmd.Process.Release()
			return s, nil
		} else if attempt == 4 {
			s.kill()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: postgres did not start: %v\n%s", err, logBuf.String())
		}
		s.kill()
	}
	return nil, fmt.Errorf("pgtest: unreachable")
}

func (s *Server) waitReady(exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			// The port answers; make sure the server accepts logins.
			out, err := exec.Command(filepath.Join(s.BinDir, "pg_isready"), "-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", "postgres").CombinedOutput()
			if err == nil {
				return nil
			}
			_ = out
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out")
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// AdminDSN is a superuser URL for database db.
func (s *Server) AdminDSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", s.Password), Host: s.Addr(), Path: "/" + db}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// PID is the postmaster's process id.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop shuts the server down (fast mode) and removes its directory.
func (s *Server) Stop() {
	_, _ = s.run(filepath.Join(s.BinDir, "pg_ctl"), "-D", filepath.Join(s.Dir, "data"), "-m", "immediate", "-w", "-t", "20", "stop")
	s.kill()
	os.RemoveAll(s.Dir)
}

// Restart stops and starts the server on the same port, keeping its data.
func (s *Server) Restart() error {
	if out, err := s.run(filepath.Join(s.BinDir, "pg_ctl"), "-D", filepath.Join(s.Dir, "data"), "-m", "fast", "-w", "-t", "20", "restart",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c max_connections=300", s.Port, s.Dir),
		"-l", filepath.Join(s.Dir, "restart.log")); err != nil {
		return fmt.Errorf("pgtest: restart: %v\n%s", err, out)
	}
	s.cmd = nil // the new postmaster belongs to pg_ctl; Stop uses pg_ctl
	return nil
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Exec runs SQL statements as the superuser with psql (for seeding).
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	cmd := exec.CommandContext(ctx, "psql", "-v", "ON_ERROR_STOP=1", "-q", "-X", s.AdminDSN(db), "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: psql: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.runAs}
	cmd.Dir = s.Dir
	return cmd.CombinedOutput()
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
