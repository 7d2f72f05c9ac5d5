package kube

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Config is what the Kubernetes engine needs for one grant.
type Config struct {
	// Grant is the one grant served: ClientSecret (the agent's bearer token),
	// Target (Address, CA, ServerName), Credential.Token and Guard (Kube,
	// Commands) are used. Required.
	Grant *spec.Grant
	// Guard judges every exec command line. Required. Build it from
	// Guard.Commands; the engine refuses tar (kubectl cp) itself unless
	// Guard.Kube.CopyFiles, but only as the command run, so deny "tar" in
	// the guard too to catch it inside sh -c strings.
	Guard *shell.Guard
	// Masker masks exec output and pod objects. Nil means no masking.
	Masker *mask.Masker
	// Recorder receives every request, verdict and exec result. Required.
	Recorder *record.Recorder
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// CastDir is where the asciicast of each exec stream is written.
	// Default Grant.Record.Dir.
	CastDir string
	// FlushDelay is how long streamed output may wait for more bytes before
	// it is masked and sent. Default 20ms.
	FlushDelay time.Duration
	// MaxExecOutput caps each of stdout and stderr kept by Exec. Default 1 MiB.
	MaxExecOutput int
	// MaxRecordedOutput caps the output bytes of each exec stream (stdout,
	// stderr) written to its asciicast, as the SSH engine caps recorded
	// output; the full byte count is recorded. Everything is still masked and
	// sent. Default 1 MiB; negative records everything.
	MaxRecordedOutput int
}

// Engine serves one grant's Kubernetes API requests. Safe for concurrent use.
type Engine struct {
	cfg     Config
	g       *spec.Grant
	log     *slog.Logger
	secret  []byte
	tls     *tls.Config
	certPEM string
	up      *http.Transport
	rest    *rest.Config
	base    string
	conns   atomic.Int64
	streams atomic.Int64
	// allowed and blocked count request verdicts (Verdicts).
	allowed, blocked atomic.Uint64
}

// ErrBlocked wraps session.ErrBlocked for requests the engine refused.
var ErrBlocked = session.ErrBlocked

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("kube: invalid config")

func (c *Config) validate() error {
	g := c.Grant
	switch {
	case g == nil:
		return fmt.Errorf("%w: no grant", ErrConfig)
	case g.ID == "":
		return fmt.Errorf("%w: grant has no id", ErrConfig)
	case g.Target.Address == "":
		return fmt.Errorf("%w: grant %s has no target address", ErrConfig, g.ID)
	case g.Credential.Token == "":
		return fmt.Errorf("%w: grant %s has no token", ErrConfig, g.ID)
	case g.Guard.Kube.Namespace == "":
		return fmt.Errorf("%w: grant %s names no namespace", ErrConfig, g.ID)
	case c.Guard == nil:
		return fmt.Errorf("%w: no guard", ErrConfig)
	case c.Recorder == nil:
		return fmt.Errorf("%w: no recorder", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(g.Target.Address); err != nil {
		return fmt.Errorf("%w: grant %s: target address: %v", ErrConfig, g.ID, err)
	}
	for _, p := range g.Guard.Kube.Ports {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%w: grant %s: port %d is not a port number", ErrConfig, g.ID, p)
		}
	}
	return nil
}

// New validates cfg, generates the per-grant TLS certificate the agent
// trusts and prepares the upstream client.
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
	if cfg.CastDir == "" {
		cfg.CastDir = cfg.Grant.Record.Dir
	}
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = 20 * time.Millisecond
	}
	if cfg.MaxRecordedOutput == 0 {
		cfg.MaxRecordedOutput = 1 << 20
	}
	if cfg.MaxExecOutput <= 0 {
		cfg.MaxExecOutput = 1 << 20
	}
	g := cfg.Grant
	e := &Engine{cfg: cfg, g: g, log: cfg.Logger.With("engine", "kube"), secret: []byte(g.ClientSecret)}

	cert, certPEM, err := selfSigned(g.ID, cfg.Now(), g.Deadline)
	if err != nil {
		return nil, fmt.Errorf("kube: certificate: %w", err)
	}
	e.certPEM = certPEM
	e.tls = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: exec upgrades (WebSocket, SPDY) need it.
		NextProtos: []string{"http/1.1"},
	}

	upTLS := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.Target.ServerName}
	if g.Target.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(g.Target.CA)) {
			return nil, fmt.Errorf("%w: grant %s: target CA holds no PEM certificate", ErrConfig, g.ID)
		}
		upTLS.RootCAs = pool
	}
	if upTLS.ServerName == "" {
		host, _, _ := net.SplitHostPort(g.Target.Address)
		upTLS.ServerName = host
	}
	e.up = &http.Transport{
		Proxy:               nil, // never the environment's proxy
		TLSClientConfig:     upTLS,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: 15 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
	}
	e.base = "https://" + g.Target.Address
	e.rest = &rest.Config{
		Host:        e.base,
		BearerToken: string(g.Credential.Token),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     []byte(g.Target.CA),
			ServerName: g.Target.ServerName,
		},
		Proxy:     func(*http.Request) (*url.URL, error) { return nil, nil },
		UserAgent: "jitgate",
	}
	return e, nil
}

// CertificatePEM is the proxy's per-grant TLS certificate, which the agent's
// kubeconfig trusts (certificate-authority-data).
func (e *Engine) CertificatePEM() string { return e.certPEM }

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1, ::1 and
// localhost, valid until the grant's deadline (plus a minute of skew).
func selfSigned(id string, now, deadline time.Time) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if deadline.IsZero() || deadline.Before(now) {
		deadline = now.Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "jitgate grant " + id},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              deadline.Add(time.Minute),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(p), nil
}

// rec writes ev; a recording failure is returned so the caller refuses.
func (e *Engine) rec(ev record.Event) error {
	if err := e.cfg.Recorder.Write(ev); err != nil {
		e.log.Error("recording failed", "err", err)
		return err
	}
	return nil
}

// closeIdle drops the upstream keep-alive connections.
func (e *Engine) closeIdle(context.Context) { e.up.CloseIdleConnections() }
