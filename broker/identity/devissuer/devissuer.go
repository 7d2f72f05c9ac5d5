// Package devissuer is a small but real OpenID Connect issuer for `jitgate dev`
// and for tests. DEV ONLY: it must never be used in production. It signs
// whatever claims it is asked to sign, its /token endpoint hands out tokens to
// anyone on the loopback interface without authentication, and its /authorize
// sign-in form (the authorization-code flow with PKCE that the approval page
// uses) signs in anyone as any subject and groups.
//
// It sits before the flow's first step: it mints the tokens that
// broker/identity verifies, serving the same discovery document
// (/.well-known/openid-configuration) and key set (/jwks) as Okta or GitHub
// Actions do, so the verifier's code path is the production one.
//
// Usage in a test:
//
//	iss, stop, err := devissuer.Start("", devissuer.Options{Algorithm: "ES256"})
//	if err != nil { t.Fatal(err) }
//	defer stop()
//	tok, err := iss.Token("agent-1", []string{"ai-agents"}, "api://jitgate", nil)
package devissuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultTTL is the lifetime of a token whose claims give no exp.
const DefaultTTL = 10 * time.Minute

// Options configure an Issuer.
type Options struct {
	// Algorithm is "RS256" (default) or "ES256".
	Algorithm string
	// Logger receives log lines, each marked DEV ONLY. Default: discard.
	Logger *slog.Logger
	// Now is the clock for iat and exp. Default time.Now.
	Now func() time.Time
	// Key is the initial signing key (an *rsa.PrivateKey for RS256, an
	// *ecdsa.PrivateKey on P-256 for ES256). Default: a fresh random key.
	// Tests set it to craft hostile tokens with the issuer's real key.
	Key crypto.Signer
	// KeyID is the initial key's kid. Default: random.
	KeyID string
}

type signingKey struct {
	kid string
	key crypto.Signer
}

// Issuer is a dev/test OIDC issuer. It is safe for concurrent use.
type Issuer struct {
	alg     jose.SignatureAlgorithm
	log     *slog.Logger
	now     func() time.Time
	fetches atomic.Int64

	mu      sync.Mutex
	url     string
	current signingKey
	old     []signingKey

	// authMu guards the authorization-code flow's state (authcode.go).
	authMu   sync.Mutex
	requests map[string]*authRequest
	codes    map[string]*authCode
}

// New returns an Issuer with a fresh (or the given) signing key. Call SetURL
// once the listener address is known, or use Start.
func New(opts Options) (*Issuer, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = "RS256"
	}
	if opts.Algorithm != "RS256" && opts.Algorithm != "ES256" {
		return nil, fmt.Errorf("devissuer: algorithm %q: want RS256 or ES256", opts.Algorithm)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	i := &Issuer{
		alg: jose.SignatureAlgorithm(opts.Algorithm),
		log: opts.Logger.With("dev_only", true),
		now: opts.Now,

		requests: map[string]*authRequest{},
		codes:    map[string]*authCode{},
	}
	if opts.Key != nil {
		if err := checkKey(i.alg, opts.Key); err != nil {
			return nil, err
		}
		kid := opts.KeyID
		if kid == "" {
			kid = randomKID()
		}
		i.current = signingKey{kid: kid, key: opts.Key}
	} else {
		k, err := i.newKey()
		if err != nil {
			return nil, err
		}
		if opts.KeyID != "" {
			k.kid = opts.KeyID
		}
		i.current = k
	}
	i.log.Warn("devissuer: DEV ONLY OIDC issuer created; never use it in production", "alg", opts.Algorithm, "kid", i.current.kid)
	return i, nil
}

func checkKey(alg jose.SignatureAlgorithm, k crypto.Signer) error {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		if alg == jose.RS256 {
			return nil
		}
	case *ecdsa.PrivateKey:
		if alg == jose.ES256 && key.Curve == elliptic.P256() {
			return nil
		}
	}
	return fmt.Errorf("devissuer: key %T does not fit algorithm %s", k, alg)
}

func (i *Issuer) newKey() (signingKey, error) {
	var (
		k   crypto.Signer
		err error
	)
	if i.alg == jose.ES256 {
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return signingKey{}, fmt.Errorf("devissuer: generate key: %w", err)
	}
	return signingKey{kid: randomKID(), key: k}, nil
}

func randomKID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SetURL sets the issuer URL (the "iss" of every token), e.g.
// "http://127.0.0.1:34567", once the listener is known.
func (i *Issuer) SetURL(u string) {
	i.mu.Lock()
	i.url = strings.TrimSuffix(u, "/")
	i.mu.Unlock()
}

// URL returns the issuer URL.
func (i *Issuer) URL() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.url
}

// KeyID returns the kid of the current signing key.
func (i *Issuer) KeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.current.kid
}

// Rotate makes a new key current. The old key stays in the key set (so tokens
// it signed still verify) until RemoveOld.
func (i *Issuer) Rotate() error {
	k, err := i.newKey()
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.old = append(i.old, i.current)
	i.current = k
	i.mu.Unlock()
	i.log.Info("devissuer: DEV ONLY key rotated", "kid", k.kid)
	return nil
}

// RemoveOld drops the keys replaced by Rotate from the key set.
func (i *Issuer) RemoveOld() {
	i.mu.Lock()
	i.old = nil
	i.mu.Unlock()
}

// JWKSFetches returns how many times /jwks was served.
func (i *Issuer) JWKSFetches() int64 { return i.fetches.Load() }

// Sign signs claims with the current key. It fills iss (the URL), iat (now)
// and exp (now + DefaultTTL) unless claims has them.
func (i *Issuer) Sign(claims map[string]any) (string, error) {
	i.mu.Lock()
	u, k := i.url, i.current
	i.mu.Unlock()
	if u == "" {
		return "", errors.New("devissuer: issuer URL not set (call SetURL or use Start)")
	}
	c := maps.Clone(claims)
	if c == nil {
		c = map[string]any{}
	}
	now := i.now()
	if _, ok := c["iss"]; !ok {
		c["iss"] = u
	}
	if _, ok := c["iat"]; !ok {
		c["iat"] = now.Unix()
	}
	if _, ok := c["exp"]; !ok {
		c["exp"] = now.Add(DefaultTTL).Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("devissuer: marshal claims: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: i.alg, Key: jose.JSONWebKey{Key: k.key, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("devissuer: signer: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	return obj.CompactSerialize()
}

// Token signs a token for sub with groups and audience aud; extra claims are
// added (and may override sub, groups and aud).
func (i *Issuer) Token(sub string, groups []string, aud string, extra map[string]any) (string, error) {
	c := map[string]any{"sub": sub, "aud": aud}
	if groups != nil {
		c["groups"] = groups
	}
	maps.Copy(c, extra)
	tok, err := i.Sign(c)
	if err == nil {
		i.log.Info("devissuer: DEV ONLY token issued", "sub", sub, "groups", groups, "aud", aud)
	}
	return tok, err
}

// Handler serves the discovery document, the key set, the dev token endpoint
// and the authorization-code flow with PKCE (see authcode.go):
//
//	GET  /.well-known/openid-configuration
//	GET  /jwks
//	POST /token       without grant_type (dev tokens): form sub, aud, groups
//	                  (comma list), claim=k=v (repeatable); answers {"id_token": "..."}
//	POST /token       grant_type=authorization_code: code, redirect_uri,
//	                  client_id, code_verifier; answers id_token, access_token,
//	                  token_type
//	GET  /authorize   the DEV ONLY sign-in form (S256 PKCE required)
//	POST /authorize   the form's submission; 302 to the client with a code
//
// /token and /authorize serve loopback clients only.
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET /jwks", i.serveJWKS)
	mux.HandleFunc("POST /token", i.serveToken)
	mux.HandleFunc("GET /authorize", i.serveAuthorizeForm)
	mux.HandleFunc("POST /authorize", i.serveAuthorizeSubmit)
	return mux
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	u := i.URL()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                u,
		"jwks_uri":                              u + "/jwks",
		"token_endpoint":                        u + "/token",
		"authorization_endpoint":                u + "/authorize",
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                      []string{"openid"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(i.alg)},
		"claims_supported":                      []string{"sub", "aud", "iss", "exp", "iat", "groups"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.fetches.Add(1)
	i.mu.Lock()
	ks := append([]signingKey{i.current}, i.old...)
	i.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range ks {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: k.key.Public(), KeyID: k.kid, Algorithm: string(i.alg), Use: "sig",
		})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, set)
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		i.log.Warn("devissuer: DEV ONLY token request from a non-loopback client refused", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "devissuer: /token serves loopback clients only"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "devissuer: bad form: " + err.Error()})
		return
	}
	switch gt := r.PostForm["grant_type"]; {
	case len(gt) == 0:
		// The dev token endpoint below.
	case len(gt) == 1 && gt[0] == "authorization_code":
		i.serveCodeExchange(w, r)
		return
	default:
		writeJSON(w, http.StatusBadRequest, oauthError{"unsupported_grant_type", fmt.Sprintf("grant_type %q: only authorization_code (or none, for dev tokens)", strings.Join(gt, ","))})
		return
	}
	sub, aud := r.PostForm.Get("sub"), r.PostForm.Get("aud")
	if sub == "" || aud == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "devissuer: sub and aud are required"})
		return
	}
	var groups []string
	for _, g := range strings.Split(r.PostForm.Get("groups"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	extra := map[string]any{}
	for _, kv := range r.PostForm["claim"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("devissuer: claim %q: want k=v", kv)})
			return
		}
		extra[k] = v
	}
	tok, err := i.Token(sub, groups, aud, extra)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id_token": tok})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Start listens on addr (default "127.0.0.1:0"; it must be a loopback
// address), serves Handler, and returns the issuer with its URL set and a stop
// function that shuts the server down. stop is idempotent.
func Start(addr string, opts Options) (*Issuer, func(), error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("devissuer: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, nil, fmt.Errorf("devissuer: listen address %q is not loopback; the dev issuer never listens elsewhere", addr)
	}
	iss, err := New(opts)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("devissuer: listen: %w", err)
	}
	iss.SetURL("http://" + ln.Addr().String())
	srv := &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	iss.log.Warn("devissuer: DEV ONLY OIDC issuer listening", "url", iss.URL())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
			<-done
			iss.log.Info("devissuer: DEV ONLY OIDC issuer stopped", "url", iss.URL())
		})
	}
	return iss, stop, nil
}
