// Package httpapi is the broker's HTTP API: it authenticates the caller's bearer
// token, decodes requests strictly, calls broker.Service and maps its errors to
// status codes and stable JSON error codes. It is the only place that chooses HTTP
// status codes. The same handler serves `jitgate broker serve`, `jitgate dev` and
// the Lambda function.
//
//	POST /v1/grants                 request a grant (exec: sql; session: access)
//	GET  /v1/grants                 grants visible to the caller (?state=pending)
//	GET  /v1/grants/{id}            one grant (?wait=30s long-polls while pending)
//	POST /v1/grants/{id}/approve    approve (approvers only; never the requester)
//	POST /v1/grants/{id}/deny       deny with a reason
//	POST /v1/grants/{id}/run        run an approved exec grant; returns the masked result
//	POST /v1/grants/{id}/session    open the session proxy; returns connection details once
//	POST /v1/grants/{id}/end        end a running session early
//	GET  /v1/targets                targets the caller may ask for, and at what access
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/identity"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TokenVerifier checks a bearer token.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (identity.Identity, error)
}

// Config configures the handler.
type Config struct {
	Service  *broker.Service
	Verifier TokenVerifier
	Logger   *slog.Logger
	// MaxBody caps request bodies; default 1 MiB + 64 KiB.
	MaxBody int64
	// MaxWait caps ?wait= long polls; default 60s.
	MaxWait time.Duration
	// PollEvery is the long-poll store read interval; default 200ms.
	PollEvery time.Duration
}

type api struct{ cfg Config }

// New returns the API handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Service == nil || cfg.Verifier == nil {
		return nil, errors.New("httpapi: Service and Verifier are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1<<20 + 64<<10
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.PollEvery == 0 {
		cfg.PollEvery = 200 * time.Millisecond
	}
	a := &api{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("POST /v1/grants", a.auth(a.create))
	mux.HandleFunc("GET /v1/grants", a.auth(a.list))
	mux.HandleFunc("GET /v1/targets", a.auth(a.targets))
	mux.HandleFunc("GET /v1/grants/{id}", a.auth(a.get))
	mux.HandleFunc("POST /v1/grants/{id}/approve", a.auth(a.approve))
	mux.HandleFunc("POST /v1/grants/{id}/deny", a.auth(a.deny))
	mux.HandleFunc("POST /v1/grants/{id}/run", a.auth(a.run))
	mux.HandleFunc("POST /v1/grants/{id}/session", a.auth(a.session))
	mux.HandleFunc("POST /v1/grants/{id}/end", a.auth(a.end))
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux, nil
}

type handler func(w http.ResponseWriter, r *http.Request, who identity.Identity)

func (a *api) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxBody)
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(raw) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitgate"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "missing bearer token: send Authorization: Bearer <OIDC token>")
			return
		}
		who, err := a.cfg.Verifier.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitgate", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid_token", err.Error())
			return
		}
		h(w, r, who)
	}
}

// GrantRequest is the body of POST /v1/grants.
type GrantRequest struct {
	Target string `json:"target"`
	Mode   string `json:"mode"` // "exec" (default when sql is set) or "session"
	SQL    string `json:"sql,omitempty"`
	// Command is the exec-mode shell command of an SSH target.
	Command string `json:"command,omitempty"`
	// HTTP is the exec-mode request of an HTTP target: "GET /v1/flags"
	// (headers on following lines, a body after a blank line).
	HTTP string `json:"http,omitempty"`
	// Config is the exec-mode key (or key glob, "flags/*") of a config target.
	Config string `json:"config,omitempty"`
	Access string `json:"access,omitempty"` // session mode: read (default), write, admin
	TTL    string `json:"ttl,omitempty"`    // Go duration, e.g. "10m"
	Reason string `json:"reason,omitempty"`

	// Kube is the exec-mode operation of a kube target: one command (argv)
	// in one pod, {"namespace","pod","container","command":[...]}.
	Kube *broker.KubeOperation `json:"kube,omitempty"`
}

func (a *api) create(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	var req GrantRequest
	if !decode(w, r, &req) {
		return
	}
	if n := btoi(req.SQL != "") + btoi(req.Command != "") + btoi(req.HTTP != "") + btoi(req.Config != "") + btoi(req.Kube != nil); n > 1 {
		writeError(w, 400, "bad_request", "give one of sql, command, http, config or kube")
		return
	}
	if t, ok := a.cfg.Service.Policy().Target(req.Target); ok {
		switch {
		case req.SQL != "" && t.Protocol != spec.Postgres:
			writeError(w, 400, "bad_request", fmt.Sprintf("target %s is a %s target: sql is for postgres targets", t.Name, t.Kind))
			return
		case req.Command != "" && t.Protocol != spec.SSH:
			writeError(w, 400, "bad_request", fmt.Sprintf("target %s is a %s target: command is for ssh targets", t.Name, t.Kind))
			return
		case req.HTTP != "" && t.Protocol != spec.HTTP:
			writeError(w, 400, "bad_request", fmt.Sprintf("target %s is a %s target: http is for http targets", t.Name, t.Kind))
			return
		case req.Config != "" && t.Protocol != spec.Config:
			writeError(w, 400, "bad_request", fmt.Sprintf("target %s is a %s target: config is for config targets", t.Name, t.Kind))
			return
		case req.Kube != nil && t.Protocol != spec.Kube:
			writeError(w, 400, "bad_request", fmt.Sprintf("target %s is a %s target: kube is for kube targets", t.Name, t.Kind))
			return
		}
	}
	in := broker.RequestInput{Target: req.Target, Operation: req.SQL + req.Command + req.HTTP + req.Config, Reason: req.Reason}
	if req.Kube != nil {
		in.Operation = req.Kube.String()
	}
	mode := req.Mode
	if mode == "" {
		mode = "exec"
		if in.Operation == "" {
			mode = "session"
		}
	}
	var err error
	if in.Mode, err = spec.ParseMode(mode); err != nil {
		writeError(w, 400, "bad_request", "mode must be exec or session")
		return
	}
	if req.Access != "" {
		if in.Access, err = spec.ParseAccess(req.Access); err != nil {
			writeError(w, 400, "bad_request", err.Error())
			return
		}
	}
	if req.TTL != "" {
		if in.TTL, err = time.ParseDuration(req.TTL); err != nil || in.TTL <= 0 {
			writeError(w, 400, "bad_request", fmt.Sprintf("ttl %q is not a positive duration such as 10m", req.TTL))
			return
		}
	}
	g, err := a.cfg.Service.Request(r.Context(), who, in)
	if err != nil {
		if g != nil && errors.Is(err, broker.ErrDenied) {
			writeJSON(w, http.StatusForbidden, map[string]any{"error": apiError{Code: "denied", Message: err.Error()}, "grant": View(g)})
			return
		}
		a.fail(w, err)
		return
	}
	status := http.StatusCreated
	if g.State == grant.Pending {
		status = http.StatusAccepted
	}
	writeJSON(w, status, View(g))
}

func (a *api) list(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	var f grant.Filter
	if s := r.URL.Query().Get("state"); s != "" {
		var st grant.State
		if err := st.UnmarshalText([]byte(s)); err != nil {
			writeError(w, 400, "bad_request", fmt.Sprintf("unknown state %q", s))
			return
		}
		f.State = &st
	}
	f.Target = r.URL.Query().Get("target")
	gs, err := a.cfg.Service.List(r.Context(), who, f)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]GrantView, 0, len(gs))
	for _, g := range gs {
		out = append(out, View(g))
	}
	writeJSON(w, 200, map[string]any{"grants": out})
}

func (a *api) get(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	id := r.PathValue("id")
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeError(w, 400, "bad_request", fmt.Sprintf("wait %q is not a duration such as 30s", s))
			return
		}
		wait = min(d, a.cfg.MaxWait)
	}
	deadline := time.Now().Add(wait)
	for {
		g, err := a.cfg.Service.Get(r.Context(), who, id)
		if err != nil {
			a.fail(w, err)
			return
		}
		if g.State != grant.Pending || !time.Now().Before(deadline) {
			writeJSON(w, 200, View(g))
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(a.cfg.PollEvery):
		}
	}
}

type decisionBody struct {
	Reason string `json:"reason"`
}

func (a *api) approve(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	var b decisionBody
	if !decodeOptional(w, r, &b) {
		return
	}
	g, err := a.cfg.Service.Approve(r.Context(), who, r.PathValue("id"), b.Reason)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, View(g))
}

func (a *api) deny(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	var b decisionBody
	if !decodeOptional(w, r, &b) {
		return
	}
	if strings.TrimSpace(b.Reason) == "" {
		writeError(w, 400, "bad_request", "a denial needs a reason")
		return
	}
	g, err := a.cfg.Service.Deny(r.Context(), who, r.PathValue("id"), b.Reason)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, View(g))
}

// RunResponse is the body of a successful POST .../run.
type RunResponse struct {
	Grant     GrantView    `json:"grant"`
	Result    *spec.Result `json:"result,omitempty"`
	Recording string       `json:"recording,omitempty"`
}

func (a *api) run(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	res, err := a.cfg.Service.Run(r.Context(), who, r.PathValue("id"))
	if err != nil {
		if res != nil && res.Grant != nil {
			code, status := classify(err)
			writeJSON(w, status, map[string]any{"error": apiError{Code: code, Message: err.Error()}, "grant": View(res.Grant), "recording": res.Recording})
			return
		}
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, RunResponse{Grant: View(res.Grant), Result: res.Result, Recording: res.Recording})
}

// SessionResponse is the body of a successful POST .../session. The password is
// the one-time grant secret; it is shown once and stored only as a hash.
type SessionResponse struct {
	Grant    GrantView `json:"grant"`
	Host     string    `json:"host"`
	Port     string    `json:"port"`
	User     string    `json:"user"`
	Password string    `json:"password"`
	Database string    `json:"database,omitempty"`
	SSLMode  string    `json:"sslmode,omitempty"`
	// HostKey is the session proxy's SSH host key (authorized_keys format),
	// for the client's known_hosts.
	HostKey string `json:"host_key,omitempty"`
	// Protocol is the target's kind (postgres, ssh, http, kube).
	Protocol string `json:"protocol,omitempty"`
	// Namespace is a kube target's namespace, for the client's kubeconfig.
	Namespace string `json:"namespace,omitempty"`
	// Certificate is a kube session proxy's TLS certificate (PEM), for the
	// kubeconfig's certificate-authority-data.
	Certificate string    `json:"certificate,omitempty"`
	Expires     time.Time `json:"expires_at"`
}

func (a *api) session(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	info, err := a.cfg.Service.OpenSession(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	resp := SessionResponse{Grant: View(info.Grant), Host: info.Host, Port: info.Port, User: info.User,
		Password: info.Password.Reveal(), Database: info.Database, HostKey: info.HostKey, Certificate: info.Certificate, Expires: info.Expires}
	if info.Grant.Protocol == spec.Postgres {
		resp.SSLMode = "disable"
	}
	resp.Protocol = info.Grant.Protocol.String()
	if t, ok := a.cfg.Service.Policy().Target(info.Grant.Target); ok && t.Protocol == spec.Kube {
		resp.Namespace = t.Kube.Scope.Namespace
	}
	writeJSON(w, 200, resp)
}

func (a *api) end(w http.ResponseWriter, r *http.Request, who identity.Identity) {
	g, err := a.cfg.Service.EndSession(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, View(g))
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func classify(err error) (string, int) {
	switch {
	case errors.Is(err, broker.ErrBadRequest):
		return "bad_request", http.StatusBadRequest
	case errors.Is(err, broker.ErrNotFound):
		return "not_found", http.StatusNotFound
	case errors.Is(err, broker.ErrForbidden):
		return "forbidden", http.StatusForbidden
	case errors.Is(err, broker.ErrDenied):
		return "denied", http.StatusForbidden
	case errors.Is(err, broker.ErrNotApproved):
		return "not_approved", http.StatusConflict
	case errors.Is(err, broker.ErrGrantExpired):
		return "expired", http.StatusGone
	case errors.Is(err, broker.ErrConflict):
		return "conflict", http.StatusConflict
	case errors.Is(err, broker.ErrStatementFailed):
		return "statement_failed", http.StatusUnprocessableEntity
	case errors.Is(err, broker.ErrUnavailable):
		return "unavailable", http.StatusServiceUnavailable
	}
	return "internal", http.StatusInternalServerError
}

func (a *api) fail(w http.ResponseWriter, err error) {
	code, status := classify(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		a.cfg.Logger.Error("internal error", "err", err)
		msg = "internal error; see the broker log"
	}
	writeError(w, status, code, msg)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
			return false
		}
		if errors.Is(err, io.EOF) {
			writeError(w, 400, "bad_request", "empty request body: send a JSON object")
			return false
		}
		writeError(w, 400, "bad_request", "malformed JSON: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, 400, "bad_request", "malformed JSON: trailing data after the object")
		return false
	}
	return true
}

func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	return decode(w, r, v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
