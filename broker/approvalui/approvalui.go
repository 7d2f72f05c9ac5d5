// Package approvalui is the small web page on which a human approver sees the
// grants waiting for them and approves or denies them. It sits at the approval
// step of the flow:
//
//	token → identity → policy → [approval: httpapi, CLI, this page] → grant → ...
//
// The approver signs in with OpenID Connect (authorization code + PKCE S256,
// golang.org/x/oauth2 and go-oidc discovery) against the same issuer and with
// the same Verifier the broker's API uses; the ID token's nonce binds it to
// the sign-in that asked for it. The session is an AES-GCM sealed cookie that
// holds the raw ID token, so it ends when the token expires and every request
// re-verifies it. Every form carries a per-session CSRF token, and POSTs from
// another origin are refused. Pages are server-rendered html/template (escaped,
// no JavaScript) under a Content-Security-Policy of default-src 'self'.
//
// The page decides nothing itself: broker.Service lists, shows, approves and
// denies, and refuses a requester who tries to approve its own grant whatever
// the page shows.
//
//	GET  /                       pending grants: the ones you may decide, and your own
//	GET  /grants/{id}            one grant, with Approve and Deny forms
//	POST /grants/{id}/approve    approve (optional reason)
//	POST /grants/{id}/deny       deny (reason required)
//	GET  /login, GET /callback   the OIDC sign-in
//	POST /logout                 forget the session
//	GET  /recordings/{id}        the grant's recording (Config.Recordings), same viewers as /grants/{id}
//
// All paths are below the path of Config.BaseURL; mount the handler there
// without stripping the prefix:
//
//	ui, err := approvalui.New(approvalui.Config{Service: svc, Verifier: v,
//		IssuerURL: issuer, ClientID: "jitgate", BaseURL: "https://broker.example/ui", CookieKey: key})
//	mux.Handle("/ui/", ui)
package approvalui

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/identity"
)

// TokenVerifier checks an ID token; *identity.Verifier is one. Use the same
// verifier as the broker's HTTP API so an approver is the same identity here
// and there.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (identity.Identity, error)
}

// MinCookieKeyLen is the shortest CookieKey New accepts.
const MinCookieKeyLen = 32

// Config configures the approval page.
type Config struct {
	// Service decides everything the page shows and does. Required.
	Service *broker.Service
	// Verifier verifies the ID token from the sign-in and, on every request,
	// the one in the session cookie. Required.
	Verifier TokenVerifier
	// IssuerURL is the OIDC issuer approvers sign in with; its discovery
	// document gives the authorization and token endpoints. The Verifier must
	// trust it, with ClientID as the audience. Required.
	IssuerURL string
	// ClientID is this page's OAuth client id at the issuer (a public client:
	// PKCE, no secret); ID tokens must list it in "aud". Required.
	ClientID string
	// BaseURL is the external URL the page is mounted at, e.g.
	// "https://broker.example/ui". The redirect URI registered at the issuer is
	// BaseURL + "/callback". An https BaseURL makes every cookie Secure; an http
	// one is for loopback development and MUST NOT be used across a network.
	BaseURL string
	// CookieKey seals the session cookies (AES-GCM) and keys the CSRF tokens.
	// At least MinCookieKeyLen random bytes. MUST be secret; brokers that share
	// a store behind one URL MUST share it. Changing it signs everyone out.
	CookieKey []byte
	// HTTPClient reaches the issuer (discovery and code exchange). Default: a
	// client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives sign-ins and failures (never tokens). Default: discard.
	Logger *slog.Logger
	// Now is the clock for the sign-in's lifetime and for "in 5m" on pages.
	// Default time.Now.
	Now func() time.Time
	// Recordings, when set, serves grants' recordings at BaseURL/recordings/
	// to signed-in viewers who may see the grant, and the grant page links
	// to it ("Replay recording") once a recording exists. See Recordings.
	Recordings Recordings
}

func (c *Config) validate() (*url.URL, error) {
	switch {
	case c.Service == nil:
		return nil, errors.New("approvalui: Service is required")
	case c.Verifier == nil:
		return nil, errors.New("approvalui: Verifier is required")
	case c.IssuerURL == "":
		return nil, errors.New("approvalui: IssuerURL is required")
	case strings.TrimSpace(c.ClientID) == "":
		return nil, errors.New("approvalui: ClientID is required")
	case len(c.CookieKey) < MinCookieKeyLen:
		return nil, fmt.Errorf("approvalui: CookieKey has %d bytes, want at least %d", len(c.CookieKey), MinCookieKeyLen)
	}
	if u, err := url.Parse(c.IssuerURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("approvalui: IssuerURL %q is not an absolute http(s) URL", c.IssuerURL)
	}
	base, err := url.Parse(c.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("approvalui: BaseURL %q is not an absolute http(s) URL", c.BaseURL)
	}
	if base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, fmt.Errorf("approvalui: BaseURL %q must have no query, fragment or user info", c.BaseURL)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return base, nil
}

//go:embed templates/*.html static/*
var assets embed.FS

type ui struct {
	cfg Config
	// base is BaseURL without a trailing slash; path its path ("" or "/ui").
	base   string
	path   string
	origin string
	secure bool
	seal   *sealer
	pages  *pages
	static http.Handler

	mu    sync.Mutex
	oauth *oauth2.Config // set by the first successful discovery
}

// New validates cfg and returns the page's handler. It does no network I/O:
// the issuer is discovered on the first sign-in (and again after a failure).
func New(cfg Config) (http.Handler, error) {
	base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s, err := newSealer(cfg.CookieKey)
	if err != nil {
		return nil, err
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	path := strings.TrimSuffix(base.Path, "/")
	u := &ui{
		cfg: cfg, base: base.Scheme + "://" + base.Host + path, path: path,
		origin: base.Scheme + "://" + base.Host, secure: base.Scheme == "https",
		seal: s, pages: p,
		static: http.StripPrefix(path+"/static/", http.FileServerFS(static)),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path+"/{$}", u.signedIn(u.index))
	mux.HandleFunc("GET "+path+"/grants/{id}", u.signedIn(u.detail))
	mux.HandleFunc("POST "+path+"/grants/{id}/approve", u.post(u.approve))
	mux.HandleFunc("POST "+path+"/grants/{id}/deny", u.post(u.deny))
	mux.HandleFunc("GET "+path+"/login", u.login)
	mux.HandleFunc("GET "+path+"/callback", u.callback)
	mux.HandleFunc("POST "+path+"/logout", u.post(u.logout))
	u.mountRecordings(mux)
	mux.HandleFunc("GET "+path+"/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		u.static.ServeHTTP(w, r)
	})
	mux.HandleFunc(path+"/", func(w http.ResponseWriter, r *http.Request) {
		u.errorPage(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	return securityHeaders(mux), nil
}

// securityHeaders: no framing, no foreign content, no scripts, no caching of
// pages that show grants, and no Referer leaving the origin.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer browsers send
		// "Origin: null" on form POSTs, which the origin check must refuse.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// handler is a page handler for a signed-in approver.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn sends visitors without a valid session to the sign-in.
func (u *ui) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := u.session(w, r)
		if s == nil {
			http.Redirect(w, r, u.base+"/login?next="+url.QueryEscape(r.URL.Path), http.StatusFound)
			return
		}
		h(w, r, s)
	}
}

// post guards every state-changing request: same origin, a session, and the
// session's CSRF token in the form.
func (u *ui) post(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := u.sameOrigin(r); err != nil {
			u.cfg.Logger.Warn("approvalui: cross-origin POST refused", "path", r.URL.Path, "err", err)
			u.errorPage(w, r, nil, http.StatusForbidden, "Refused: "+err.Error()+".")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			u.errorPage(w, r, nil, http.StatusBadRequest, "The form could not be read.")
			return
		}
		s := u.session(w, r)
		if s == nil {
			u.errorPage(w, r, nil, http.StatusUnauthorized, "Your session has ended. Sign in again; nothing was changed.")
			return
		}
		got := r.PostForm.Get("csrf")
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
			u.cfg.Logger.Warn("approvalui: POST without a valid CSRF token refused", "path", r.URL.Path, "who", s.who.String())
			u.errorPage(w, r, s, http.StatusForbidden, "Refused: the form's CSRF token is missing or wrong. Reload the page and try again; nothing was changed.")
			return
		}
		h(w, r, s)
	}
}

// sameOrigin refuses requests a browser marks as coming from another origin.
// Clients that send neither header (curl) still need the CSRF token.
func (u *ui) sameOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		if o != u.origin {
			return fmt.Errorf("request from origin %q, not %q", o, u.origin)
		}
		return nil
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return fmt.Errorf("cross-site request (Sec-Fetch-Site: %s)", s)
	}
	return nil
}
