// Package sshtest starts a real, throw-away OpenSSH server for tests: sshd -D
// -e with its own config, host key and trusted user CA in a temporary
// directory, listening on a free loopback port, accepting only certificates
// signed by the given CA for one unprivileged login user.
//
// It needs the Debian package openssh-server (`make test` installs it when
// missing). sshd wants its privilege-separation directory /run/sshd; Start
// creates it when running as root.
//
// The login user: as root, Start uses (and creates on first use, with
// `useradd -m -s /bin/bash jitgate-test` and `usermod -p '*'` so the account is
// not locked — sshd refuses locked accounts even for certificate logins) the
// user DefaultUser. Not as root, sshd can only log in the user running it, so
// the current user is used.
//
//	srv := sshtest.Start(t, sshtest.Config{TrustedUserCAKeys: [][]byte{caLine}})
//	// srv.Addr, srv.User, srv.KnownHosts (a known_hosts line for the host key)
package sshtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultUser is the login user tests use when they run as root.
const DefaultUser = "jitgate-test"

// Config configures one server.
type Config struct {
	// TrustedUserCAKeys are authorized_keys lines of the CAs whose user
	// certificates sshd accepts. Required.
	TrustedUserCAKeys [][]byte
	// User overrides the login user (root only; see the package doc).
	User string
	// AllowTCPForwarding enables sshd's TCP forwarding (off by default).
	AllowTCPForwarding bool
	// ExtraConfig lines are appended to sshd_config.
	ExtraConfig []string
	// HostCA, when set, certifies the host key (sshd HostCertificate), and
	// Server.KnownHostsCA is an @cert-authority line for it.
	HostCA ssh.Signer
}

// Server is a running sshd.
type Server struct {
	// Addr is host:port.
	Addr string
	Host string
	Port int
	// User is the login user; its certificates need this principal.
	User string
	// Home is the user's home directory.
	Home string
	// HostKey is the server's host public key.
	HostKey ssh.PublicKey
	// KnownHosts is a known_hosts line for HostKey at Addr.
	KnownHosts string
	// KnownHostsCA is an @cert-authority known_hosts line for Config.HostCA
	// (empty without one).
	KnownHostsCA string
	// RevokedKeysFile is sshd's RevokedKeys file (starts empty).
	RevokedKeysFile string
	// Dir holds the config, keys and log.
	Dir string

	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
	logM   *sync.Mutex
	once   sync.Once
}

// SSHD finds the sshd binary.
func SSHD() (string, error) {
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("sshd"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("sshtest: no sshd: install the Debian package openssh-server (make test does this as root)")
}

// Start starts a server; it is stopped by tb.Cleanup.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := StartServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			tb.Logf("sshd log:\n%s", s.Log())
		}
	})
	return s
}

var userMu sync.Mutex

// loginUser returns the user sshd will log in, creating DefaultUser as root.
func loginUser(want string) (*user.User, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("sshtest: current user: %w", err)
		}
		if want != "" && want != u.Username {
			return nil, fmt.Errorf("sshtest: only root can log in user %q; running as %s", want, u.Username)
		}
		return u, nil
	}
	if want == "" {
		want = DefaultUser
	}
	userMu.Lock()
	defer userMu.Unlock()
	// Serialise with other test processes creating the same user.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "jitgate-sshtest-user.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	u, err := user.Lookup(want)
	if err != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", want).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("sshtest: useradd %s: %v: %s", want, err, out)
		}
		if u, err = user.Lookup(want); err != nil {
			return nil, fmt.Errorf("sshtest: user %s: %w", want, err)
		}
	}
	// An account whose password field starts with "!" is locked and sshd
	// refuses it even for certificate logins; "*" means no password, unlocked.
	if out, err := exec.Command("usermod", "-p", "*", want).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sshtest: usermod -p '*' %s: %v: %s", want, err, out)
	}
	return u, nil
}

// StartServer starts a server outside a test (demo, benchmarks). Call Stop.
func StartServer(cfg Config) (*Server, error) {
	if len(cfg.TrustedUserCAKeys) == 0 {
		return nil, fmt.Errorf("sshtest: no TrustedUserCAKeys")
	}
	bin, err := SSHD()
	if err != nil {
		return nil, err
	}
	u, err := loginUser(cfg.User)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("sshtest: privilege separation directory: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "jitgate-sshd-")
	if err != nil {
		return nil, err
	}
	// sshd reads the principals file as the login user, and StrictModes wants
	// every directory on its path owned by root (or the user) and not writable
	// by others: 0755.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, User: u.Username, Home: u.HomeDir, Host: "127.0.0.1", log: &bytes.Buffer{}, logM: &sync.Mutex{}}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "sshtest host key")
	if err != nil {
		return nil, err
	}
	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKeyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return nil, err
	}
	s.HostKey = signer.PublicKey()
	var hostCertConf []string
	if cfg.HostCA != nil {
		cert := &ssh.Certificate{Key: s.HostKey, CertType: ssh.HostCert, KeyId: "sshtest host",
			ValidPrincipals: []string{"127.0.0.1"}, ValidBefore: ssh.CertTimeInfinity}
		if err := cert.SignCert(rand.Reader, cfg.HostCA); err != nil {
			return nil, fmt.Errorf("sshtest: host certificate: %w", err)
		}
		p := hostKeyPath + "-cert.pub"
		if err := os.WriteFile(p, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			return nil, err
		}
		hostCertConf = []string{"HostCertificate " + p}
	}
	caPath := filepath.Join(dir, "trusted_user_ca_keys")
	var ca bytes.Buffer
	for _, k := range cfg.TrustedUserCAKeys {
		ca.Write(bytes.TrimSpace(k))
		ca.WriteByte('\n')
	}
	if err := os.WriteFile(caPath, ca.Bytes(), 0o644); err != nil {
		return nil, err
	}
	s.RevokedKeysFile = filepath.Join(dir, "revoked_keys")
	if err := os.WriteFile(s.RevokedKeysFile, nil, 0o644); err != nil {
		return nil, err
	}
	principals := filepath.Join(dir, "principals")
	if err := os.WriteFile(principals, []byte(s.User+"\n"), 0o644); err != nil {
		return nil, err
	}
	forward := "no"
	if cfg.AllowTCPForwarding {
		forward = "local"
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
		conf := []string{
			"Port " + strconv.Itoa(port),
			"ListenAddress 127.0.0.1",
			"HostKey " + hostKeyPath,
			"PidFile none",
			"TrustedUserCAKeys " + caPath,
			"AuthorizedPrincipalsFile " + principals,
			"AuthorizedKeysFile none",
			"RevokedKeys " + s.RevokedKeysFile,
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			"PermitRootLogin no",
			// The principals file lives under the world-writable (sticky) temp
			// directory, which StrictModes refuses; the test server's files are
			// written by the test and not by the login user.
			"StrictModes no",
			"AllowUsers " + s.User,
			"AllowTcpForwarding " + forward,
			"AllowAgentForwarding no",
			"AllowStreamLocalForwarding no",
			"X11Forwarding no",
			"PermitTunnel no",
			"PermitUserEnvironment no",
			"PermitTTY yes",
			"PrintMotd no",
			"PrintLastLog no",
			"MaxStartups 100",
			"MaxSessions 100",
			"LogLevel VERBOSE",
			"Subsystem sftp internal-sftp",
		}
		conf = append(conf, hostCertConf...)
		conf = append(conf, cfg.ExtraConfig...)
		confPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
		if out, err := exec.Command(bin, "-t", "-f", confPath).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("sshtest: sshd -t: %v: %s", err, out)
		}
		cmd := exec.Command(bin, "-D", "-e", "-f", confPath)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("sshtest: start sshd: %w", err)
		}
		s.cmd = cmd
		exited := make(chan struct{})
		s.exited = exited
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				s.logM.Lock()
				s.log.WriteString(sc.Text() + "\n")
				s.logM.Unlock()
			}
			_ = cmd.Wait()
			close(exited)
		}()
		if err := waitBanner(s.Addr, exited, 15*time.Second); err != nil {
			s.stopProcess()
			lastErr = fmt.Errorf("sshtest: sshd did not come up on %s: %v\n%s", s.Addr, err, s.Log())
			continue
		}
		s.KnownHosts = knownhosts.Line([]string{s.Addr}, s.HostKey)
		if cfg.HostCA != nil {
			s.KnownHostsCA = "@cert-authority " + knownhosts.Line([]string{s.Addr}, cfg.HostCA.PublicKey())
		}
		return s, nil
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitBanner(addr string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited")
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
			err = fmt.Errorf("banner %q: %v", line, rerr)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what sshd wrote to stderr so far.
func (s *Server) Log() string {
	s.logM.Lock()
	defer s.logM.Unlock()
	return s.log.String()
}

// Stop ends sshd and the processes of its process group (the per-connection
// children), and removes its directory. Stop is idempotent.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.stopProcess()
		os.RemoveAll(s.Dir)
	})
}

func (s *Server) stopProcess() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	// Connection children that outlive the listener.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	s.cmd = nil
}
