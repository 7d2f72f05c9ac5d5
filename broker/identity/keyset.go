package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxMetadataBytes bounds discovery documents and key sets.
const maxMetadataBytes = 1 << 20

// errUnreachable marks failures to reach the issuer (discovery or JWKS).
var errUnreachable = errors.New("issuer unreachable")

// issuer holds one trusted issuer: its configuration, its lazily discovered
// metadata and its cached key set.
type issuer struct {
	cfg      IssuerConfig
	algs     []jose.SignatureAlgorithm
	client   *http.Client
	now      func() time.Time
	interval time.Duration
	log      *slog.Logger

	// discoverMu serializes discovery; the fields below it are guarded by mu.
	discoverMu sync.Mutex
	// fetchMu serializes key-set fetches.
	fetchMu sync.Mutex

	mu            sync.Mutex
	jwksURL       string    // set once discovery succeeded
	lastDiscovery time.Time // last discovery attempt
	discoveryErr  error     // error of the last attempt, while jwksURL is empty
	keys          []jose.JSONWebKey
	lastFetch     time.Time // last key-set fetch attempt (zero: never)
	fetchErr      error
}

// discover resolves the issuer's jwks_uri once. A failure is remembered and
// retried no sooner than the refresh interval, so an unreachable issuer is not
// hammered by every incoming token.
func (is *issuer) discover(ctx context.Context) error {
	is.mu.Lock()
	done := is.jwksURL != ""
	is.mu.Unlock()
	if done {
		return nil
	}
	is.discoverMu.Lock()
	defer is.discoverMu.Unlock()
	is.mu.Lock()
	if is.jwksURL != "" {
		is.mu.Unlock()
		return nil
	}
	now := is.now()
	if !is.lastDiscovery.IsZero() && now.Sub(is.lastDiscovery) < is.interval && is.discoveryErr != nil {
		err := is.discoveryErr
		is.mu.Unlock()
		return err
	}
	is.mu.Unlock()

	jwksURL, err := is.fetchDiscovery(ctx)
	if err != nil && ctx.Err() != nil {
		// The caller gave up; that says nothing about the issuer.
		return fmt.Errorf("%w: %v", errUnreachable, ctx.Err())
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.lastDiscovery = now
	if err != nil {
		is.discoveryErr = fmt.Errorf("%w: discovery: %v", errUnreachable, err)
		is.log.Warn("identity: oidc discovery failed", "issuer", is.cfg.Name, "url", is.cfg.Issuer, "err", err)
		return is.discoveryErr
	}
	is.jwksURL, is.discoveryErr = jwksURL, nil
	is.log.Debug("identity: oidc discovery done", "issuer", is.cfg.Name, "jwks_uri", jwksURL, "dev_only", is.cfg.DevOnly)
	return nil
}

func (is *issuer) fetchDiscovery(ctx context.Context) (string, error) {
	wellKnown := strings.TrimSuffix(is.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	body, err := is.get(ctx, wellKnown)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("decode %s: %v", wellKnown, err)
	}
	if doc.Issuer != is.cfg.Issuer {
		return "", fmt.Errorf("discovery document names issuer %q, want %q", doc.Issuer, is.cfg.Issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("discovery document has no usable jwks_uri (%q)", doc.JWKSURI)
	}
	if u.Scheme == "http" && !(is.cfg.DevOnly && isLoopbackHost(u.Hostname())) {
		return "", fmt.Errorf("jwks_uri %q must be https", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

func (is *issuer) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := is.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", u, err)
	}
	if len(body) > maxMetadataBytes {
		return nil, fmt.Errorf("%s: response larger than %d bytes", u, maxMetadataBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	return body, nil
}

// VerifySignature parses the token with the
// issuer's algorithm allow-list and verifies it against the cached keys whose
// kid, use, alg and key type fit; when no cached key fits it refreshes the key
// set, at most once per refresh interval. Keys named by the token itself
// (jku, x5u, jwk, x5c) are never used.
func (is *issuer) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, is.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("malformed token: want exactly one signature")
	}
	h := jws.Signatures[0].Protected
	cands := is.candidates(h.KeyID, h.Algorithm)
	if len(cands) == 0 {
		if err := is.refresh(ctx); err != nil {
			return nil, err
		}
		cands = is.candidates(h.KeyID, h.Algorithm)
		if len(cands) == 0 {
			switch {
			case h.KeyID == "":
				return nil, fmt.Errorf("no key of the issuer fits algorithm %s", h.Algorithm)
			case is.hasKID(h.KeyID):
				return nil, fmt.Errorf("key %q does not fit algorithm %s", h.KeyID, h.Algorithm)
			}
			return nil, fmt.Errorf("unknown key id %q", h.KeyID)
		}
	}
	for i := range cands {
		if payload, err := jws.Verify(&cands[i]); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("signature invalid")
}

// candidates returns the cached keys that could have produced a signature with
// kid and alg.
func (is *issuer) candidates(kid, alg string) []jose.JSONWebKey {
	is.mu.Lock()
	keys := is.keys
	is.mu.Unlock()
	var out []jose.JSONWebKey
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if !keyFitsAlg(k.Key, alg) {
			continue
		}
		out = append(out, k)
	}
	return out
}

func (is *issuer) hasKID(kid string) bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	for _, k := range is.keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

func keyFitsAlg(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// refresh fetches the key set unless a fetch was attempted less than the
// refresh interval ago. Concurrent callers wait for one fetch.
func (is *issuer) refresh(ctx context.Context) error {
	is.mu.Lock()
	jwksURL := is.jwksURL
	is.mu.Unlock()
	if jwksURL == "" {
		return fmt.Errorf("%w: no key set location (discovery has not succeeded)", errUnreachable)
	}
	is.fetchMu.Lock()
	defer is.fetchMu.Unlock()
	now := is.now()
	is.mu.Lock()
	if !is.lastFetch.IsZero() && now.Sub(is.lastFetch) < is.interval {
		err := is.fetchErr
		is.mu.Unlock()
		if err != nil {
			return err
		}
		return nil // keys are as fresh as we allow; the caller re-checks candidates
	}
	is.mu.Unlock()

	keys, err := is.fetchKeys(ctx, jwksURL)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %v", errUnreachable, ctx.Err())
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.lastFetch = now
	if err != nil {
		is.fetchErr = fmt.Errorf("%w: key set: %v", errUnreachable, err)
		is.log.Warn("identity: jwks fetch failed", "issuer", is.cfg.Name, "url", jwksURL, "err", err)
		return is.fetchErr
	}
	is.keys, is.fetchErr = keys, nil
	is.log.Debug("identity: jwks fetched", "issuer", is.cfg.Name, "keys", len(keys), "dev_only", is.cfg.DevOnly)
	return nil
}

// fetchKeys downloads and parses the key set with go-jose. Keys go-jose cannot
// parse (unknown kty or curve) are skipped, as RFC 7517 §5 asks; a document
// that is not a key set at all is an error.
func (is *issuer) fetchKeys(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, error) {
	body, err := is.get(ctx, jwksURL)
	if err != nil {
		return nil, err
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("decode key set: %v", err)
	}
	if raw.Keys == nil {
		return nil, errors.New("decode key set: no \"keys\" member")
	}
	var keys []jose.JSONWebKey
	for _, k := range raw.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k); err != nil {
			is.log.Debug("identity: skipping unusable jwk", "issuer", is.cfg.Name, "err", err)
			continue
		}
		if !jwk.Valid() {
			continue
		}
		if !jwk.IsPublic() {
			jwk = jwk.Public() // never keep private material, even if published by mistake
		}
		keys = append(keys, jwk)
	}
	return keys, nil
}
