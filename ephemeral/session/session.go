// Package session is the life of one ephemeral proxy: it takes one grant spec,
// opens the recording (refusing to run if it cannot), builds the guard, masker and
// protocol engine, then either runs the grant's one operation (exec mode) or
// accepts agent connections until the grant's deadline (session mode), closes the
// signed recording and uploads it to the sink before exiting (retrying with
// backoff; what cannot be uploaded stays in the spool, Grant.Record.Dir, for the
// broker's sweeper), and reports each step to its launcher as spec.Status lines.
// Revoking the credential is the launcher's side of the contract: the proxy never
// holds the admin credential needed to revoke. When the spec names a loopback
// metrics address (Grant.Metrics), a session proxy serves Prometheus metrics
// there while it runs (metrics.go) and reports the address when ready.
//
//	err := session.Run(ctx, session.Config{Grant: g, Status: os.Stdout, Logger: log})
package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Version is stamped into recordings; cmd/jitgate sets it from build info.
var Version = "dev"

// Engine serves one protocol for one grant.
type Engine interface {
	// Serve handles one client connection until it ends or ctx is done (the
	// grant deadline), closing client and upstream promptly when it is.
	Serve(ctx context.Context, client net.Conn) error
	// Exec runs the grant's one operation through the same guard, mask and
	// record path as Serve and returns the masked result. A refusal by the
	// guard wraps ErrBlocked.
	Exec(ctx context.Context, operation string) (*spec.Result, error)
}

// ErrBlocked marks an operation the guard refused; engines wrap it.
var ErrBlocked = errors.New("blocked by policy")

// ErrStatement marks an operation that reached the target and failed there
// (an SQL error): the grant ended normally, the request was wrong.
var ErrStatement = errors.New("failed at the target")

// ErrTargetLost marks a session connection that ended because the target
// itself went away (shut down, crashed, unreachable); engines wrap it. The
// session ends on it: the broker then ends the grant and revokes its
// credential (retried by the sweeper while the target is down), rather than
// keep a grant open that clients could reconnect through once the target is
// back.
var ErrTargetLost = errors.New("the target went away")

// Factory builds the engine for a grant; rec is already open.
type Factory func(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (Engine, error)

// Config is what one proxy life needs.
type Config struct {
	Grant *spec.Grant
	// Engines is the closed set of protocol engines, built in main.
	Engines map[spec.Protocol]Factory
	// Status receives one JSON line per spec.Status. Required.
	Status io.Writer
	Logger *slog.Logger
	Now    func() time.Time
	// DrainTimeout bounds how long connections get to finish once the deadline passed.
	DrainTimeout time.Duration

	// Signer seals the recording's chunks. Nil writes an unsigned recording,
	// which `jitgate recording verify` refuses: production proxies MUST set it.
	Signer record.Signer
	// Recording tunes the recorder (chunk size, size cap, ...); Dir, Header,
	// Signer and Now are set by Run.
	Recording record.Config
	// Sink receives the finished recording before the proxy exits. Nil leaves
	// it in Grant.Record.Dir (the embedded default where that directory is the
	// final store).
	Sink record.Sink
	// Upload tunes the upload retries (Sink and Logger are set by Run). A
	// recording still not stored when Upload.Timeout (default 30s) passes stays
	// spooled, and the exit status names the spooled file.
	Upload record.Uploader
}

// Run serves cfg.Grant and returns when the operation finished (exec) or the
// session ended (deadline or ctx cancelled). A non-nil error has been reported on
// the status channel already.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 500 * time.Millisecond
	}
	st := &statusWriter{w: cfg.Status, now: cfg.Now}
	g := cfg.Grant
	if g == nil {
		return st.fail("", spec.CodeBadSpec, errors.New("session: no grant"))
	}
	log := cfg.Logger.With("grant", g.ID)
	if err := g.Validate(); err != nil {
		return st.fail(g.ID, spec.CodeBadSpec, err)
	}
	parent := ctx
	ctx, cancel := context.WithDeadline(ctx, g.Deadline)
	defer cancel()

	rc := cfg.Recording
	rc.Dir, rc.Signer, rc.Now = g.Record.Dir, cfg.Signer, cfg.Now
	rc.Header = record.Header{
		GrantID: g.ID, Identity: g.Identity, Target: g.Target.Name, Rule: g.Rule,
		LeaseID: g.Credential.LeaseID, Version: Version, Mode: g.Mode.String(), Started: cfg.Now(),
	}
	if cfg.Signer == nil {
		log.Warn("recording is not signed: no signer configured")
	}
	rec, err := record.Create(ctx, rc)
	if err != nil {
		// No recording, no session: refuse.
		return st.fail(g.ID, spec.CodeRecording, fmt.Errorf("session: open recording: %w", err))
	}
	recPath := rec.Path()
	closeRec := func() error {
		if err := rec.Close(); err != nil {
			log.Error("recording close failed", "err", err)
			return err
		}
		return nil
	}

	factory, ok := cfg.Engines[g.Target.Protocol]
	if !ok {
		_ = closeRec()
		return st.fail(g.ID, spec.CodeBadSpec, fmt.Errorf("session: protocol %s is not served by this proxy", g.Target.Protocol))
	}
	eng, err := factory(g, rec, log)
	if err != nil {
		_ = closeRec()
		return st.fail(g.ID, spec.CodeBadSpec, err)
	}

	var runErr error
	switch g.Mode {
	case spec.Exec:
		runErr = runExec(ctx, eng, g, st)
	case spec.Session:
		runErr = runSession(ctx, eng, g, st, log, cfg.DrainTimeout)
	}
	if err := closeRec(); err != nil && runErr == nil {
		runErr = st.fail(g.ID, spec.CodeRecording, fmt.Errorf("session: close recording: %w", err))
	}
	recPath = upload(parent, cfg, recPath, log)
	log.Info("proxy exiting", "recording", recPath, "err", runErr)
	st.send(spec.Status{Type: spec.StatusExit, GrantID: g.ID, Recording: recPath})
	return runErr
}

// upload stores the closed recording in cfg.Sink and returns where it is now:
// the sink's location, or the spooled path when every attempt failed (the
// broker's sweeper and `jitgate recordings flush` retry it from there). It runs
// after the grant's deadline, so it does not inherit it; a stop signal does
// not cut it short either, only Upload.Timeout does.
func upload(ctx context.Context, cfg Config, path string, log *slog.Logger) string {
	if cfg.Sink == nil {
		return path
	}
	u := cfg.Upload
	u.Sink, u.Logger = cfg.Sink, log
	stored, err := u.Upload(context.WithoutCancel(ctx), path)
	if err != nil {
		log.Error("recording upload failed; it stays spooled for the sweeper", "path", path, "err", err)
		return path
	}
	log.Info("recording stored", "location", stored.Location)
	return stored.Location
}

func runExec(ctx context.Context, eng Engine, g *spec.Grant, st *statusWriter) error {
	res, err := eng.Exec(ctx, g.Operation)
	if err != nil {
		code := spec.CodeUpstream
		switch {
		case errors.Is(err, ErrBlocked):
			code = spec.CodeBlocked
		case errors.Is(err, ErrStatement):
			code = spec.CodeStatement
		case errors.Is(err, context.DeadlineExceeded):
			code = spec.CodeExpired
		}
		return st.fail(g.ID, code, err)
	}
	st.send(spec.Status{Type: spec.StatusResult, GrantID: g.ID, Result: res})
	return nil
}

func runSession(ctx context.Context, eng Engine, g *spec.Grant, st *statusWriter, log *slog.Logger, drain time.Duration) error {
	listen := g.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return st.fail(g.ID, spec.CodeInternal, fmt.Errorf("session: listen %s: %w", listen, err))
	}
	pm, err := startMetrics(g, eng, log)
	if err != nil {
		ln.Close()
		return st.fail(g.ID, spec.CodeBadSpec, err)
	}
	defer pm.stop()
	stopProfile, err := startProfile(g.Profile)
	if err != nil {
		ln.Close()
		return st.fail(g.ID, spec.CodeBadSpec, err)
	}
	defer stopProfile(log)
	ready := spec.Status{Type: spec.StatusReady, GrantID: g.ID, Addr: ln.Addr().String(), Metrics: pm.addr()}
	if hk, ok := eng.(interface{ HostKeyLine() string }); ok {
		ready.HostKey = hk.HostKeyLine()
	}
	if c, ok := eng.(interface{ CertificatePEM() string }); ok {
		ready.Certificate = c.CertificatePEM()
	}
	st.send(ready)
	log.Info("proxy ready", "addr", ready.Addr, "metrics", ready.Metrics)
	// The session ends at the deadline, or early when its target goes away.
	ctx, endSession := context.WithCancel(ctx)
	defer endSession()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var (
		wg       sync.WaitGroup
		lostOnce sync.Once
		lost     = make(chan error, 1)
	)
	for {
		conn, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		conn, untrack := pm.track(conn)
		go func() {
			defer wg.Done()
			defer untrack()
			err := eng.Serve(ctx, conn)
			switch {
			case err != nil && errors.Is(err, ErrTargetLost) && ctx.Err() == nil:
				lostOnce.Do(func() {
					lost <- err
					log.Warn("the target went away; ending the session", "remote", conn.RemoteAddr().String(), "err", err)
					endSession()
				})
			case err != nil && ctx.Err() == nil:
				log.Info("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		log.Warn("connections still open after the deadline; exiting anyway")
	}
	select {
	case err := <-lost:
		return st.fail(g.ID, spec.CodeUpstream, fmt.Errorf("session ended: %w", err))
	default:
		return nil
	}
}

type statusWriter struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

func (s *statusWriter) send(m spec.Status) {
	m.Time = s.now().UTC()
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.w.Write(append(b, '\n'))
}

func (s *statusWriter) fail(id, code string, err error) error {
	s.send(spec.Status{Type: spec.StatusError, GrantID: id, Code: code, Error: err.Error()})
	return err
}
