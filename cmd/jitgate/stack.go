package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/urfave/cli/v3"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/approvalui"
	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/targetsource"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/httpapi"
	"github.com/jitgate/jitgate/broker/identity"
	launchlocal "github.com/jitgate/jitgate/broker/launch/local"
	"github.com/jitgate/jitgate/broker/metrics"
	"github.com/jitgate/jitgate/broker/notify"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/broker/store/bolt"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/record/sign"
)

// stackConfig is what `jitgate dev` and `jitgate broker serve` share.
type stackConfig struct {
	PolicyPath string
	DataDir    string
	Logger     *slog.Logger
	// ExtraIssuers are added to the policy's (the dev issuer).
	ExtraIssuers []identity.IssuerConfig
	DevLoopback  bool
	// ApproveURL is the approval page's base URL, for notification links.
	ApproveURL string
	// ProxyMetrics has session proxies serve metrics on loopback ports.
	ProxyMetrics bool
	// ProxyLogLevel is the proxies' --log-level; default warn.
	ProxyLogLevel string
	// FlushEvery and FlushAge pace the spool flush loop; defaults 30s and 2m.
	FlushEvery, FlushAge time.Duration
	// RunTimeout is broker.Config.RunTimeout (also the grace the sweeper
	// gives an active grant past its deadline); default 2m.
	RunTimeout time.Duration
}

type stack struct {
	svc     *broker.Service
	handler http.Handler
	// verifier is the API's token verifier; the approval page shares it.
	verifier *identity.Verifier
	issuers  []identity.IssuerConfig
	dataDir  string
	log      *slog.Logger
	// metrics is served by --metrics-listen (serveMetrics).
	metrics *metrics.Broker
	closers []func() error
}

func (s *stack) Close() {
	s.svc.Close()
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
}

func buildStack(cfg stackConfig) (*stack, error) {
	p, err := policy.Load(cfg.PolicyPath)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	// Proxies write recordings into the spool and store them in recordings/
	// before they exit; the flush loop picks up what they leave behind.
	recDir, spoolDir := filepath.Join(cfg.DataDir, "recordings"), filepath.Join(cfg.DataDir, "spool")
	for _, d := range []string{recDir, spoolDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, usageErr("data dir: %v", err)
		}
	}
	keyPath := filepath.Join(cfg.DataDir, sign.KeyFileName)
	if _, err := sign.LoadOrCreateKeyFile(keyPath); err != nil {
		return nil, cli1(fmt.Errorf("recording signing key: %w", err))
	}
	recSink, err := filesink.New(filesink.Config{Dir: recDir})
	if err != nil {
		return nil, cli1(err)
	}
	st := &stack{}
	fail := func(err error) (*stack, error) {
		for i := len(st.closers) - 1; i >= 0; i-- {
			_ = st.closers[i]()
		}
		return nil, err
	}
	sources := map[string]credentials.Source{}
	for i := range p.Targets {
		t := &p.Targets[i]
		src, err := buildSource(t)
		if err != nil {
			return fail(usageErr("target %s: %v", t.Name, err))
		}
		sources[t.Name] = src
	}
	store, err := bolt.Open(filepath.Join(cfg.DataDir, "grants.db"), bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fail(cli1(fmt.Errorf("open grant store: %w (is another jitgate using %s?)", err, cfg.DataDir)))
	}
	st.closers = append(st.closers, store.Close)
	alog, err := audit.Open(filepath.Join(cfg.DataDir, "audit.jsonl"), audit.Options{})
	if err != nil {
		return fail(cli1(fmt.Errorf("open audit log: %w", err)))
	}
	st.closers = append(st.closers, alog.Close)
	launcher, err := launchlocal.New(launchlocal.Config{Logger: cfg.Logger, Spare: true,
		Args: []string{"__proxy", "--signing-key", keyPath, "--sink", recDir, "--log-level", firstNonEmpty(cfg.ProxyLogLevel, "warn")}})
	if err != nil {
		return fail(err)
	}
	st.closers = append(st.closers, launcher.Close)
	launcher.Warm()
	verifier, err := identity.NewVerifier(append(p.IssuerConfigs(), cfg.ExtraIssuers...), identity.Options{Logger: cfg.Logger})
	if err != nil {
		return fail(usageErr("issuers: %v", err))
	}
	key, err := maskKey(cfg.DataDir)
	if err != nil {
		return fail(err)
	}
	m, err := metrics.New(metrics.Config{SpoolDir: spoolDir, Pending: func(ctx context.Context) (int, error) {
		pending := grant.Pending
		gs, err := store.List(ctx, grant.Filter{State: &pending})
		return len(gs), err
	}})
	if err != nil {
		return fail(err)
	}
	st.metrics = m
	bcfg := broker.Config{
		Policy: p, Store: store, Audit: alog, Sources: sources, Launcher: launcher,
		RecordDir: spoolDir, MaskTokenKey: key, DevLoopback: cfg.DevLoopback, Logger: cfg.Logger,
		Explainer: explainer{p: p}, ApproveURL: cfg.ApproveURL, Metrics: m, ProxyMetrics: cfg.ProxyMetrics, RunTimeout: cfg.RunTimeout,
		Recordings: recSink,
	}
	if len(p.Notifications) > 0 {
		n, err := buildNotifier(p)
		if err != nil {
			return fail(usageErr("notifications: %v", err))
		}
		bcfg.Notifier = n
	}
	svc, err := broker.New(bcfg)
	if err != nil {
		return fail(err)
	}
	st.svc = svc
	st.closers = append(st.closers, flushLoop(svc, recSink, cfg.Logger, cfg.FlushEvery, cfg.FlushAge))
	h, err := httpapi.New(httpapi.Config{Service: svc, Verifier: verifier, Logger: cfg.Logger})
	if err != nil {
		return fail(err)
	}
	st.handler = h
	st.verifier, st.issuers, st.dataDir, st.log = verifier, append(p.IssuerConfigs(), cfg.ExtraIssuers...), cfg.DataDir, cfg.Logger
	return st, nil
}

// approvalUI builds the approval web page (mounted at baseURL's path, e.g.
// /ui/) for approvers who sign in at issuer with clientID. The cookie key is
// kept in the data directory so sessions survive a restart.
func (s *stack) approvalUI(issuer, clientID, baseURL string) (http.Handler, error) {
	if issuer == "" {
		for _, ic := range s.issuers {
			if ic.Audience == clientID {
				if issuer != "" {
					return nil, usageErr("--ui-client-id %q is the audience of several issuers; name one with --ui-issuer", clientID)
				}
				issuer = ic.Issuer
			}
		}
		if issuer == "" {
			return nil, usageErr("no issuer in the policy has audience %q; set --ui-issuer", clientID)
		}
	}
	trusted := false
	for _, ic := range s.issuers {
		trusted = trusted || (ic.Issuer == issuer && ic.Audience == clientID)
	}
	if !trusted {
		return nil, usageErr("--ui-issuer %q with audience %q is not an issuer of the policy: approvers' tokens would not verify", issuer, clientID)
	}
	key, err := loadOrCreateKey(filepath.Join(s.dataDir, "ui-cookie.key"))
	if err != nil {
		return nil, err
	}
	replay, err := s.replayUI()
	if err != nil {
		return nil, err
	}
	return approvalui.New(approvalui.Config{Service: s.svc, Verifier: s.verifier, IssuerURL: issuer, ClientID: clientID,
		BaseURL: baseURL, CookieKey: key, Logger: s.log, Recordings: replay})
}

func loadOrCreateKey(p string) ([]byte, error) {
	if b, err := os.ReadFile(p); err == nil && len(b) >= 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", p, err)
	}
	return b, nil
}

// flushLoop uploads recordings left in the spool (a killed proxy, a failed
// upload) every half minute (every), once they are two minutes old (age); the
// returned closer stops it.
func flushLoop(svc *broker.Service, sink record.Sink, log *slog.Logger, every, age time.Duration) func() error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = 30 * time.Second
	}
	if age <= 0 {
		age = 2 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if n, err := svc.FlushRecordings(ctx, sink, age); err != nil && ctx.Err() == nil {
				log.Warn("recording flush", "stored", n, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() error { cancel(); <-done; return nil }
}

// maskKey loads or creates the per-deployment key of the "token" mask style.
func maskKey(dir string) ([]byte, error) {
	p := filepath.Join(dir, "mask.key")
	if b, err := os.ReadFile(p); err == nil && len(b) >= 32 {
		return b, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", p, err)
	}
	return b, nil
}

func buildSource(t *policy.Target) (credentials.Source, error) {
	// A session grant serves pools and pgbench -c N: room for a few dozen
	// connections (the role still expires with the grant).
	return targetsource.New(t, targetsource.Env{Resolve: resolveRef, Vault: vaultFromEnv, PostgresConnectionLimit: 32})
}

// vaultFromEnv is the Vault client of VAULT_ADDR, VAULT_TOKEN and friends.
func vaultFromEnv() (*vaultapi.Client, error) {
	if os.Getenv("VAULT_ADDR") == "" || os.Getenv("VAULT_TOKEN") == "" {
		return nil, errors.New("source vault needs VAULT_ADDR and VAULT_TOKEN")
	}
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, vc.Error
	}
	return vaultapi.NewClient(vc)
}

// resolveRef reads "env:NAME" and "file:PATH" references; anything else is literal.
func resolveRef(ref string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(ref, "file:"))
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case ref == "":
		return "", errors.New("not set")
	}
	return ref, nil
}

// serveMetrics serves the broker's Prometheus metrics on their own listener
// (never the API's) until ctx is done; addr "" leaves them off.
func (s *stack) serveMetrics(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return cli1(fmt.Errorf("--metrics-listen: %w", err))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	go func() {
		if err := serve(ctx, ln, mux); err != nil {
			s.log.Error("metrics listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.log.Info("metrics listening", "addr", ln.Addr().String())
	return nil
}

// serve runs srv until ctx is done, then shuts it down.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

func cli1(err error) error { return cli.Exit(err.Error(), exitError) }

func buildNotifier(p *policy.Policy) (*notify.Notifier, error) {
	var targets []notify.Target
	for _, n := range p.Notifications {
		kind, err := notify.ParseKind(firstNonEmpty(n.Kind, "slack"))
		if err != nil {
			return nil, err
		}
		u, err := resolveRef(n.URL)
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		t := notify.Target{Kind: kind, URL: u}
		if n.Secret != "" {
			sec, err := resolveRef(n.Secret)
			if err != nil {
				return nil, fmt.Errorf("secret: %w", err)
			}
			t.Secret = []byte(sec)
		}
		targets = append(targets, t)
	}
	return notify.New(notify.Config{Targets: targets})
}

// explainer asks PostgreSQL for a write's row estimate with EXPLAIN (never
// ANALYZE), as the target's write role, inside a read-only transaction that is
// rolled back. Only local-source targets have an admin DSN to do it with.
type explainer struct{ p *policy.Policy }

func (e explainer) Explain(ctx context.Context, target, sql string) (float64, error) {
	t, ok := e.p.Target(target)
	if !ok || t.Credentials.Source != policy.SourceLocal || t.Credentials.WriteRole == "" {
		return 0, errors.New("no local admin connection for this target")
	}
	dsn, err := resolveRef(t.Credentials.AdminDSN)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return 0, err
	}
	cfg.Database = t.Database
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{t.Credentials.WriteRole}.Sanitize()); err != nil {
		return 0, err
	}
	type node struct {
		Type  string  `json:"Node Type"`
		Rows  float64 `json:"Plan Rows"`
		Plans []node  `json:"Plans"`
	}
	var plan []struct {
		Plan node `json:"Plan"`
	}
	// The statement passed the guard as one write; EXPLAIN without ANALYZE plans it only.
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, pgx.QueryExecModeSimpleProtocol).Scan(&plan); err != nil {
		return 0, err
	}
	if len(plan) == 0 {
		return 0, errors.New("empty plan")
	}
	// INSERT/UPDATE/DELETE/MERGE plan as ModifyTable, whose own estimate is the
	// rows it returns (0 without RETURNING): the rows touched are its input's.
	top := plan[0].Plan
	if top.Type == "ModifyTable" && len(top.Plans) > 0 {
		return top.Plans[0].Rows, nil
	}
	return top.Rows, nil
}
