package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials/vault"
	"github.com/jitgate/jitgate/broker/grant"
	launchlambda "github.com/jitgate/jitgate/broker/launch/lambda"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// GrantReader is what the runner needs of the grant store.
type GrantReader interface {
	Get(ctx context.Context, id string) (*grant.Grant, error)
}

// runner runs one grant's proxy: unwrap, check against the stored grant,
// session.Run, upload the recording.
type runner struct {
	store GrantReader
	vault *vaultapi.Client
	sink  record.Sink
	// signer seals every recording (kmssign in AWS); nil records unsigned.
	signer  record.Signer
	engines map[spec.Protocol]session.Factory
	log     *slog.Logger
	now     func() time.Time
	// uploadTimeout bounds the recording upload's retries.
	uploadTimeout time.Duration
}

// errSecurity marks refusals that an operator must look at.
var errSecurity = errors.New("security event")

// load exchanges the wrapping token for the grant's spec and checks that the
// spec is the one the store says is running now.
func (r *runner) load(ctx context.Context, id, token string, mode spec.Mode) (*spec.Grant, error) {
	if !grant.ValidID(id) {
		return nil, fmt.Errorf("runner: invalid grant id %q", id)
	}
	g, err := launchlambda.UnwrapGrant(ctx, r.vault, token, id)
	if errors.Is(err, vault.ErrWrapToken) {
		return nil, fmt.Errorf("runner: %w: the wrapping token of grant %s was already used or has expired; if it was not expired, someone else unwrapped it: %v", errSecurity, id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	stored, err := r.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("runner: load grant %s: %w", id, err)
	}
	if err := checkGrant(stored, g, mode, r.now()); err != nil {
		return nil, err
	}
	return g, nil
}

// checkGrant: the unwrapped spec must be exactly what the broker decided and
// activated — the right mode, identity, target, access level and (exec) the
// approved operation — and still within its deadline.
func checkGrant(stored *grant.Grant, g *spec.Grant, mode spec.Mode, now time.Time) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("runner: %w: grant %s: %s", errSecurity, stored.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case stored.ID != g.ID:
		return fail("spec names grant %q", g.ID)
	case stored.State != grant.Active:
		return fail("grant is %s, not active", stored.State)
	case g.Mode != mode || stored.Mode != mode:
		return fail("this runner serves %s grants; spec is %s, grant is %s", mode, g.Mode, stored.Mode)
	case stored.Requester != g.Identity:
		return fail("spec identity %q is not the requester", g.Identity)
	case stored.Target != g.Target.Name:
		return fail("spec target %q is not the grant's target %q", g.Target.Name, stored.Target)
	case g.Guard.Access != stored.Access:
		return fail("spec access %s is not the granted %s", g.Guard.Access, stored.Access)
	case mode == spec.Exec && grant.HashOperation(g.Operation) != stored.OperationHash:
		return fail("spec operation is not the approved operation")
	case g.Deadline.After(stored.ExpiresAt.Add(time.Second)):
		return fail("spec deadline %s is after the grant's expiry %s", g.Deadline.UTC().Format(time.RFC3339), stored.ExpiresAt.UTC().Format(time.RFC3339))
	case !now.Before(g.Deadline):
		return fmt.Errorf("runner: grant %s: deadline %s has passed", stored.ID, g.Deadline.UTC().Format(time.RFC3339))
	}
	return nil
}

// exec serves one exec-mode invocation. It always answers with statuses:
// a result or an error, then exit.
func (r *runner) exec(ctx context.Context, inv launchlambda.Invocation) launchlambda.Response {
	log := r.log.With("grant", inv.GrantID)
	fail := func(code string, err error) launchlambda.Response {
		log.Error("exec refused", "code", code, "err", err)
		return launchlambda.Response{Statuses: []spec.Status{
			{Type: spec.StatusError, GrantID: inv.GrantID, Time: r.now().UTC(), Code: code, Error: err.Error()},
			{Type: spec.StatusExit, GrantID: inv.GrantID, Time: r.now().UTC()},
		}}
	}
	g, err := r.load(ctx, inv.GrantID, inv.WrapToken, spec.Exec)
	if err != nil {
		return fail(spec.CodeBadSpec, err)
	}
	spool, err := os.MkdirTemp("", "jitgate-spool-")
	if err != nil {
		return fail(spec.CodeRecording, fmt.Errorf("runner: spool: %w", err))
	}
	defer os.RemoveAll(spool)
	g.Record.Dir = spool
	var out bytes.Buffer
	_ = session.Run(ctx, r.sessionConfig(g, &out, log))
	statuses, err := parseStatuses(&out)
	if err != nil || len(statuses) == 0 {
		return fail(spec.CodeInternal, fmt.Errorf("runner: proxy status: %v", err))
	}
	return launchlambda.Response{Statuses: r.storeRecording(ctx, g.ID, statuses, log)}
}

// storeRecording uploads the recording named by the exit status and rewrites the exit
// status to its S3 location. When the upload fails the result is withheld:
// an operation whose evidence is lost is reported as a recording failure.
func (r *runner) storeRecording(ctx context.Context, id string, statuses []spec.Status, log *slog.Logger) []spec.Status {
	last := &statuses[len(statuses)-1]
	if last.Type != spec.StatusExit || last.Recording == "" {
		return statuses
	}
	stored, err := record.Uploader{Sink: r.sink, Timeout: r.uploadTimeout, Logger: log}.Upload(context.WithoutCancel(ctx), last.Recording)
	if err == nil {
		last.Recording = stored.Location
		return statuses
	}
	log.Error("recording upload failed; withholding the result", "err", err)
	out := []spec.Status{{Type: spec.StatusError, GrantID: id, Time: r.now().UTC(), Code: spec.CodeRecording,
		Error: "runner: the recording could not be stored, so the result is withheld: " + err.Error()}}
	return append(out, spec.Status{Type: spec.StatusExit, GrantID: id, Time: r.now().UTC()})
}

// session serves one session grant in an ECS task: status lines go to w
// (the task's log), the recording to S3 at the end.
func (r *runner) session(ctx context.Context, id, token string, w io.Writer) error {
	log := r.log.With("grant", id)
	g, err := r.load(ctx, id, token, spec.Session)
	if err != nil {
		writeStatus(w, spec.Status{Type: spec.StatusError, GrantID: id, Time: r.now().UTC(), Code: spec.CodeBadSpec, Error: err.Error()})
		return err
	}
	spool, err := os.MkdirTemp("", "jitgate-spool-")
	if err != nil {
		return fmt.Errorf("runner: spool: %w", err)
	}
	defer os.RemoveAll(spool)
	g.Record.Dir = spool
	var out bytes.Buffer
	runErr := session.Run(ctx, r.sessionConfig(g, io.MultiWriter(w, &out), log))
	statuses, err := parseStatuses(&out)
	if err != nil || len(statuses) == 0 {
		return errors.Join(runErr, fmt.Errorf("runner: proxy status: %v", err))
	}
	final := r.storeRecording(ctx, g.ID, statuses, log)
	last := final[len(final)-1]
	writeStatus(w, last)
	if final[0].Code == spec.CodeRecording && len(final) == 2 {
		return errors.Join(runErr, errors.New(final[0].Error))
	}
	return runErr
}

// sessionConfig is the proxy configuration of one grant: the recording is
// signed by r.signer and uploaded by storeRecording afterwards.
func (r *runner) sessionConfig(g *spec.Grant, status io.Writer, log *slog.Logger) session.Config {
	return session.Config{Grant: g, Engines: r.engines, Status: status, Logger: log, Now: r.now, Signer: r.signer}
}

func parseStatuses(r io.Reader) ([]spec.Status, error) {
	var out []spec.Status
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var st spec.Status
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			return nil, fmt.Errorf("decode status line: %w", err)
		}
		out = append(out, st)
	}
	return out, sc.Err()
}

func writeStatus(w io.Writer, st spec.Status) {
	b, _ := json.Marshal(st)
	_, _ = w.Write(append(b, '\n'))
}
