package broker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jitgate/jitgate/broker/audit"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// SweepReport counts what one sweep did.
type SweepReport struct {
	Expired int // pending or unused approved grants expired
	Ended   int // overdue active grants ended
	Revoked int // leaked credentials revoked
	// Rerevoked counts credentials whose earlier revocation had failed and
	// that this sweep revoked (the target came back).
	Rerevoked int
	Errors    []string
}

// Sweep expires pending grants past their wait, approved grants never used within
// their TTL, and active grants past their deadline that no proxy of this process
// serves any more (a crashed broker or proxy): their credentials are revoked.
// Every transition is conditional, so sweepers racing approvers give one outcome.
func (s *Service) Sweep(ctx context.Context) SweepReport {
	var rep SweepReport
	now := s.cfg.Now()
	for _, st := range []grant.State{grant.Pending, grant.Approved, grant.Active} {
		st := st
		gs, err := s.cfg.Store.List(ctx, grant.Filter{State: &st})
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			continue
		}
		for _, g := range gs {
			switch st {
			case grant.Pending:
				if now.After(g.PendingUntil) {
					if s.expire(ctx, g, now, "approval not given in time", &rep) {
						rep.Expired++
					}
				}
			case grant.Approved:
				if now.After(g.UpdatedAt.Add(g.TTL)) {
					if s.expire(ctx, g, now, "approved but not used within its ttl", &rep) {
						rep.Expired++
					}
				}
			case grant.Active:
				s.mu.Lock()
				_, running := s.sessions[g.ID]
				s.mu.Unlock()
				if running || now.Before(g.ExpiresAt.Add(s.cfg.RunTimeout)) {
					continue
				}
				if g.LeaseID != "" && !g.CredentialRevoked {
					s.revoke(ctx, g, spec.Credential{LeaseID: g.LeaseID, Username: roleFromLease(g.LeaseID)})
					rep.Revoked++
				}
				if s.expire(ctx, g, now, "deadline passed without its proxy reporting", &rep) {
					rep.Ended++
					s.linkRecording(ctx, g, &rep)
				}
			}
		}
	}
	s.retryRevocations(ctx, now, &rep)
	return rep
}

// linkRecording points a grant whose proxy outlived its broker at the
// recording the proxy stored (the broker that would have read the proxy's
// exit status is gone), audits where it is, and audits its verdicts. A
// recording still in the spool is FlushRecordings' job.
func (s *Service) linkRecording(ctx context.Context, g *grant.Grant, rep *SweepReport) {
	if g.RecordingPath != "" || s.cfg.Recordings == nil {
		return
	}
	loc, found, err := s.cfg.Recordings.Find(ctx, g.ID+record.Ext)
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: find recording: %v", g.ID, err))
		return
	}
	if !found {
		return
	}
	if _, err := s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error {
		gg.RecordingPath = loc
		return nil
	}); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: link recording: %v", g.ID, err))
		return
	}
	s.cfg.Logger.Info("recording linked by the sweeper", "grant", g.ID, "location", loc)
	s.audit(ctx, audit.Event{Type: audit.RecordingStored, GrantID: g.ID, Target: g.Target, Actor: "sweeper", Detail: loc})
	s.auditCommands(ctx, g, loc)
}

// retryRevocations tries once more, every sweep, each credential whose
// revocation failed after its retries (the target or the credential source
// was down). Until it succeeds the credential still ends by its own expiry
// (VALID UNTIL, lease TTL); after revokeRetryWindow past that expiry the sweeper
// stops trying. One attempt per sweep, so a target that stays down does not
// stall the sweep; only the success is audited (the failure already was).
// The first sweep of a process scans every ended grant (failures from before
// a restart, or from another broker); later sweeps retry only the failures
// this process saw since.
func (s *Service) retryRevocations(ctx context.Context, now time.Time, rep *SweepReport) {
	var gs []*grant.Grant
	s.mu.Lock()
	scanned := s.scannedRevoke
	ids := make([]string, 0, len(s.unrevoked))
	for id := range s.unrevoked {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	if !scanned {
		for _, st := range []grant.State{grant.Ended, grant.Failed, grant.Expired} {
			st := st
			l, err := s.cfg.Store.List(ctx, grant.Filter{State: &st})
			if err != nil {
				rep.Errors = append(rep.Errors, err.Error())
				return // scan again next sweep
			}
			gs = append(gs, l...)
		}
		s.mu.Lock()
		s.scannedRevoke = true
		s.mu.Unlock()
	} else {
		for _, id := range ids {
			g, err := s.cfg.Store.Get(ctx, id)
			if err != nil {
				rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", id, err))
				continue
			}
			gs = append(gs, g)
		}
	}
	for _, g := range gs {
		if g.LeaseID == "" || g.CredentialRevoked || g.RevokeError == "" || now.After(g.ExpiresAt.Add(revokeRetryWindow)) {
			s.mu.Lock()
			delete(s.unrevoked, g.ID)
			s.mu.Unlock()
			continue
		}
		if !g.State.Terminal() {
			continue // still running: its own end revokes it
		}
		src, ok := s.cfg.Sources[g.Target]
		if !ok {
			continue
		}
		cred := spec.Credential{LeaseID: g.LeaseID, Username: roleFromLease(g.LeaseID)}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := src.Revoke(rctx, cred)
		cancel()
		if err != nil {
			s.mu.Lock()
			s.unrevoked[g.ID] = true
			s.mu.Unlock()
			s.cfg.Logger.Debug("credential revoke retry failed", "grant", g.ID, "lease", g.LeaseID, "err", err)
			continue
		}
		s.mu.Lock()
		delete(s.unrevoked, g.ID)
		s.mu.Unlock()
		if _, err := s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error {
			gg.CredentialRevoked, gg.RevokeError = true, ""
			return nil
		}); err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", g.ID, err))
		}
		rep.Rerevoked++
		s.cfg.Logger.Info("credential revoked on retry", "grant", g.ID, "lease", g.LeaseID)
		s.audit(ctx, audit.Event{Type: audit.CredentialRevoked, GrantID: g.ID, Target: g.Target, LeaseID: g.LeaseID, Actor: "sweeper",
			Detail: "revoked on retry after: " + g.RevokeError})
	}
}

// revokeRetryWindow is how long past a credential's deadline the sweeper
// keeps retrying a failed revocation.
const revokeRetryWindow = 24 * time.Hour

func (s *Service) expire(ctx context.Context, g *grant.Grant, now time.Time, why string, rep *SweepReport) bool {
	_, err := s.cfg.Store.Update(ctx, g.ID, func(gg *grant.Grant) error {
		if gg.State != g.State {
			return fmt.Errorf("%w: state moved to %s", ErrConflict, gg.State)
		}
		return gg.Transition(grant.Expired, now)
	})
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", g.ID, err))
		return false
	}
	s.cfg.Metrics.Transition(grant.Expired.String(), g.Effect)
	s.cfg.Logger.Info("grant expired", "grant", g.ID, "why", why)
	s.audit(ctx, audit.Event{Type: audit.GrantExpired, GrantID: g.ID, Target: g.Target, Actor: "sweeper", Detail: why})
	return true
}

// RunSweeper sweeps every interval until ctx is done.
//
//	go svc.RunSweeper(ctx, 5*time.Second)
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if rep := s.Sweep(ctx); len(rep.Errors) > 0 {
				s.cfg.Logger.Warn("sweep", "expired", rep.Expired, "revoked", rep.Revoked, "errors", rep.Errors)
			}
		}
	}
}

// FlushRecordings uploads what proxies left in the recording spool (RecordDir)
// to sink: recordings whose proxy was killed mid-session (their sealed chunks
// verify; the missing end is reported by `jitgate recording verify`) and
// recordings whose upload failed. Files modified within minAge are left for
// their proxy and launcher. Each stored recording is audited as
// recording.stored with its new location, and the grant points to it.
//
//	n, err := svc.FlushRecordings(ctx, sink, 2*time.Minute) // from the sweeper's loop
func (s *Service) FlushRecordings(ctx context.Context, sink record.Sink, minAge time.Duration) (int, error) {
	stored, err := record.FlushSpoolStored(ctx, s.cfg.RecordDir, sink, record.FlushOptions{MinAge: minAge, Now: s.cfg.Now})
	if err != nil && ctx.Err() == nil {
		s.cfg.Metrics.UploadFailed()
	}
	for _, st := range stored {
		ev := audit.Event{Type: audit.RecordingStored, GrantID: st.GrantID, Actor: "sweeper", Detail: st.Location}
		if len(st.Companions) > 0 {
			ev.Detail += " companions=" + strings.Join(st.Companions, ",")
		}
		if g, gerr := s.cfg.Store.Update(ctx, st.GrantID, func(g *grant.Grant) error {
			g.RecordingPath = st.Location
			return nil
		}); gerr == nil {
			ev.Target = g.Target
		} else {
			s.cfg.Logger.Warn("flushed recording of an unknown grant", "grant", st.GrantID, "location", st.Location, "err", gerr)
		}
		s.audit(ctx, ev)
	}
	return len(stored), err
}

// auditCommands turns the verdicts a proxy recorded into audit events.
func (s *Service) auditCommands(ctx context.Context, g *grant.Grant, recPath string) {
	if strings.Contains(recPath, "://") {
		// A recording already in a remote sink (s3://...): its verdicts stay
		// in it; the broker audits where it is (recording.stored) and does not
		// fetch it back here.
		return
	}
	_, events, err := record.ReadFile(recPath)
	if err != nil {
		s.cfg.Logger.Error("read recording for audit", "grant", g.ID, "path", recPath, "err", err)
		s.audit(ctx, audit.Event{Type: audit.GrantFailed, GrantID: g.ID, Target: g.Target, Actor: "broker",
			Detail: fmt.Sprintf("recording %s unreadable: %v", recPath, err)})
		return
	}
	// Every blocked command gets its own event. Allowed ones are grouped by
	// statement text (with a count) and capped: a pgbench run sends hundreds of
	// thousands, one fsynced event each would cost more than the session, and
	// the signed recording holds every one of them anyway.
	type allowed struct {
		stmt string
		n    int
	}
	var order []*allowed
	seen := map[string]*allowed{}
	for _, ev := range events {
		if ev.Type != record.Verdict || ev.Allowed == nil {
			continue
		}
		if !*ev.Allowed {
			s.audit(ctx, audit.Event{Type: audit.CommandBlocked, GrantID: g.ID, Target: g.Target, Actor: g.Requester, Rule: g.Rule,
				Statement: ev.Statement, Detail: ev.Reason})
			continue
		}
		if a := seen[ev.Statement]; a != nil {
			a.n++
			continue
		}
		a := &allowed{stmt: ev.Statement, n: 1}
		seen[ev.Statement] = a
		order = append(order, a)
	}
	for i, a := range order {
		if i == maxAllowedAuditEvents {
			rest := 0
			for _, b := range order[i:] {
				rest += b.n
			}
			s.audit(ctx, audit.Event{Type: audit.CommandAllowed, GrantID: g.ID, Target: g.Target, Actor: g.Requester, Rule: g.Rule,
				Detail: fmt.Sprintf("%d more allowed statement(s) (%d distinct); every one is in recording %s", rest, len(order)-i, recPath)})
			break
		}
		detail := ""
		if a.n > 1 {
			detail = fmt.Sprintf("%d times", a.n)
		}
		s.audit(ctx, audit.Event{Type: audit.CommandAllowed, GrantID: g.ID, Target: g.Target, Actor: g.Requester, Rule: g.Rule,
			Statement: a.stmt, Detail: detail})
	}
}

// maxAllowedAuditEvents caps the distinct allowed statements audited one by
// one per grant; the rest are summarised in one event pointing at the recording.
const maxAllowedAuditEvents = 200

// roleFromLease recovers the username from a local lease id ("local:postgres:<role>").
func roleFromLease(lease string) string {
	const p = "local:postgres:"
	if len(lease) > len(p) && lease[:len(p)] == p {
		return lease[len(p):]
	}
	return ""
}
