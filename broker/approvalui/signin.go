package approvalui

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/jitgate/jitgate/broker/grant"
)

// oauthConfig discovers the issuer once; a failed discovery is retried on the
// next sign-in.
func (u *ui) oauthConfig(ctx context.Context) (*oauth2.Config, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.oauth != nil {
		return u.oauth, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, u.cfg.HTTPClient), u.cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("discover %s: %w", u.cfg.IssuerURL, err)
	}
	ep := p.Endpoint()
	if ep.AuthURL == "" || ep.TokenURL == "" {
		return nil, fmt.Errorf("issuer %s has no authorization or token endpoint", u.cfg.IssuerURL)
	}
	// A public client: PKCE instead of a secret, client_id in the form.
	ep.AuthStyle = oauth2.AuthStyleInParams
	u.oauth = &oauth2.Config{
		ClientID: u.cfg.ClientID, Endpoint: ep, RedirectURL: u.base + "/callback",
		Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
	}
	return u.oauth, nil
}

// nextPath keeps only the page's own paths as the place to return to after
// sign-in: never another site (open redirect).
func (u *ui) nextPath(p string) string {
	home := u.path + "/"
	if p == home {
		return p
	}
	if id, ok := strings.CutPrefix(p, u.path+"/grants/"); ok && grant.ValidID(id) {
		return p
	}
	return home
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	oc, err := u.oauthConfig(r.Context())
	if err != nil {
		u.cfg.Logger.Error("approvalui: identity provider unreachable", "err", err)
		u.errorPage(w, r, nil, http.StatusBadGateway, "The identity provider cannot be reached, so nobody can sign in right now. Try again shortly.")
		return
	}
	ld := loginData{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Next: u.nextPath(r.URL.Query().Get("next")), Expires: u.cfg.Now().Add(loginTTL)}
	v, err := u.seal.seal(loginCookie, ld)
	if err != nil {
		u.fail(w, r, nil, err)
		return
	}
	http.SetCookie(w, u.cookie(loginCookie, v, ld.Expires))
	http.Redirect(w, r, oc.AuthCodeURL(ld.State, oidc.Nonce(ld.Nonce), oauth2.S256ChallengeOption(ld.Verifier)), http.StatusFound)
}

func (u *ui) callback(w http.ResponseWriter, r *http.Request) {
	restart := "Start the sign-in again."
	c, err := r.Cookie(loginCookie)
	if err != nil {
		u.errorPage(w, r, nil, http.StatusBadRequest, "This sign-in was not started here, or it was started at another address than "+u.base+". "+restart)
		return
	}
	u.clear(w, loginCookie) // one callback per sign-in, whatever happens
	var ld loginData
	if err := u.seal.open(loginCookie, c.Value, &ld); err != nil || ld.State == "" || ld.Nonce == "" || ld.Verifier == "" {
		u.errorPage(w, r, nil, http.StatusBadRequest, "The sign-in state cannot be read. "+restart)
		return
	}
	if u.cfg.Now().After(ld.Expires) {
		u.errorPage(w, r, nil, http.StatusBadRequest, "The sign-in took too long. "+restart)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ld.State)) != 1 {
		u.cfg.Logger.Warn("approvalui: sign-in callback with a wrong state refused")
		u.errorPage(w, r, nil, http.StatusBadRequest, "The sign-in response does not belong to this sign-in (state mismatch). "+restart)
		return
	}
	if e := q.Get("error"); e != "" {
		u.errorPage(w, r, nil, http.StatusUnauthorized, fmt.Sprintf("The identity provider refused the sign-in: %s %s", e, q.Get("error_description")))
		return
	}
	oc, err := u.oauthConfig(r.Context())
	if err != nil {
		u.errorPage(w, r, nil, http.StatusBadGateway, "The identity provider cannot be reached. "+restart)
		return
	}
	tok, err := oc.Exchange(oidc.ClientContext(r.Context(), u.cfg.HTTPClient), q.Get("code"), oauth2.VerifierOption(ld.Verifier))
	if err != nil {
		u.cfg.Logger.Warn("approvalui: code exchange failed", "err", err)
		u.errorPage(w, r, nil, http.StatusUnauthorized, "The identity provider did not accept the sign-in code. "+restart)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		u.errorPage(w, r, nil, http.StatusUnauthorized, "The identity provider answered without an ID token. "+restart)
		return
	}
	who, err := u.verify(r, raw)
	if err != nil {
		u.cfg.Logger.Warn("approvalui: sign-in token refused", "err", err)
		u.errorPage(w, r, nil, http.StatusUnauthorized, "The sign-in token was refused: "+err.Error())
		return
	}
	nonce, _ := who.Claims["nonce"].(string)
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(ld.Nonce)) != 1 {
		u.cfg.Logger.Warn("approvalui: sign-in token with a wrong nonce refused", "who", who.String())
		u.errorPage(w, r, nil, http.StatusUnauthorized, "The sign-in token was issued for another sign-in (nonce mismatch). "+restart)
		return
	}
	sv, err := u.seal.seal(sessionCookie, sessionData{Token: raw, SID: randomString()})
	if err != nil {
		u.fail(w, r, nil, fmt.Errorf("session cookie: %w", err))
		return
	}
	http.SetCookie(w, u.cookie(sessionCookie, sv, who.Expiry))
	u.cfg.Logger.Info("approvalui: approver signed in", "who", who.String(), "groups", who.Groups, "until", who.Expiry)
	http.Redirect(w, r, u.origin+u.nextPath(ld.Next), http.StatusFound)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request, s *session) {
	u.clear(w, sessionCookie)
	u.cfg.Logger.Info("approvalui: approver signed out", "who", s.who.String())
	u.render(w, r, http.StatusOK, u.pages.message, pageData{Title: "Signed out", Message: "You are signed out of the jitgate approval page."})
}
