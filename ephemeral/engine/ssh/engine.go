package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Config is what the SSH engine needs for one grant.
type Config struct {
	// Grant is the one grant served. Required: its ID (the SSH user name the
	// agent logs in with), ClientSecret (the password), Target (Address, User,
	// KnownHosts), Credential (PrivateKey and Certificate) and
	// Guard.Commands are used.
	Grant *spec.Grant
	// Guard judges every exec command. Required.
	Guard *shell.Guard
	// Masker masks command output. Nil means no masking.
	Masker *mask.Masker
	// Recorder receives every request, verdict, (masked) output and exit
	// status. Required: when it fails, the connection is closed.
	Recorder *record.Recorder
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// HostKey is the proxy's own host key toward the agent. When nil a fresh
	// ed25519 key is generated for the engine (one grant). HostKey MUST NOT
	// be the target's host key.
	HostKey ssh.Signer
	// Now defaults to time.Now.
	Now func() time.Time
	// HandshakeTimeout bounds the agent's and the target's handshakes. Default 30s.
	HandshakeTimeout time.Duration
	// FlushDelay is how long streamed output may wait for more bytes before
	// it is masked and sent without look-ahead. Default 20ms.
	FlushDelay time.Duration
	// MaxExecOutput caps each of stdout and stderr kept by Exec. Default 1 MiB.
	MaxExecOutput int
	// MaxRecordedOutput caps the output bytes recorded per stream (stdout,
	// stderr) of one exec command, like the PostgreSQL engine's row cap; the
	// full byte count is always recorded. Everything is still masked and
	// sent. Default 1 MiB; negative records everything.
	MaxRecordedOutput int
	// CastDir is where asciicast files of interactive shells are written.
	// Default Grant.Record.Dir.
	CastDir string
}

// Engine serves one grant's SSH sessions. It is safe for concurrent use.
type Engine struct {
	cfg      Config
	g        *spec.Grant
	log      *slog.Logger
	server   *ssh.ServerConfig
	rand     io.Reader // crypto/rand, buffered (rand.go)
	client   *ssh.ClientConfig
	hostKeys ssh.HostKeyCallback
	hostKey  ssh.Signer
	conns    atomic.Int64
	verdicts verdictCounts
}

// ErrBlocked wraps session.ErrBlocked for commands the guard refused.
var ErrBlocked = session.ErrBlocked

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("ssh: invalid config")

func (c *Config) validate() error {
	g := c.Grant
	switch {
	case g == nil:
		return fmt.Errorf("%w: no grant", ErrConfig)
	case g.ID == "":
		return fmt.Errorf("%w: grant has no id", ErrConfig)
	case g.Target.Address == "":
		return fmt.Errorf("%w: grant %s has no target address", ErrConfig, g.ID)
	case len(g.Target.KnownHosts) == 0:
		return fmt.Errorf("%w: grant %s has no known hosts for %s: the target's host key cannot be checked, refusing to connect", ErrConfig, g.ID, g.Target.Address)
	case g.Credential.PrivateKey == "":
		return fmt.Errorf("%w: grant %s has no SSH key", ErrConfig, g.ID)
	case g.Target.User == "" && g.Credential.Username == "":
		return fmt.Errorf("%w: grant %s has no login user", ErrConfig, g.ID)
	case c.Guard == nil:
		return fmt.Errorf("%w: no guard", ErrConfig)
	case c.Recorder == nil:
		return fmt.Errorf("%w: no recorder", ErrConfig)
	}
	return nil
}

// New validates cfg and prepares the agent-facing server and the upstream
// client configuration.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = 20 * time.Millisecond
	}
	if cfg.MaxExecOutput <= 0 {
		cfg.MaxExecOutput = 1 << 20
	}
	if cfg.MaxRecordedOutput == 0 {
		cfg.MaxRecordedOutput = 1 << 20
	}
	if cfg.CastDir == "" {
		cfg.CastDir = cfg.Grant.Record.Dir
	}
	g := cfg.Grant
	e := &Engine{cfg: cfg, g: g, log: cfg.Logger.With("engine", "ssh")}

	signer, err := credentialSigner(g.Credential)
	if err != nil {
		return nil, fmt.Errorf("%w: grant %s: %v", ErrConfig, g.ID, err)
	}
	hk, algos, err := hostKeyCallback(g.Target.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("%w: grant %s: known hosts: %v", ErrConfig, g.ID, err)
	}
	e.hostKeys = hk
	user := g.Target.User
	if user == "" {
		user = g.Credential.Username
	}
	e.rand = newBufferedRand()
	e.client = &ssh.ClientConfig{
		Config:            ssh.Config{Rand: e.rand},
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: algos,
		Timeout:           cfg.HandshakeTimeout,
		ClientVersion:     "SSH-2.0-jitgate",
	}

	hostKey := cfg.HostKey
	if hostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("ssh: host key: %w", err)
		}
		if hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("ssh: host key: %w", err)
		}
	}
	secret := []byte(g.ClientSecret)
	id := []byte(g.ID)
	e.server = &ssh.ServerConfig{
		// Password authentication only: the user is the grant id, the
		// password the one-time grant secret. No public-key authentication,
		// so no key offered-but-unproved can be mistaken for an identity
		// (CVE-2024-45337).
		PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			uok := subtle.ConstantTimeCompare([]byte(meta.User()), id)
			pok := subtle.ConstantTimeCompare(pw, secret)
			if uok&pok == 1 && len(secret) > 0 {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("jitgate: wrong grant or secret")
		},
		MaxAuthTries:  3,
		ServerVersion: "SSH-2.0-jitgate",
		// AES-GCM only: x/crypto's chacha20-poly1305 has no assembly on
		// amd64, and CTR adds an HMAC-SHA-256 pass; either made most of the
		// proxy's CPU on bulk transfers (OpenSSH clients prefer chacha20,
		// then CTR, and the client's preference wins, so neither is
		// offered). OpenSSH has had AES-GCM since 6.2, PuTTY since 0.76.
		// No chacha20-poly1305 also means no Terrapin-prone cipher towards
		// agents.
		Config: ssh.Config{Ciphers: agentCiphers, Rand: e.rand},
	}
	e.server.AddHostKey(hostKey)
	e.hostKey = hostKey
	return e, nil
}

// agentCiphers are the ciphers offered to agents, best first.
var agentCiphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}

// HostKey returns the public key the engine presents to agents (for their
// known_hosts).
func (e *Engine) HostKey() ssh.PublicKey {
	return e.hostKey.PublicKey()
}

// credentialSigner parses the grant's private key and certificate.
func credentialSigner(cred spec.Credential) (ssh.Signer, error) {
	key, err := ssh.ParsePrivateKey([]byte(cred.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("credential key: %w", err)
	}
	if cred.Certificate == "" {
		return key, nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cred.Certificate))
	if err != nil {
		return nil, fmt.Errorf("credential certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("credential certificate is a plain public key")
	}
	return ssh.NewCertSigner(cert, key)
}

// hostKeyCallback builds the upstream host key check from known_hosts lines
// (plain keys, @cert-authority and @revoked), using x/crypto's knownhosts
// matcher, and the host key algorithms those lines allow.
func hostKeyCallback(lines []string) (ssh.HostKeyCallback, []string, error) {
	var b strings.Builder
	algos := map[string]bool{}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		marker, _, key, _, _, err := ssh.ParseKnownHosts([]byte(l))
		if err != nil {
			return nil, nil, err
		}
		for _, a := range algosFor(key.Type(), marker == "cert-authority") {
			algos[a] = true
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		return nil, nil, errors.New("no usable lines")
	}
	// knownhosts reads files only; the lines live in a private temporary file
	// for the duration of the parse.
	f, err := os.CreateTemp("", "jitgate-known-hosts-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, err
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, nil, err
	}
	var list []string
	for _, a := range preferredAlgos {
		if algos[a] {
			list = append(list, a)
		}
	}
	return cb, list, nil
}

var preferredAlgos = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

func algosFor(keyType string, ca bool) []string {
	switch keyType {
	case ssh.KeyAlgoED25519:
		if ca {
			return []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
		}
		return []string{ssh.KeyAlgoED25519}
	case ssh.KeyAlgoRSA:
		if ca {
			return []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
		}
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	default:
		if ca {
			return []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
		}
		return []string{keyType}
	}
}

// dial opens the upstream SSH connection with the grant's certificate,
// requiring strict key exchange from the target too.
func (e *Engine) dial(ctx context.Context) (*ssh.Client, error) {
	d := net.Dialer{Timeout: e.cfg.HandshakeTimeout}
	addr := e.g.Target.Address
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh: dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	_ = raw.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	c, chans, reqs, err := ssh.NewClientConn(newKexCheck(raw, kexStrictServer), addr, e.client)
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh: upstream %s: %w", addr, ctx.Err())
		}
		return nil, fmt.Errorf("ssh: upstream %s: %w", addr, err)
	}
	_ = raw.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}
