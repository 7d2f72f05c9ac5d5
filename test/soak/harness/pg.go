package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// StopPG shuts PostgreSQL down (fast mode: sessions are terminated) and
// leaves it down until StartPG.
func (s *Stack) StopPG() {
	s.T.Helper()
	if out, err := s.pgctl("-m", "fast", "-w", "-t", "20", "stop"); err != nil {
		s.T.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// StartPG starts PostgreSQL again on the same port and data; extra are more
// server options ("-c max_connections=500", later ones win).
func (s *Stack) StartPG(extra ...string) {
	s.T.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c max_connections=300", s.PG.Port, s.PG.Dir)
	for _, e := range extra {
		opts += " " + e
	}
	if out, err := s.pgctl("-w", "-t", "30", "start", "-l", filepath.Join(s.PG.Dir, "restart.log"), "-o", opts); err != nil {
		s.T.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

// pgctl runs pg_ctl as the owner of the cluster's data directory (PostgreSQL
// refuses to run as root).
func (s *Stack) pgctl(args ...string) ([]byte, error) {
	data := filepath.Join(s.PG.Dir, "data")
	fi, err := os.Stat(data)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	cmd := exec.Command(filepath.Join(s.PG.BinDir, "pg_ctl"), append([]string{"-D", data}, args...)...)
	cmd.Dir = s.PG.Dir
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: st.Uid, Gid: st.Gid}}
	}
	return cmd.CombinedOutput()
}
