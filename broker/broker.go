// Package broker turns a verified identity and a request into a grant, and runs
// the grant's life: policy decision → (approval) → per-grant credential →
// ephemeral proxy launch → result or session → credential revocation → audit.
// It is stateless over its grant.Store, so several brokers (or Lambda invocations)
// can share one store; every state change is a conditional write.
//
// Transport lives elsewhere: broker/httpapi maps HTTP to Service calls.
package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/broker/launch"
	"github.com/jitgate/jitgate/broker/metrics"
	"github.com/jitgate/jitgate/broker/notify"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Errors the transport layer maps to status codes.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrNotFound     = errors.New("not found")
	ErrForbidden    = errors.New("forbidden")
	ErrDenied       = errors.New("denied by policy")
	ErrConflict     = errors.New("conflict")
	ErrUnavailable  = errors.New("unavailable")
	ErrNotApproved  = errors.New("not approved")
	ErrGrantExpired = errors.New("grant expired")
	// ErrStatementFailed: the operation reached the target and the target
	// refused or failed it (an SQL error, a command's failure).
	ErrStatementFailed = errors.New("statement failed at the target")
)

// Config wires a Service. Every field without a default is required.
type Config struct {
	Policy *policy.Policy
	Store  grant.Store
	Audit  *audit.Log
	// Sources holds one credential source per target name.
	Sources  map[string]credentials.Source
	Launcher launch.Launcher
	// RecordDir is where proxies spool their recordings.
	RecordDir string
	// MaskTokenKey keys the deterministic "token" mask style. MUST be secret.
	MaskTokenKey []byte
	// DevLoopback lets proxies accept cleartext passwords on loopback. Dev only.
	DevLoopback bool
	// ProxyListen is where session proxies listen; default "127.0.0.1:0".
	ProxyListen string
	// DefaultTTL applies when neither the request nor the rule sets one; default 10m.
	DefaultTTL time.Duration
	// PendingTimeout applies when a rule's approval has no timeout; default 15m.
	PendingTimeout time.Duration
	// RunTimeout bounds one exec-mode run; default 2m.
	RunTimeout time.Duration
	// Notifier tells approvers about pending grants; optional. Its failure
	// never changes a grant.
	Notifier Notifier
	// Explainer estimates the rows an SQL write touches, for approvers; optional.
	Explainer Explainer
	// Recordings finds a grant's stored recording by key ("<grant id>.jgr")
	// when its proxy stored it but no broker heard the proxy's exit (the
	// broker died mid-session); the sweeper links it to the grant. Optional.
	Recordings RecordingFinder
	// ApproveURL is the approval page's base URL ("https://broker/ui"), for
	// links in notifications; optional.
	ApproveURL string
	// Metrics counts grants, decisions, sessions and failures; optional (nil
	// counts nothing).
	Metrics *metrics.Broker
	// ProxyMetrics has every session proxy serve Prometheus metrics on a
	// loopback port, named in the session.started audit event (metrics=ADDR).
	ProxyMetrics bool
	Now          func() time.Time
	Logger       *slog.Logger
}

// Notifier delivers "approval needed" messages.
type Notifier interface {
	Pending(ctx context.Context, msg notify.Message) []notify.Result
}

// RecordingFinder locates a stored recording by key (filesink.Sink does).
type RecordingFinder interface {
	Find(ctx context.Context, key string) (location string, found bool, err error)
}

// Explainer returns PostgreSQL's row estimate for sql on target without running it.
type Explainer interface {
	Explain(ctx context.Context, target, sql string) (float64, error)
}

// Service is the broker.
type Service struct {
	cfg Config
	// sessions holds the running session proxies this process launched.
	mu       sync.Mutex
	sessions map[string]launch.Handle
	wg       sync.WaitGroup
	// unrevoked holds grants whose revocation failed since the sweeper's
	// first full scan (sweep.go: retryRevocations).
	unrevoked     map[string]bool
	scannedRevoke bool
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Policy == nil:
		return nil, errors.New("broker: no policy")
	case cfg.Store == nil:
		return nil, errors.New("broker: no grant store")
	case cfg.Audit == nil:
		return nil, errors.New("broker: no audit log")
	case cfg.Launcher == nil:
		return nil, errors.New("broker: no launcher")
	case cfg.RecordDir == "":
		return nil, errors.New("broker: no recording directory")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProxyListen == "" {
		cfg.ProxyListen = "127.0.0.1:0"
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = 10 * time.Minute
	}
	if cfg.PendingTimeout == 0 {
		cfg.PendingTimeout = 15 * time.Minute
	}
	if cfg.RunTimeout == 0 {
		cfg.RunTimeout = 2 * time.Minute
	}
	if len(cfg.MaskTokenKey) == 0 {
		cfg.MaskTokenKey = make([]byte, 32)
		if _, err := rand.Read(cfg.MaskTokenKey); err != nil {
			return nil, err
		}
	}
	for _, t := range cfg.Policy.Targets {
		if _, ok := cfg.Sources[t.Name]; !ok {
			return nil, fmt.Errorf("broker: target %s has no credential source", t.Name)
		}
	}
	return &Service{cfg: cfg, sessions: map[string]launch.Handle{}, unrevoked: map[string]bool{}}, nil
}

// Policy returns the loaded policy.
func (s *Service) Policy() *policy.Policy { return s.cfg.Policy }

// RequestInput is what an agent asks for.
type RequestInput struct {
	Target string
	Mode   spec.Mode
	// Operation is the exec-mode SQL statement.
	Operation string
	// Access is the level a session asks for (exec derives it from the statement).
	Access spec.Access
	TTL    time.Duration
	Reason string
}

// Request decides and stores a grant. A denied request is stored too (for audit)
// and returned together with an error wrapping ErrDenied.
func (s *Service) Request(ctx context.Context, who identity.Identity, in RequestInput) (*grant.Grant, error) {
	started := s.cfg.Now()
	if in.Target == "" {
		return nil, fmt.Errorf("%w: target is required", ErrBadRequest)
	}
	tgt, ok := s.cfg.Policy.Target(in.Target)
	if !ok {
		return nil, fmt.Errorf("%w: unknown target %q", ErrBadRequest, in.Target)
	}
	if in.TTL < 0 {
		return nil, fmt.Errorf("%w: ttl must be positive", ErrBadRequest)
	}
	if len(in.Reason) > 2000 {
		return nil, fmt.Errorf("%w: reason is longer than 2000 characters", ErrBadRequest)
	}
	g := &grant.Grant{
		ID: grant.NewID(), Requester: who.Key(), RequesterName: displayName(who), Groups: who.Groups,
		Claims: approverClaims(who.Claims), Target: tgt.Name, Protocol: tgt.Protocol, Mode: in.Mode,
		Reason: in.Reason, CreatedAt: started, UpdatedAt: started,
	}
	if in.Mode == spec.Exec {
		if len(in.Operation) > 1<<20 {
			return nil, fmt.Errorf("%w: operation is larger than 1 MiB", ErrBadRequest)
		}
		g.Operation = in.Operation
		sum := sha256.Sum256([]byte(in.Operation))
		g.OperationHash = hex.EncodeToString(sum[:])
	}
	ev, err := Evaluate(s.cfg.Policy, who, in)
	if err != nil {
		return nil, err
	}
	d := ev.Decision
	g.Access, g.Statements = ev.Access, ev.Statements
	g.Rule, g.Reasons, g.Effect = d.Rule, ev.Reasons, ev.Effect.String()
	effect := ev.Effect
	g.TTL = s.ttl(in.TTL, d.MaxTTL)
	switch effect {
	case policy.EffectAllow:
		g.State = grant.Approved
	case policy.EffectApprove:
		g.State = grant.Pending
		timeout := s.cfg.PendingTimeout
		if d.Approval != nil {
			g.ApproversGroups, g.ApproversUsers, g.Quorum = d.Approval.Groups, d.Approval.Users, max(d.Approval.Quorum, 1)
			g.CoversNext = d.Approval.CoversNext
			if d.Approval.Timeout > 0 {
				timeout = d.Approval.Timeout
			}
		}
		g.PendingUntil = started.Add(timeout)
		if by, note := s.coveredBy(ctx, g, timeout); by != "" {
			g.State, g.CoveredBy, g.CoversNext = grant.Approved, by, 0
			g.Reasons = append(g.Reasons, note)
		} else if d.Approval != nil && d.Approval.Explain && g.Mode == spec.Exec && g.Access >= spec.Write && s.cfg.Explainer != nil {
			g.EstimatedRows = -1
			if n, err := s.cfg.Explainer.Explain(ctx, g.Target, g.Operation); err == nil {
				g.EstimatedRows = n
			} else {
				s.cfg.Logger.Warn("explain estimate failed", "grant", g.ID, "err", err)
			}
		}
	default:
		g.State = grant.Denied
	}
	if err := s.cfg.Store.Create(ctx, g); err != nil {
		return nil, fmt.Errorf("broker: store grant: %w", err)
	}
	s.cfg.Metrics.Decision(g.Effect, s.cfg.Now().Sub(started))
	s.cfg.Metrics.Transition(g.State.String(), g.Effect)
	s.cfg.Logger.Info("grant decided", "grant", g.ID, "target", g.Target, "mode", g.Mode.String(), "effect", g.Effect, "state", g.State.String(), "rule", g.Rule)
	s.audit(ctx, audit.Event{Type: audit.GrantRequested, GrantID: g.ID, Actor: g.Requester, Target: g.Target,
		Statement: g.Operation, Detail: fmt.Sprintf("mode=%s access=%s reason=%q", g.Mode, g.Access, g.Reason)})
	s.audit(ctx, audit.Event{Type: audit.GrantDecided, GrantID: g.ID, Actor: "policy", Target: g.Target, Rule: g.Rule,
		Reasons: g.Reasons, Detail: "effect=" + g.Effect,
		StageMillis: map[string]float64{"policy": ms(s.cfg.Now().Sub(started))}})
	if g.State == grant.Denied {
		return g, fmt.Errorf("%w: %s", ErrDenied, strings.Join(g.Reasons, "; "))
	}
	if g.State == grant.Pending && s.cfg.Notifier != nil {
		s.notify(g)
	}
	return g, nil
}

// coveredBy finds an approved grant whose approval covers this identical
// operation (rule covers_next): same requester, target, rule, statement and
// pull request, approved within the approval window, with uses left. The use is
// taken with a conditional write, so racing requests cannot overspend it.
func (s *Service) coveredBy(ctx context.Context, g *grant.Grant, window time.Duration) (string, string) {
	if g.Mode != spec.Exec || g.OperationHash == "" {
		return "", ""
	}
	cands, err := s.cfg.Store.List(ctx, grant.Filter{Requester: g.Requester, Target: g.Target})
	if err != nil {
		return "", ""
	}
	now := s.cfg.Now()
	for _, c := range cands {
		if c.CoversNext <= c.CoverUses || c.OperationHash != g.OperationHash || c.Rule != g.Rule || c.Mode != spec.Exec {
			continue
		}
		if c.State != grant.Approved && c.State != grant.Active && c.State != grant.Ended {
			continue
		}
		if fmt.Sprint(c.Claims["repository"], c.Claims["ref"]) != fmt.Sprint(g.Claims["repository"], g.Claims["ref"]) {
			continue
		}
		var last time.Time
		for _, a := range c.Approvals {
			if a.Decision == "approve" && a.At.After(last) {
				last = a.At
			}
		}
		if last.IsZero() || now.After(last.Add(window)) {
			continue
		}
		var use int
		_, err := s.cfg.Store.Update(ctx, c.ID, func(cc *grant.Grant) error {
			if cc.CoverUses >= cc.CoversNext {
				return fmt.Errorf("%w: no uses left", ErrConflict)
			}
			cc.CoverUses++
			use = cc.CoverUses
			return nil
		})
		if err == nil {
			return c.ID, fmt.Sprintf("covered by the approval of %s (%d of %d)", c.ID, use, c.CoversNext)
		}
	}
	return "", ""
}

// notify tells approvers in the background; the outcome is audited and never
// changes the grant.
func (s *Service) notify(g *grant.Grant) {
	msg := notify.Message{GrantID: g.ID, Requester: g.RequesterName + " (" + g.Requester + ")", Target: g.Target,
		Access: g.Access.String(), Mode: g.Mode.String(), Operation: g.Operation, Reason: g.Reason, Rule: g.Rule,
		Approvers: append(append([]string{}, g.ApproversGroups...), g.ApproversUsers...), Quorum: g.Quorum,
		Claims: g.Claims, Expires: g.PendingUntil}
	if s.cfg.ApproveURL != "" {
		msg.ApproveURL = strings.TrimRight(s.cfg.ApproveURL, "/") + "/grants/" + g.ID
	}
	for _, st := range g.Statements {
		msg.Statements = append(msg.Statements, notify.Statement{SQL: st.SQL, Kind: st.Kind, Class: st.Class})
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, r := range s.cfg.Notifier.Pending(ctx, msg) {
			detail := fmt.Sprintf("%s delivered after %d attempt(s)", r.Target.Kind, r.Attempts)
			if r.Err != nil {
				detail = fmt.Sprintf("%s failed after %d attempt(s): %v", r.Target.Kind, r.Attempts, r.Err)
				s.cfg.Logger.Warn("approval notification failed", "grant", g.ID, "err", r.Err)
			}
			s.audit(ctx, audit.Event{Type: audit.GrantNotified, GrantID: g.ID, Target: g.Target, Actor: "broker", Detail: detail})
		}
	}()
}

func (s *Service) ttl(asked, max time.Duration) time.Duration {
	ttl := s.cfg.DefaultTTL
	if asked > 0 {
		ttl = asked
	}
	if max > 0 && ttl > max {
		ttl = max
	}
	return ttl
}

// Get returns a grant to its requester or to someone who may approve it.
func (s *Service) Get(ctx context.Context, who identity.Identity, id string) (*grant.Grant, error) {
	g, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if g.Requester != who.Key() && !mayApprove(g, who) {
		return nil, fmt.Errorf("%w: grant %s belongs to another identity", ErrForbidden, id)
	}
	return g, nil
}

// List returns grants visible to who: their own, and the ones they may approve.
func (s *Service) List(ctx context.Context, who identity.Identity, f grant.Filter) ([]*grant.Grant, error) {
	all, err := s.cfg.Store.List(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("broker: list: %w", err)
	}
	var out []*grant.Grant
	for _, g := range all {
		if g.Requester == who.Key() || mayApprove(g, who) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *Service) load(ctx context.Context, id string) (*grant.Grant, error) {
	g, err := s.cfg.Store.Get(ctx, id)
	if errors.Is(err, grant.ErrNotFound) {
		return nil, fmt.Errorf("%w: grant %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("broker: load grant: %w", err)
	}
	return g, nil
}

// Approve records one approval; the grant becomes Approved at quorum.
func (s *Service) Approve(ctx context.Context, who identity.Identity, id, reason string) (*grant.Grant, error) {
	return s.decide(ctx, who, id, reason, true)
}

// Deny refuses a pending grant.
func (s *Service) Deny(ctx context.Context, who identity.Identity, id, reason string) (*grant.Grant, error) {
	return s.decide(ctx, who, id, reason, false)
}

func (s *Service) decide(ctx context.Context, who identity.Identity, id, reason string, approve bool) (*grant.Grant, error) {
	if _, err := s.load(ctx, id); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	g, err := s.cfg.Store.Update(ctx, id, func(g *grant.Grant) error {
		if g.Requester == who.Key() {
			return fmt.Errorf("%w: a requester cannot approve or deny its own grant", ErrForbidden)
		}
		if !mayApprove(g, who) {
			return fmt.Errorf("%w: %s is not an approver for grant %s", ErrForbidden, displayName(who), g.ID)
		}
		if why := s.notHuman(who); why != "" {
			return fmt.Errorf("%w: %s", ErrForbidden, why)
		}
		if g.State != grant.Pending {
			return fmt.Errorf("%w: grant %s is %s, not pending", ErrConflict, g.ID, g.State)
		}
		if now.After(g.PendingUntil) {
			return fmt.Errorf("%w: grant %s waited past %s", ErrGrantExpired, g.ID, g.PendingUntil.UTC().Format(time.RFC3339))
		}
		for _, a := range g.Approvals {
			if a.By == who.Key() {
				return fmt.Errorf("%w: %s already decided on grant %s", ErrConflict, displayName(who), g.ID)
			}
		}
		d := "approve"
		if !approve {
			d = "deny"
		}
		g.Approvals = append(g.Approvals, grant.Approval{By: who.Key(), Name: displayName(who), At: now, Decision: d, Reason: reason})
		if !approve {
			return g.Transition(grant.Denied, now)
		}
		n := 0
		for _, a := range g.Approvals {
			if a.Decision == "approve" {
				n++
			}
		}
		if n >= max(g.Quorum, 1) {
			return g.Transition(grant.Approved, now)
		}
		g.UpdatedAt = now
		return nil
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	if g.State != grant.Pending {
		s.cfg.Metrics.Transition(g.State.String(), g.Effect)
	}
	s.cfg.Logger.Info("grant decision recorded", "grant", g.ID, "by", who.Key(), "approve", approve, "state", g.State.String())
	typ := audit.GrantApproved
	if !approve {
		typ = audit.GrantDenied
	}
	s.audit(ctx, audit.Event{Type: typ, GrantID: g.ID, Actor: who.Key(), Target: g.Target, Detail: fmt.Sprintf("state=%s reason=%q", g.State, reason)})
	return g, nil
}

// RunResult is the outcome of an exec-mode grant.
type RunResult struct {
	Grant     *grant.Grant
	Result    *spec.Result
	Recording string
}

// Run executes an approved exec-mode grant once, for its requester.
func (s *Service) Run(ctx context.Context, who identity.Identity, id string) (*RunResult, error) {
	g, err := s.activate(ctx, who, id, spec.Exec)
	if err != nil {
		return nil, err
	}
	stages := map[string]float64{}
	res, recPath, runErr := s.runExec(ctx, g, stages)
	g = s.finish(ctx, g, recPath, runErr, stages)
	if runErr != nil {
		return &RunResult{Grant: g, Recording: recPath}, runErr
	}
	return &RunResult{Grant: g, Result: res, Recording: recPath}, nil
}

// SessionInfo tells a client how to reach its session proxy.
type SessionInfo struct {
	Grant    *grant.Grant
	Host     string
	Port     string
	User     string
	Password spec.Secret
	Database string
	// HostKey is the SSH proxy's host key line, when the target speaks SSH.
	HostKey string
	// Certificate is the kube proxy's TLS certificate (PEM), when the target is Kubernetes.
	Certificate string
	Expires     time.Time
}

// OpenSession launches the session proxy of an approved session grant.
func (s *Service) OpenSession(ctx context.Context, who identity.Identity, id string) (*SessionInfo, error) {
	g, err := s.activate(ctx, who, id, spec.Session)
	if err != nil {
		return nil, err
	}
	secret := randomSecret()
	sum := sha256.Sum256([]byte(secret))
	stages := map[string]float64{}
	t0 := s.cfg.Now()
	cred, err := s.issue(ctx, g)
	stages["credential"] = ms(s.cfg.Now().Sub(t0))
	if err != nil {
		s.fail(ctx, g, err, "")
		return nil, err
	}
	gs := s.proxySpec(g, cred, spec.NewSecret(secret))
	t1 := s.cfg.Now()
	h, err := s.cfg.Launcher.Launch(ctx, gs)
	if err == nil {
		var st spec.Status
		st, err = h.Ready(ctx)
		if err == nil && st.Type != spec.StatusReady {
			err = fmt.Errorf("broker: proxy answered %s instead of ready", st.Type)
		}
		if err == nil {
			host, port, _ := strings.Cut(st.Addr, ":")
			stages["launch"] = ms(s.cfg.Now().Sub(t1))
			g, err = s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error {
				gg.ProxyAddr, gg.SecretHash, gg.UpdatedAt = st.Addr, hex.EncodeToString(sum[:]), s.cfg.Now()
				return nil
			})
			if err == nil {
				detail := "proxy=" + st.Addr
				if st.Metrics != "" {
					detail += " metrics=" + st.Metrics
				}
				s.audit(ctx, audit.Event{Type: audit.SessionStarted, GrantID: g.ID, Actor: g.Requester, Target: g.Target, Detail: detail, StageMillis: stages})
				s.cfg.Logger.Info("session started", "grant", g.ID, "proxy_addr", st.Addr, "metrics", st.Metrics)
				s.watch(g, cred, h)
				return &SessionInfo{Grant: g, Host: host, Port: port, User: g.ID, Password: spec.NewSecret(secret),
					Database: gs.Target.Database, HostKey: st.HostKey, Certificate: st.Certificate, Expires: g.ExpiresAt}, nil
			}
		}
		_ = h.Stop()
	}
	s.revoke(context.WithoutCancel(ctx), g, cred)
	s.fail(ctx, g, err, "")
	return nil, fmt.Errorf("%w: start proxy: %v", ErrUnavailable, err)
}

// EndSession stops a running session early, for its requester.
func (s *Service) EndSession(ctx context.Context, who identity.Identity, id string) (*grant.Grant, error) {
	g, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if g.Requester != who.Key() {
		return nil, fmt.Errorf("%w: only the requester can end grant %s", ErrForbidden, id)
	}
	s.mu.Lock()
	h := s.sessions[id]
	s.mu.Unlock()
	if h == nil {
		return g, nil
	}
	_ = h.Stop()
	if _, err := h.Wait(ctx); err != nil {
		s.cfg.Logger.Warn("session ended with error", "grant", id, "err", err)
	}
	// watch() finishes the grant; wait for it so the caller sees the end state.
	for i := 0; i < 100; i++ {
		if g, err = s.load(ctx, id); err == nil && g.State.Terminal() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return g, nil
}

// watch finishes a session grant when its proxy exits (deadline or stop).
func (s *Service) watch(g *grant.Grant, cred spec.Credential, h launch.Handle) {
	s.mu.Lock()
	s.sessions[g.ID] = h
	s.mu.Unlock()
	s.cfg.Metrics.SessionStarted()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx := context.Background()
		waitCtx, cancel := context.WithDeadline(ctx, g.ExpiresAt.Add(10*time.Second))
		st, err := h.Wait(waitCtx)
		cancel()
		if err != nil && waitCtx.Err() != nil {
			_ = h.Stop()
			st, err = h.Wait(ctx)
		}
		s.mu.Lock()
		delete(s.sessions, g.ID)
		s.mu.Unlock()
		s.cfg.Metrics.SessionEnded()
		s.revoke(ctx, g, cred)
		var runErr error
		if err != nil && st.Code != spec.CodeExpired {
			runErr = err
		}
		s.finish(ctx, g, st.Recording, runErr, nil)
	}()
}

// Close stops every session proxy this process launched and waits for their
// credentials to be revoked.
func (s *Service) Close() {
	s.mu.Lock()
	hs := make([]launch.Handle, 0, len(s.sessions))
	for _, h := range s.sessions {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	for _, h := range hs {
		_ = h.Stop()
	}
	s.wg.Wait()
}

// activate moves an approved grant of the right mode to Active for its requester.
func (s *Service) activate(ctx context.Context, who identity.Identity, id string, mode spec.Mode) (*grant.Grant, error) {
	if _, err := s.load(ctx, id); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	g, err := s.cfg.Store.Update(ctx, id, func(g *grant.Grant) error {
		if g.Requester != who.Key() {
			return fmt.Errorf("%w: only the requester can use grant %s", ErrForbidden, g.ID)
		}
		if g.Mode != mode {
			return fmt.Errorf("%w: grant %s is a %s grant", ErrBadRequest, g.ID, g.Mode)
		}
		switch g.State {
		case grant.Approved:
		case grant.Pending:
			return fmt.Errorf("%w: grant %s is waiting for approval", ErrNotApproved, g.ID)
		case grant.Denied:
			return fmt.Errorf("%w: grant %s was denied", ErrDenied, g.ID)
		default:
			return fmt.Errorf("%w: grant %s is %s", ErrConflict, g.ID, g.State)
		}
		g.ExpiresAt = now.Add(g.TTL)
		return g.Transition(grant.Active, now)
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.cfg.Metrics.Transition(g.State.String(), g.Effect)
	return g, nil
}

func (s *Service) issue(ctx context.Context, g *grant.Grant) (spec.Credential, error) {
	src := s.cfg.Sources[g.Target]
	// The credential outlives the proxy slightly so revocation, not expiry,
	// normally ends it; VALID UNTIL / lease TTL is the backstop.
	cred, err := src.Issue(ctx, credentials.Request{GrantID: g.ID, Access: g.Access, Expires: g.ExpiresAt.Add(time.Minute)})
	if err != nil {
		s.cfg.Metrics.IssueFailed(g.Target)
		return spec.Credential{}, fmt.Errorf("%w: issue credential for %s: %v", ErrUnavailable, g.Target, err)
	}
	// The lease id is what lets a sweeper revoke this credential if this
	// process dies; failing to store it is loud (VALID UNTIL / the lease TTL
	// remains the backstop).
	if _, err := s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error { gg.LeaseID = cred.LeaseID; return nil }); err != nil {
		s.cfg.Logger.Error("store lease id; only the credential's own expiry will end it if this broker dies", "grant", g.ID, "lease", cred.LeaseID, "err", err)
	}
	g.LeaseID = cred.LeaseID
	s.cfg.Logger.Info("credential issued", "grant", g.ID, "lease", cred.LeaseID)
	s.audit(ctx, audit.Event{Type: audit.CredentialIssued, GrantID: g.ID, Target: g.Target, LeaseID: cred.LeaseID, Actor: "broker"})
	return cred, nil
}

func (s *Service) revoke(ctx context.Context, g *grant.Grant, cred spec.Credential) {
	src := s.cfg.Sources[g.Target]
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := credentials.RevokeWithRetry(ctx, src, cred, 5, 200*time.Millisecond)
	_, _ = s.cfg.Store.Update(context.WithoutCancel(ctx), g.ID, func(gg *grant.Grant) error {
		gg.CredentialRevoked = err == nil
		if err != nil {
			gg.RevokeError = err.Error()
		}
		return nil
	})
	if err != nil {
		s.mu.Lock()
		s.unrevoked[g.ID] = true
		s.mu.Unlock()
		s.cfg.Metrics.RevokeFailed(g.Target)
		s.cfg.Logger.Error("credential revoke failed; it still expires by itself", "grant", g.ID, "lease", cred.LeaseID, "err", err)
		s.audit(ctx, audit.Event{Type: audit.CredentialRevokeFailed, GrantID: g.ID, Target: g.Target, LeaseID: cred.LeaseID, Actor: "broker",
			Detail: fmt.Sprintf("%v; expires at %s", err, cred.Expires.UTC().Format(time.RFC3339))})
		return
	}
	s.cfg.Logger.Info("credential revoked", "grant", g.ID, "lease", cred.LeaseID)
	s.audit(ctx, audit.Event{Type: audit.CredentialRevoked, GrantID: g.ID, Target: g.Target, LeaseID: cred.LeaseID, Actor: "broker"})
}

func (s *Service) runExec(ctx context.Context, g *grant.Grant, stages map[string]float64) (*spec.Result, string, error) {
	t0 := s.cfg.Now()
	cred, err := s.issue(ctx, g)
	stages["credential"] = ms(s.cfg.Now().Sub(t0))
	if err != nil {
		return nil, "", err
	}
	defer func() {
		t := s.cfg.Now()
		s.revoke(context.WithoutCancel(ctx), g, cred)
		stages["revoke"] = ms(s.cfg.Now().Sub(t))
	}()
	runCtx, cancel := context.WithTimeout(ctx, s.cfg.RunTimeout)
	defer cancel()
	t1 := s.cfg.Now()
	// The exec runner talks to its own engine in-process; the secret still
	// guards that path so the engine has one authentication rule.
	h, err := s.cfg.Launcher.Launch(runCtx, s.proxySpec(g, cred, spec.NewSecret(randomSecret())))
	if err != nil {
		return nil, "", fmt.Errorf("%w: launch proxy: %v", ErrUnavailable, err)
	}
	st, err := h.Ready(runCtx)
	stages["launch_and_run"] = ms(s.cfg.Now().Sub(t1))
	exit, werr := h.Wait(runCtx)
	if werr != nil && exit.Type == "" {
		_ = h.Stop()
	}
	rec := exit.Recording
	if err != nil {
		switch st.Code {
		case spec.CodeBlocked:
			return nil, rec, fmt.Errorf("%w: %s", ErrDenied, st.Error)
		case spec.CodeStatement:
			return nil, rec, fmt.Errorf("%w: %s", ErrStatementFailed, st.Error)
		}
		return nil, rec, fmt.Errorf("%w: %s", ErrUnavailable, firstNonEmpty(st.Error, err.Error()))
	}
	if st.Type != spec.StatusResult || st.Result == nil {
		return nil, rec, fmt.Errorf("%w: proxy answered %s without a result", ErrUnavailable, st.Type)
	}
	return st.Result, rec, nil
}

func (s *Service) proxySpec(g *grant.Grant, cred spec.Credential, secret spec.Secret) *spec.Grant {
	tgt, _ := s.cfg.Policy.Target(g.Target)
	gd := tgt.SpecGuard(g.Access)
	// An interactive shell is recorded, not filtered: only an admin session
	// grant on a target whose policy allows shells gets one.
	gd.Commands.Interactive = gd.Commands.Interactive && g.Mode == spec.Session && g.Access >= spec.Admin
	mk := tgt.SpecMask()
	mk.TokenKey = spec.NewSecret(string(s.cfg.MaskTokenKey)).Wire()
	return &spec.Grant{
		ID: g.ID, Mode: g.Mode, Identity: g.Requester, Rule: g.Rule, Operation: g.Operation,
		Target:       tgt.SpecTarget(),
		ClientSecret: secret.Wire(), Listen: s.cfg.ProxyListen, Deadline: g.ExpiresAt, Credential: cred,
		Guard:       gd,
		Mask:        mk,
		Record:      spec.Record{Dir: s.cfg.RecordDir},
		DevLoopback: s.cfg.DevLoopback,
		Metrics:     proxyMetricsAddr(s.cfg.ProxyMetrics, g.Mode),
	}
}

// proxyMetricsAddr is where a session proxy serves its metrics: a free
// loopback port when they are on.
func proxyMetricsAddr(on bool, mode spec.Mode) string {
	if on && mode == spec.Session {
		return "127.0.0.1:0"
	}
	return ""
}

// finish moves an active grant to Ended (or Failed) and audits it.
func (s *Service) finish(ctx context.Context, g *grant.Grant, recPath string, runErr error, stages map[string]float64) *grant.Grant {
	ctx = context.WithoutCancel(ctx)
	now := s.cfg.Now()
	to := grant.Ended
	if runErr != nil && !errors.Is(runErr, ErrDenied) && !errors.Is(runErr, ErrStatementFailed) {
		to = grant.Failed
	}
	moved := false
	ng, err := s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error {
		gg.RecordingPath = recPath
		if runErr != nil {
			gg.Error = runErr.Error()
		}
		if gg.State.Terminal() {
			return nil
		}
		moved = true
		return gg.Transition(to, now)
	})
	if err != nil {
		s.cfg.Logger.Error("finish grant", "grant", g.ID, "err", err)
		ng = g
	} else if moved {
		s.cfg.Metrics.Transition(ng.State.String(), ng.Effect)
		s.cfg.Logger.Info("grant finished", "grant", g.ID, "state", ng.State.String(), "recording", recPath)
	}
	if recPath != "" {
		s.audit(ctx, audit.Event{Type: audit.RecordingStored, GrantID: g.ID, Target: g.Target, Actor: "broker", Detail: recPath})
		s.auditCommands(ctx, g, recPath)
	}
	detail := "state=" + ng.State.String()
	if runErr != nil {
		detail += " error=" + runErr.Error()
	}
	s.audit(ctx, audit.Event{Type: audit.SessionEnded, GrantID: g.ID, Target: g.Target, Actor: "broker", Detail: detail, StageMillis: stages})
	return ng
}

func (s *Service) fail(ctx context.Context, g *grant.Grant, cause error, recPath string) {
	ctx = context.WithoutCancel(ctx)
	now := s.cfg.Now()
	moved := false
	if _, err := s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error {
		gg.Error = cause.Error()
		gg.RecordingPath = firstNonEmpty(recPath, gg.RecordingPath)
		if gg.State.Terminal() {
			return nil
		}
		moved = true
		return gg.Transition(grant.Failed, now)
	}); err == nil && moved {
		s.cfg.Metrics.Transition(grant.Failed.String(), g.Effect)
	}
	s.cfg.Logger.Warn("grant failed", "grant", g.ID, "err", cause)
	s.audit(ctx, audit.Event{Type: audit.GrantFailed, GrantID: g.ID, Target: g.Target, Actor: "broker", Detail: cause.Error()})
}

func (s *Service) audit(ctx context.Context, ev audit.Event) {
	if _, err := s.cfg.Audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		// The audit log is evidence: a write failure is loud.
		s.cfg.Logger.Error("audit append failed", "type", ev.Type, "grant", ev.GrantID, "err", err)
	}
}

// githubActionsIssuer mints workload tokens for CI jobs; they never approve.
const githubActionsIssuer = "https://token.actions.githubusercontent.com"

// notHuman says why who may not approve anything: approvers are humans. An
// issuer that marks humans (human_when) must mark this identity, and CI
// workload tokens never approve.
func (s *Service) notHuman(who identity.Identity) string {
	if who.Issuer == githubActionsIssuer {
		return "GitHub Actions workload identities cannot approve grants"
	}
	for _, is := range s.cfg.Policy.Issuers {
		if is.Issuer == who.Issuer && is.HumanWhen != "" && !who.Human {
			return fmt.Sprintf("%s is not a human identity (issuer %s marks humans with %s)", displayName(who), is.Name, is.HumanWhen)
		}
	}
	return ""
}

func mayApprove(g *grant.Grant, who identity.Identity) bool {
	if g.Requester == who.Key() {
		return false
	}
	// Named approvers are written "issuer-name:subject" in policy.
	if slices.Contains(g.ApproversUsers, who.IssuerName+":"+who.Subject) {
		return true
	}
	for _, grp := range who.Groups {
		if slices.Contains(g.ApproversGroups, grp) {
			return true
		}
	}
	return false
}

func mapStoreErr(err error) error {
	switch {
	case errors.Is(err, grant.ErrNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, grant.ErrConflict), errors.Is(err, grant.ErrIllegalTransition):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

// approverClaims keeps the claims an approver needs to judge a request.
func approverClaims(c map[string]any) map[string]any {
	keep := []string{"repository", "repository_owner", "ref", "sha", "event_name", "job_workflow_ref", "actor", "run_id", "head_ref", "base_ref", "pr", "pull_request", "email", "name"}
	out := map[string]any{}
	for _, k := range keep {
		if v, ok := c[k]; ok {
			out[k] = v
		}
	}
	return out
}

func displayName(who identity.Identity) string {
	for _, k := range []string{"email", "preferred_username", "name", "actor"} {
		if v, ok := who.Claims[k].(string); ok && v != "" {
			return v
		}
	}
	return who.Subject
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// SecretMatches compares a presented grant secret with the stored hash.
func SecretMatches(g *grant.Grant, secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(g.SecretHash)) == 1
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func firstNonEmpty(a ...string) string {
	for _, s := range a {
		if s != "" {
			return s
		}
	}
	return ""
}
