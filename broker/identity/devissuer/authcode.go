package devissuer

// The authorization-code flow with PKCE, DEV ONLY: it lets a browser sign in to
// the approval page (broker/approvalui) against `jitgate dev` the way it would
// against Okta. Anyone on the loopback interface may sign in as anyone: the
// sign-in form asks for a subject and groups and believes them.
//
//	GET  /authorize  response_type=code, client_id, redirect_uri (loopback only),
//	                 state, nonce, code_challenge, code_challenge_method=S256
//	                 → an HTML form ("DEV ONLY sign-in": subject, groups)
//	POST /authorize  the form → 302 redirect_uri?code=...&state=...
//	POST /token      grant_type=authorization_code, code, redirect_uri, client_id,
//	                 code_verifier → {"id_token", "access_token", "token_type"}
//
// Codes are single use (the first exchange attempt burns the code, right or
// wrong), live CodeTTL, and bind the client_id, redirect_uri, PKCE challenge and
// nonce of their request. Only S256 challenges are accepted: "plain" would let
// anyone who sees the authorization request redeem the code.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Limits of the authorization-code flow.
const (
	// CodeTTL is how long an authorization code may wait for its exchange.
	CodeTTL = 60 * time.Second
	// AuthorizeTTL is how long a sign-in form stays valid.
	AuthorizeTTL = 10 * time.Minute
	// maxPending caps outstanding sign-in forms and codes, each.
	maxPending = 1024
)

// authRequest is a validated GET /authorize waiting for its form.
type authRequest struct {
	clientID, redirectURI, state, nonce, challenge string
	expires                                        time.Time
}

// authCode is an issued, not yet exchanged, authorization code.
type authCode struct {
	clientID, redirectURI, nonce, challenge string
	sub                                     string
	groups                                  []string
	expires                                 time.Time
}

// oauthError is an RFC 6749 §5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// checkRedirectURI accepts only absolute http(s) URLs on a loopback host: the
// dev issuer hands codes to the local machine only.
func checkRedirectURI(s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("redirect_uri is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("redirect_uri: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("redirect_uri %q: want an http or https URL", s)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("redirect_uri %q: no user info, fragment or opaque part allowed", s)
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("redirect_uri %q: the dev issuer redirects to loopback addresses only", s)
	}
	return u, nil
}

// validPKCE reports whether s is a PKCE verifier or S256 challenge: 43 to 128
// characters of [A-Za-z0-9-._~] (RFC 7636 §4.1).
func validPKCE(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// parseAuthorize validates the query of GET /authorize.
func parseAuthorize(q url.Values) (authRequest, error) {
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "state", "nonce", "code_challenge", "code_challenge_method"} {
		if len(q[k]) > 1 {
			return authRequest{}, fmt.Errorf("parameter %s is repeated", k)
		}
	}
	if rt := q.Get("response_type"); rt != "code" {
		return authRequest{}, fmt.Errorf("response_type %q: only \"code\" is supported", rt)
	}
	ar := authRequest{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), state: q.Get("state"),
		nonce: q.Get("nonce"), challenge: q.Get("code_challenge")}
	if ar.clientID == "" || len(ar.clientID) > 256 {
		return authRequest{}, fmt.Errorf("client_id is required (at most 256 bytes)")
	}
	if _, err := checkRedirectURI(ar.redirectURI); err != nil {
		return authRequest{}, err
	}
	if len(ar.state) > 512 || len(ar.nonce) > 512 {
		return authRequest{}, fmt.Errorf("state and nonce are limited to 512 bytes")
	}
	switch m := q.Get("code_challenge_method"); m {
	case "S256":
	case "":
		return authRequest{}, fmt.Errorf("code_challenge_method is required: PKCE with S256")
	default:
		return authRequest{}, fmt.Errorf("code_challenge_method %q is refused: only S256", m)
	}
	if !validPKCE(ar.challenge) {
		return authRequest{}, fmt.Errorf("code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]")
	}
	return ar, nil
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DEV ONLY sign-in</title></head>
<body>
<h1>DEV ONLY sign-in</h1>
<p><strong>This is jitgate's development issuer. It signs in anyone as anyone. Never use it in production.</strong></p>
<p>Application <code>{{.ClientID}}</code> asks who you are; you will be sent back to <code>{{.RedirectURI}}</code>.</p>
<form method="post" action="authorize">
<input type="hidden" name="request" value="{{.Request}}">
<p><label for="sub">Subject</label> <input id="sub" name="sub" required maxlength="256" autofocus></p>
<p><label for="groups">Groups (comma-separated)</label> <input id="groups" name="groups" maxlength="1024"></p>
<p><button id="signin" type="submit">Sign in</button></p>
</form>
</body></html>
`))

func (i *Issuer) serveAuthorizeForm(w http.ResponseWriter, r *http.Request) {
	if !fromLoopback(r) {
		i.log.Warn("devissuer: DEV ONLY authorize request from a non-loopback client refused", "remote", r.RemoteAddr)
		http.Error(w, "devissuer: /authorize serves loopback clients only", http.StatusForbidden)
		return
	}
	ar, err := parseAuthorize(r.URL.Query())
	if err != nil {
		// RFC 6749 §4.1.2.1: with a bad redirect_uri the error is shown, never
		// redirected. Shown here in every case: this is a dev tool.
		http.Error(w, "devissuer: authorize: "+err.Error(), http.StatusBadRequest)
		return
	}
	now := i.now()
	ar.expires = now.Add(AuthorizeTTL)
	id := randomToken()
	i.authMu.Lock()
	pruneExpired(i.requests, now, func(a *authRequest) time.Time { return a.expires })
	full := len(i.requests) >= maxPending
	if !full {
		i.requests[id] = &ar
	}
	i.authMu.Unlock()
	if full {
		http.Error(w, "devissuer: too many sign-ins in progress", http.StatusServiceUnavailable)
		return
	}
	ru, _ := url.Parse(ar.redirectURI)
	setPageHeaders(w, ru.Scheme+"://"+ru.Host)
	w.WriteHeader(http.StatusOK)
	_ = signInPage.Execute(w, map[string]string{"ClientID": ar.clientID, "RedirectURI": ar.redirectURI, "Request": id})
}

// setPageHeaders: no scripts, no framing, and the form may post here and
// redirect to the client only.
func setPageHeaders(w http.ResponseWriter, clientOrigin string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self' "+clientOrigin+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (i *Issuer) serveAuthorizeSubmit(w http.ResponseWriter, r *http.Request) {
	if !fromLoopback(r) {
		i.log.Warn("devissuer: DEV ONLY authorize request from a non-loopback client refused", "remote", r.RemoteAddr)
		http.Error(w, "devissuer: /authorize serves loopback clients only", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "devissuer: bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("request")
	now := i.now()
	i.authMu.Lock()
	ar := i.requests[id]
	delete(i.requests, id)
	i.authMu.Unlock()
	if ar == nil || now.After(ar.expires) {
		http.Error(w, "devissuer: unknown or expired sign-in request; start the sign-in again", http.StatusBadRequest)
		return
	}
	sub := strings.TrimSpace(r.PostForm.Get("sub"))
	if sub == "" || len(sub) > 256 {
		http.Error(w, "devissuer: subject is required (at most 256 bytes)", http.StatusBadRequest)
		return
	}
	var groups []string
	for _, g := range strings.Split(r.PostForm.Get("groups"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	code := randomToken()
	i.authMu.Lock()
	pruneExpired(i.codes, now, func(c *authCode) time.Time { return c.expires })
	full := len(i.codes) >= maxPending
	if !full {
		i.codes[code] = &authCode{clientID: ar.clientID, redirectURI: ar.redirectURI, nonce: ar.nonce, challenge: ar.challenge,
			sub: sub, groups: groups, expires: now.Add(CodeTTL)}
	}
	i.authMu.Unlock()
	if full {
		http.Error(w, "devissuer: too many unredeemed codes", http.StatusServiceUnavailable)
		return
	}
	u, _ := url.Parse(ar.redirectURI) // validated on GET
	q := u.Query()
	q.Set("code", code)
	if ar.state != "" {
		q.Set("state", ar.state)
	}
	u.RawQuery = q.Encode()
	i.log.Info("devissuer: DEV ONLY sign-in", "sub", sub, "groups", groups, "client_id", ar.clientID)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// serveCodeExchange is POST /token with grant_type=authorization_code; the
// form is already parsed.
func (i *Issuer) serveCodeExchange(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	for _, k := range []string{"code", "redirect_uri", "client_id", "code_verifier"} {
		if len(f[k]) > 1 {
			writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "parameter " + k + " is repeated"})
			return
		}
	}
	clientID := f.Get("client_id")
	if user, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(user); err == nil {
			if clientID != "" && clientID != u {
				writeJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "client_id differs from the Basic authentication user"})
				return
			}
			clientID = u
		}
	}
	codeStr := f.Get("code")
	now := i.now()
	i.authMu.Lock()
	c := i.codes[codeStr]
	// Single use: the first attempt burns the code, whether it succeeds or not.
	delete(i.codes, codeStr)
	i.authMu.Unlock()
	refuse := func(why string) {
		i.log.Warn("devissuer: DEV ONLY code exchange refused", "why", why)
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_grant", why})
	}
	switch {
	case codeStr == "" || c == nil:
		refuse("unknown or already used authorization code")
		return
	case now.After(c.expires):
		refuse("authorization code expired")
		return
	case clientID != c.clientID:
		refuse("client_id does not match the authorization request")
		return
	case f.Get("redirect_uri") != c.redirectURI:
		refuse("redirect_uri does not match the authorization request")
		return
	}
	verifier := f.Get("code_verifier")
	if !validPKCE(verifier) {
		refuse("code_verifier is missing or malformed")
		return
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.challenge)) != 1 {
		refuse("code_verifier does not match the code_challenge")
		return
	}
	extra := map[string]any{}
	if c.nonce != "" {
		extra["nonce"] = c.nonce
	}
	tok, err := i.Token(c.sub, c.groups, c.clientID, extra)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, oauthError{"server_error", err.Error()})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"id_token": tok, "access_token": tok, "token_type": "Bearer", "expires_in": int(DefaultTTL.Seconds()),
	})
}

func pruneExpired[T any](m map[string]*T, now time.Time, exp func(*T) time.Time) {
	for k, v := range m {
		if now.After(exp(v)) {
			delete(m, k)
		}
	}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
