package http

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Config is what the HTTP engine needs for one grant.
type Config struct {
	// Grant is the one grant served. Required: ID, Target.Address (the API's
	// base URL, "http://host:port", "https://host" or plain "host:port"),
	// Credential.Token (injected upstream) and, for session grants,
	// ClientSecret (what the agent authenticates with).
	Grant *spec.Grant
	// Guard judges every request's method, target and headers. Required.
	Guard *httprule.Guard
	// Masker runs its detectors over every text body and every JSON string,
	// and styles redacted JSON fields. Nil means no detectors.
	Masker *mask.Masker
	// Recorder receives every request, verdict, status and masked body
	// excerpt. Required: a request that cannot be recorded is refused.
	Recorder *record.Recorder
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Header is where the credential goes upstream: "Name: prefix" sends
	// "Name: prefix <token>", a bare "Name" sends the token alone. Default
	// "Authorization: Bearer". The agent's own value of this header (and its
	// Authorization, Proxy-Authorization and Cookie headers) is never
	// forwarded.
	Header string
	// MaskJSONFields are JSON field patterns ("$.users[*].email", "password")
	// whose values are redacted whole in JSON responses; see jsonpath.go.
	MaskJSONFields []string
	// MaxBody caps request bodies (413 above it). Default: the guard's
	// MaxBodyBytes, else 1 MiB.
	MaxBody int64
	// AllowBinary lets responses that are neither text nor JSON (images,
	// archives, application/octet-stream, text in other charsets) through
	// unmasked. Off, they are refused: the masker cannot read them.
	AllowBinary bool
	// UpstreamTLS configures https targets; nil uses the system roots.
	UpstreamTLS *tls.Config
	// FlushDelay is how long a streamed text body may wait for more bytes
	// before the held-back tail is masked and sent. Default 20ms.
	FlushDelay time.Duration
	// MaxRecordedBody caps the masked request and response bytes recorded
	// per request (the full size is always recorded). Default 64 KiB.
	MaxRecordedBody int
	// MaxExecOutput caps the response body Exec returns. Default 1 MiB.
	MaxExecOutput int
	// DialTimeout bounds connecting to the target. Default 10s.
	DialTimeout time.Duration
}

// ErrBlocked is session.ErrBlocked, wrapped by Exec's refusals.
var ErrBlocked = session.ErrBlocked

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("http: invalid config")

// Engine serves one grant's HTTP requests. It is safe for concurrent use.
type Engine struct {
	cfg       Config
	g         *spec.Grant
	log       *slog.Logger
	base      *url.URL // upstream scheme and host
	baseURL   string   // base.String(), once
	hostPort  string   // upstream host:port, for absolute-form matching and dialing
	injName   string   // canonical header name
	injValue  string
	secret    []byte
	patterns  []jsonPattern
	masking   bool // the masker has detectors
	transport *http.Transport
	conns     atomic.Int64
	counts    counters
}

func (c *Config) validate() error {
	g := c.Grant
	switch {
	case g == nil:
		return fmt.Errorf("%w: no grant", ErrConfig)
	case g.ID == "":
		return fmt.Errorf("%w: grant has no id", ErrConfig)
	case g.Target.Address == "":
		return fmt.Errorf("%w: grant %s has no target address", ErrConfig, g.ID)
	case g.Target.Protocol != spec.HTTP && g.Target.Protocol != spec.ProtocolUnknown:
		return fmt.Errorf("%w: grant %s is for protocol %s, not http", ErrConfig, g.ID, g.Target.Protocol)
	case g.Mode == spec.Session && g.ClientSecret == "":
		return fmt.Errorf("%w: session grant %s has no client secret", ErrConfig, g.ID)
	case g.Credential.Token == "":
		return fmt.Errorf("%w: grant %s has no API token to inject", ErrConfig, g.ID)
	case c.Guard == nil:
		return fmt.Errorf("%w: no guard", ErrConfig)
	case c.Recorder == nil:
		return fmt.Errorf("%w: no recorder", ErrConfig)
	case c.MaxBody < 0:
		return fmt.Errorf("%w: MaxBody is negative", ErrConfig)
	}
	return nil
}

// New validates cfg and prepares the upstream transport. It does not connect.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Header == "" {
		cfg.Header = "Authorization: Bearer"
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = cfg.Guard.MaxBodyBytes()
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.FlushDelay <= 0 {
		cfg.FlushDelay = 20 * time.Millisecond
	}
	if cfg.MaxRecordedBody == 0 {
		cfg.MaxRecordedBody = 64 << 10
	}
	if cfg.MaxExecOutput <= 0 {
		cfg.MaxExecOutput = 1 << 20
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	g := cfg.Grant
	e := &Engine{cfg: cfg, g: g, log: cfg.Logger.With("engine", "http"), secret: []byte(g.ClientSecret)}
	var err error
	if e.base, e.hostPort, err = parseAddress(g.Target.Address); err != nil {
		return nil, fmt.Errorf("%w: grant %s: target address: %v", ErrConfig, g.ID, err)
	}
	e.baseURL = e.base.String()
	if e.injName, e.injValue, err = injection(cfg.Header, g.Credential.Token.Secret().Reveal()); err != nil {
		return nil, fmt.Errorf("%w: Header %q: %v", ErrConfig, cfg.Header, err)
	}
	for _, s := range cfg.MaskJSONFields {
		p, err := compileJSONPattern(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		e.patterns = append(e.patterns, p)
	}
	e.masking = cfg.Masker != nil && cfg.Masker.Enabled()
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	target := e.hostPort
	e.transport = &http.Transport{
		// Never a proxy from the environment, and never another host: the
		// transport dials the grant's target whatever the URL says.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, target)
		},
		TLSClientConfig:        cfg.UpstreamTLS,
		ForceAttemptHTTP2:      false,
		DisableCompression:     true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		ExpectContinueTimeout:  time.Second,
	}
	return e, nil
}

// parseAddress turns Target.Address into the upstream base URL and host:port.
func parseAddress(addr string) (*url.URL, string, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "", fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.Host == "" || u.User != nil:
		return nil, "", fmt.Errorf("%q has no host, or carries user information", addr)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return nil, "", fmt.Errorf("%q: a target address is scheme://host:port, without path or query", addr)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	hp := net.JoinHostPort(host, port)
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, hp, nil
}

// injection parses Config.Header.
func injection(hdr, token string) (name, value string, err error) {
	n, prefix, _ := strings.Cut(hdr, ":")
	n, prefix = strings.TrimSpace(n), strings.TrimSpace(prefix)
	if n == "" || !validToken(n) {
		return "", "", errors.New("want \"Header-Name\" or \"Header-Name: prefix\"")
	}
	if strings.ContainsAny(token, "\r\n\x00") {
		return "", "", errors.New("the token holds a line break or NUL")
	}
	name = textproto.CanonicalMIMEHeaderKey(n)
	switch name {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Cookie", "Proxy-Authorization":
		return "", "", fmt.Errorf("%s cannot carry the credential", name)
	}
	if prefix == "" {
		return name, token, nil
	}
	return name, prefix + " " + token, nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// Close drops the idle upstream connections.
func (e *Engine) Close() error {
	e.transport.CloseIdleConnections()
	return nil
}

func (e *Engine) rec(ev record.Event) error {
	return e.cfg.Recorder.Write(ev)
}
