// Package replayui serves one session recording as a web page: the broker's
// read side of the evidence that proxies write (engine → guard → mask → record →
// upload → replay). The approval page links to it so an approver or auditor can
// see what a grant did: each statement, the guard's verdict, the masked result
// as a table, errors, and whether the recording verifies (chunk hashes, chain,
// Ed25519 signatures, end marker).
//
// The page is rendered on the server with html/template (every recorded value
// is escaped, and control characters are shown as escapes) and served under a
// strict Content-Security-Policy. A SQL or HTTP session's page carries no
// script and allows nothing but its own inline style (by hash). A terminal
// session (ssh shell, kubectl exec) also plays its asciicast companion files
// with asciinema-player (npm asciinema-player 3.18.0, Apache-2.0, its dist
// files committed and embedded under static/, so building needs no npm); that
// page allows scripts from its own origin only, plus 'wasm-unsafe-eval' for
// the player's terminal emulator (WebAssembly, no JavaScript eval), and fetches
// only from its own origin. A cast is served only when it matches the SHA-256
// its recording sealed (record.Companions); an unsealed or edited cast is
// named on the page and not played.
//
// Who may see which recording is the caller's decision (Config.Authorize):
// without it New refuses to build a handler. Paths, relative to the mount:
//
//	GET /<grant id>                     the page
//	GET /<grant id>/casts/<file>.cast   one terminal cast (after Authorize)
//	GET /static/<file>                  the player's script and style (public)
//
//	h, err := replayui.New(replayui.Config{Dirs: []string{recDir, spoolDir}, PublicKey: pub,
//		Authorize: func(r *http.Request, grantID string) error { ... }})
//	mux.Handle("GET /replay/", http.StripPrefix("/replay", h))
package replayui

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"embed"
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
	// Ed25519 and ECDSA P-256 keys are accepted (record.VerifyOptions).
	PublicKey crypto.PublicKey
	// MaxEvents caps the events rendered (default DefaultMaxEvents); the
	// verification still covers the whole recording.
	MaxEvents int
	// Location is the time zone times are shown in (default UTC).
	Location *time.Location
	Logger   *slog.Logger
}

// Handler renders recordings; see the package comment for its paths.
type Handler struct {
	cfg       Config
	csp       string
	playerCSP string
	page      *template.Template
	static    http.Handler
}

//go:embed page.css
var pageCSS string

//go:embed static
var staticFS embed.FS

var (
	grantIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	castRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.cast$`)
)

// New checks cfg.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Dirs) == 0 {
		return nil, errors.New("replayui: no recording directories")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("replayui: no Authorize function (every recording would be public)")
	}
	pub, err := record.NormalizePublicKey(cfg.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("replayui: %w", err)
	}
	cfg.PublicKey = pub
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
	styleHash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	tail := "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	csp := "default-src 'none'; style-src " + styleHash + "; img-src 'none'; script-src 'none'; " + tail
	playerCSP := "default-src 'none'; style-src 'self' " + styleHash + "; script-src 'self' 'wasm-unsafe-eval'; " +
		"connect-src 'self'; img-src 'self' data:; font-src 'self' data:; " + tail
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
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("replayui: static: %w", err)
	}
	return &Handler{cfg: cfg, csp: csp, playerCSP: playerCSP, page: t,
		static: http.StripPrefix("/static/", http.FileServerFS(sub))}, nil
}

// Has reports whether grantID has a recording in the configured directories
// (the approval page links to the replay only then). It does not authorize.
func (h *Handler) Has(grantID string) bool {
	if !grantIDRe.MatchString(grantID) || strings.Contains(grantID, "..") {
		return false
	}
	_, ok := h.find(grantID)
	return ok
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
	Casts    []castView

	dir    string
	sealed map[string]record.Companion
}

// castView is one terminal cast of the grant.
type castView struct {
	Name string
	// URL is relative to the page; empty when the cast is not played.
	URL     string
	Status  string // sealed, unsealed, mismatch, missing
	Summary string
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
	if strings.HasPrefix(r.URL.Path, "/static/") {
		hd.Set("Cache-Control", "public, max-age=3600")
		h.static.ServeHTTP(w, r)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	id, cast := parts[0], ""
	switch {
	case !grantIDRe.MatchString(id) || strings.Contains(id, ".."):
		http.Error(w, "bad grant id", http.StatusBadRequest)
		return
	case len(parts) == 1:
	case len(parts) == 3 && parts[1] == "casts" && castRe.MatchString(parts[2]) && record.IsCompanionName(id, parts[2]):
		cast = parts[2]
	default:
		http.Error(w, "bad path", http.StatusBadRequest)
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
	if cast != "" {
		h.serveCast(w, r, v, cast)
		return
	}
	var buf bytes.Buffer
	if err := h.page.Execute(&buf, v); err != nil {
		h.cfg.Logger.Error("replay: render", "grant", id, "err", err)
		http.Error(w, "render failed", http.StatusInternalServerError)
		return
	}
	if len(v.Casts) > 0 {
		hd.Set("Content-Security-Policy", h.playerCSP)
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// serveCast sends one cast, only if it is the one the recording sealed.
func (h *Handler) serveCast(w http.ResponseWriter, r *http.Request, v *view, name string) {
	for _, c := range v.Casts {
		if c.Name != name {
			continue
		}
		if c.URL == "" {
			http.Error(w, "this cast is not played: "+c.Summary, http.StatusConflict)
			return
		}
		b, err := os.ReadFile(filepath.Join(v.dir, name))
		if err != nil {
			http.Error(w, "the cast cannot be read", http.StatusInternalServerError)
			return
		}
		if err := v.sealed[name].Check(bytes.NewReader(b)); err != nil {
			h.cfg.Logger.Warn("replay: cast changed since the page was built", "cast", name, "err", err)
			http.Error(w, "the cast does not match its sealed digest", http.StatusConflict)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
		return
	}
	http.Error(w, "no such cast", http.StatusNotFound)
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
	v := &view{Location: h.cfg.Location.String(), dir: filepath.Dir(path)}
	var companions []record.Event
	keep := func(ev record.Event) error {
		if ev.Type == record.Notice && ev.Tag == record.CompanionTag {
			companions = append(companions, ev)
		}
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
	v.Casts, v.sealed = h.casts(v.dir, v.Header.GrantID, record.Companions(companions))
	return v, nil
}

// casts lists the grant's terminal casts: the ones its recording sealed
// (played when the file matches) and any other file next to it (not played).
func (h *Handler) casts(dir, id string, sealed []record.Companion) ([]castView, map[string]record.Companion) {
	byName := map[string]record.Companion{}
	var out []castView
	for _, c := range sealed {
		if !record.IsCompanionName(id, c.Name) || !castRe.MatchString(c.Name) {
			continue
		}
		byName[c.Name] = c
		cv := castView{Name: c.Name}
		f, err := os.Open(filepath.Join(dir, c.Name))
		switch {
		case err != nil:
			cv.Status, cv.Summary = "missing", "Sealed by the recording, but the file is not stored next to it."
		default:
			err = c.Check(f)
			f.Close()
			if err != nil {
				cv.Status, cv.Summary = "mismatch", "NOT played: the file does not match the digest the recording sealed (edited or replaced)."
			} else {
				cv.Status, cv.Summary = "sealed", fmt.Sprintf("Sealed by the recording (%d bytes, SHA-256 %.16s…).", c.Size, c.SHA256)
				cv.URL = id + "/casts/" + c.Name
			}
		}
		out = append(out, cv)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if _, ok := byName[n]; ok || !e.Type().IsRegular() || !record.IsCompanionName(id, n) {
			continue
		}
		out = append(out, castView{Name: n, Status: "unsealed",
			Summary: "NOT played: the recording does not seal this file (its proxy did not end the session, or the file was added later). `jitgate replay` shows it with a warning."})
	}
	return out, byName
}
