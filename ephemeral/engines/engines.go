// Package engines is the closed set of protocol engines an ephemeral proxy
// serves, as one table of session factories: postgres, ssh, http and config. Both
// entry points that run a proxy (cmd/jitgate's hidden __proxy command and the
// functions/runner Lambda/ECS task) take their table from here, so a grant is
// guarded, masked and recorded the same way wherever it runs.
package engines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/ssh"

	configengine "github.com/jitgate/jitgate/ephemeral/engine/config"
	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
	kubeengine "github.com/jitgate/jitgate/ephemeral/engine/kube"
	"github.com/jitgate/jitgate/ephemeral/engine/postgres"
	sshengine "github.com/jitgate/jitgate/ephemeral/engine/ssh"
	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Table returns the engine factories by protocol.
func Table() map[spec.Protocol]session.Factory {
	return map[spec.Protocol]session.Factory{
		spec.Postgres: newPostgresEngine,
		spec.SSH:      newSSHEngine,
		spec.HTTP:     newHTTPEngine,
		spec.Config:   newConfigEngine,
		spec.Kube:     newKubeEngine,
	}
}

func newPostgresEngine(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
	gd, err := guard.New(guard.Config{
		Access: g.Guard.Access, DenyFunctions: g.Guard.DenyFunctions, AllowFunctions: g.Guard.AllowFunctions,
		DenyKinds: g.Guard.DenyKinds, AllowKinds: g.Guard.AllowKinds,
	})
	if err != nil {
		return nil, err
	}
	style, err := mask.ParseStyle(g.Mask.Style)
	if err != nil {
		return nil, err
	}
	mk, err := mask.New(mask.Config{Columns: g.Mask.Columns, Detectors: g.Mask.Detectors, Style: style, TokenKey: []byte(g.Mask.TokenKey)})
	if err != nil {
		return nil, err
	}
	eng, err := postgres.New(postgres.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec, Logger: log})
	if err != nil {
		return nil, err
	}
	return pgEngine{eng}, nil
}

// pgEngine adapts the PostgreSQL engine's tabular result to spec.Result.
type pgEngine struct{ e *postgres.Engine }

func (p pgEngine) Serve(ctx context.Context, c net.Conn) error {
	err := p.e.Serve(ctx, c)
	if errors.Is(err, postgres.ErrTargetLost) {
		return fmt.Errorf("%w: %w", session.ErrTargetLost, err)
	}
	return err
}

// Verdicts and MaskCounts feed the proxy's metrics (ephemeral/session).
func (p pgEngine) Verdicts() (allowed, blocked uint64) { return p.e.Verdicts() }

// MaskCounts: see Verdicts.
func (p pgEngine) MaskCounts() map[string]uint64 { return p.e.MaskCounts() }

func (p pgEngine) Exec(ctx context.Context, sql string) (*spec.Result, error) {
	res, err := p.e.Exec(ctx, sql)
	if errors.Is(err, postgres.ErrBlocked) {
		return nil, fmt.Errorf("%w: %v", session.ErrBlocked, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && statementError(pgErr.Code) {
		return nil, fmt.Errorf("%w: %v", session.ErrStatement, err)
	}
	if err != nil {
		return nil, err
	}
	return &spec.Result{Columns: res.Columns, Rows: res.Rows, Tag: res.CommandTag, Notices: res.Notices}, nil
}

func newSSHEngine(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
	sg, err := shell.New(shell.Config{Allow: g.Guard.Commands.Allow, Deny: g.Guard.Commands.Deny})
	if err != nil {
		return nil, err
	}
	var mk *mask.Masker
	if len(g.Mask.Detectors) > 0 {
		style, err := mask.ParseStyle(g.Mask.Style)
		if err != nil {
			return nil, err
		}
		if mk, err = mask.New(mask.Config{Detectors: g.Mask.Detectors, Style: style, TokenKey: []byte(g.Mask.TokenKey)}); err != nil {
			return nil, err
		}
	}
	eng, err := sshengine.New(sshengine.Config{Grant: g, Guard: sg, Masker: mk, Recorder: rec, Logger: log})
	if err != nil {
		return nil, err
	}
	return sshEngine{eng}, nil
}

// sshEngine adds the host key line the broker hands to clients' known_hosts.
type sshEngine struct{ *sshengine.Engine }

func (e sshEngine) HostKeyLine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.HostKey())))
}

// statementError reports whether an SQLSTATE is the statement's own failure
// (syntax, data, constraint, permission) rather than the target or the proxy
// failing (connection, authentication, resources, shutdown, internal).
func statementError(code string) bool {
	if len(code) < 2 {
		return false
	}
	switch code[:2] {
	case "08", "28", "3D", "53", "54", "57", "58", "XX":
		return false
	}
	return true
}

func newHTTPEngine(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
	gd, err := httprule.New(httprule.Config{Rules: httprule.FromSpec(g.Guard.HTTP), Access: g.Guard.Access})
	if err != nil {
		return nil, err
	}
	style, err := mask.ParseStyle(g.Mask.Style)
	if err != nil {
		return nil, err
	}
	mk, err := mask.New(mask.Config{Detectors: g.Mask.Detectors, Style: style, TokenKey: []byte(g.Mask.TokenKey)})
	if err != nil {
		return nil, err
	}
	return httpengine.New(httpengine.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec, Logger: log, MaskJSONFields: g.Mask.JSONFields})
}

// newKubeEngine builds the Kubernetes API proxy: exec commands are judged by
// the shell guard of Guard.Commands, with tar denied anywhere in a line
// unless the grant allows copying files (kubectl cp).
func newKubeEngine(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
	deny := append([]string(nil), g.Guard.Commands.Deny...)
	if !g.Guard.Kube.CopyFiles {
		deny = append(deny, "tar")
	}
	sg, err := shell.New(shell.Config{Allow: g.Guard.Commands.Allow, Deny: deny})
	if err != nil {
		return nil, err
	}
	style, err := mask.ParseStyle(g.Mask.Style)
	if err != nil {
		return nil, err
	}
	mk, err := mask.New(mask.Config{Detectors: g.Mask.Detectors, Style: style, TokenKey: []byte(g.Mask.TokenKey)})
	if err != nil {
		return nil, err
	}
	return kubeengine.New(kubeengine.Config{Grant: g, Guard: sg, Masker: mk, Recorder: rec, Logger: log})
}

// newConfigEngine reads configuration keys (exec only), masking values with
// the target's detectors and the engine's own secret heuristics.
func newConfigEngine(g *spec.Grant, rec *record.Recorder, log *slog.Logger) (session.Engine, error) {
	style, err := mask.ParseStyle(g.Mask.Style)
	if err != nil {
		return nil, err
	}
	mk, err := mask.New(mask.Config{Detectors: g.Mask.Detectors, Style: style, TokenKey: []byte(g.Mask.TokenKey)})
	if err != nil {
		return nil, err
	}
	return configengine.New(configengine.Config{Grant: g, Masker: mk, Recorder: rec, Logger: log})
}
