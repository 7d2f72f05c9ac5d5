// Package replayui serves one session recording as a web page: the broker's
// read side of the evidence that proxies write (engine → guard → mask → record →
// upload → replay). The approval page links to it so an approver or auditor can
// see what a grant did: each statement, the guard's verdict, the masked result
// as a table, errors, and whether the recording verifies (chunk hashes, chain,
// Ed25519 signatures, end marker).
//
// The page is rendered on the server with html/template (every recorded value
// is escaped, and control characters are shown as escapes), carries no script,
// and is served under a Content-Security-Policy that allows nothing but its own
// inline style (by hash). Who may see which recording is the caller's decision
// (Config.Authorize): without it New refuses to build a handler.
//
//	h, err := replayui.New(replayui.Config{Dirs: []string{recDir, spoolDir}, PublicKey: pub,
//		Authorize: func(r *http.Request, grantID string) error { ... }})
//	mux.Handle("GET /replay/", http.StripPrefix("/replay", h)) // GET /replay/<grant id>
package replayui

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
)

// ErrForbidden may be returned (wrapped) by Authorize; any error refuses.
var ErrForbidden = errors.New("replayui: not allowed to see this recording")

// DefaultMaxEvents is how many events a page shows by default.
const DefaultMaxEvents = 20000

// Config configures the handler.
type Config struct {
	// Dirs are searched in order for <grant id>.jgr (then a v1 <grant id>.jsonl):
	// the recordings directory, then the spool. Required.
	Dirs []string
	// Authorize decides whether the request may see the recording of grantID.
	// It runs before any file is looked at. Required: a nil Authorize would
	// make every recording public, so New refuses it.
	Authorize func(r *http.Request, grantID string) error
	// PublicKey verifies the recordings' signatures. Without it the page says
	// the signature was not checked (hashes and chain still are).
	PublicKey ed25519.PublicKey
	// MaxEvents caps the events rendered (default DefaultMaxEvents); the
	// verification still covers the whole recording.
	MaxEvents int
	// Location is the time zone times are shown in (default UTC).
	Location *time.Location
	Logger   *slog.Logger
}

// Handler renders recordings; GET /<grant id>.
type Handler struct {
	cfg  Config
	csp  string
	page *template.Template
}

//go:embed page.css
var pageCSS string

var grantIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// New checks cfg.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Dirs) == 0 {
		return nil, errors.New("replayui: no recording directories")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("replayui: no Authorize function (every recording would be public)")
	}
	if cfg.PublicKey != nil && len(cfg.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("replayui: public key is not an Ed25519 key")
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sum := sha256.Sum256([]byte(pageCSS))
	csp := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"img-src 'none'; script-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	t, err := template.New("page").Funcs(template.FuncMap{
		"clean": record.Clean,
		"time":  func(t time.Time) string { return t.In(cfg.Location).Format("15:04:05.000") },
		"date":  func(t time.Time) string { return t.In(cfg.Location).Format("2006-01-02 15:04:05 MST") },
		"css":   func() template.CSS { return template.CSS(pageCSS) },
		"deref": func(p any) any {
			switch v := p.(type) {
			case *string:
				return *v
			case *bool:
				return *v
			}
			return p
		},
		"cell": func(row []*string, i int) *string {
			if i < len(row) {
				return row[i]
			}
			return nil
		},
	}).Parse(pageHTML)
	if err != nil {
		return nil, fmt.Errorf("replayui: template: %w", err)
	}
	return &Handler{cfg: cfg, csp: csp, page: t}, nil
}

// view is what the template renders.
type view struct {
	Header   record.Header
	Events   []record.Event
	Omitted  int
	Status   string // ok, incomplete, broken, unverified
	Summary  string
	Rep      record.Report
	Location string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/")
	if !grantIDRe.MatchString(id) || strings.Contains(id, "..") {
		http.Error(w, "bad grant id", http.StatusBadRequest)
		return
	}
	if err := h.cfg.Authorize(r, id); err != nil {
		h.cfg.Logger.Info("replay refused", "grant", id, "err", err)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	path, ok := h.find(id)
	if !ok {
		http.Error(w, "no recording for this grant", http.StatusNotFound)
		return
	}
	v, err := h.load(path)
	if err != nil {
		h.cfg.Logger.Error("replay: read recording", "grant", id, "path", path, "err", err)
		http.Error(w, "the recording cannot be read", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := h.page.Execute(&buf, v); err != nil {
		h.cfg.Logger.Error("replay: render", "grant", id, "err", err)
		http.Error(w, "render failed", http.StatusInternalServerError)
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) find(id string) (string, bool) {
	for _, d := range h.cfg.Dirs {
		for _, ext := range []string{record.Ext, ".jsonl"} {
			p := filepath.Join(d, id+ext)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, true
			}
		}
	}
	return "", false
}

func (h *Handler) load(path string) (*view, error) {
	v := &view{Location: h.cfg.Location.String()}
	keep := func(ev record.Event) error {
		if len(v.Events) < h.cfg.MaxEvents {
			v.Events = append(v.Events, ev)
		} else {
			v.Omitted++
		}
		return nil
	}
	rep, err := record.VerifyFile(path, record.VerifyOptions{PublicKey: h.cfg.PublicKey, OnEvent: keep})
	v.Rep, v.Header = rep, rep.Header
	var ve *record.VerifyError
	switch {
	case err == nil && h.cfg.PublicKey == nil:
		v.Status, v.Summary = "unverified", fmt.Sprintf("Hashes and chain intact (%d chunks, complete); the signature was not checked: no public key is configured.", rep.Chunks)
	case err == nil:
		v.Status, v.Summary = "ok", fmt.Sprintf("Verified: %d chunks, %d events, complete, signed by %s.", rep.Chunks, rep.Events, rep.KeyID)
		if rep.Truncated {
			v.Summary += fmt.Sprintf(" The recording reached its size cap (%d bytes) and says so.", rep.Header.MaxBytes)
		}
	case errors.As(err, &ve) && ve.Chunk == -1 && strings.Contains(ve.Reason, "v1"):
		h1, evs, rerr := record.ReadFile(path)
		if rerr != nil {
			return nil, rerr
		}
		v.Header, v.Events = h1, nil
		for _, ev := range evs {
			_ = keep(ev)
		}
		v.Status, v.Summary = "unverified", "A v1 recording: it carries no hashes or signature."
	case errors.Is(err, record.ErrIncomplete):
		v.Status, v.Summary = "incomplete", fmt.Sprintf("Incomplete: chunks 0–%d verify, then the recording stops (%s). The proxy was killed, or the file was cut.", rep.Chunks-1, ve.Reason)
	case errors.As(err, &ve):
		where := fmt.Sprintf("chunk %d", ve.Chunk)
		if ve.Chunk < 0 {
			where = "the header"
		}
		v.Status, v.Summary = "broken", fmt.Sprintf("BROKEN at %s: %s. Only what precedes it is shown.", where, ve.Reason)
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	default:
		return nil, err
	}
	return v, nil
}
