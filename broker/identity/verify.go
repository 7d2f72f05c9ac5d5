package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ErrInvalidToken is wrapped by every refusal of Verify. The error text says
// why the token was refused.
var ErrInvalidToken = errors.New("identity: invalid token")

// Options are the Verifier's injected dependencies and limits.
type Options struct {
	// HTTPClient fetches discovery documents and key sets. Default: a client
	// with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock for exp/nbf/iat and for refresh intervals. Default time.Now.
	Now func() time.Time
	// Logger receives refusals (never the token) and fetch events. Default: discard.
	Logger *slog.Logger
	// MaxTokenBytes refuses larger tokens before any parsing. Default 16 KiB.
	MaxTokenBytes int
	// MinRefreshInterval is the minimum gap between key-set fetches (and
	// between discovery retries) for one issuer. Default 1m. Tests set it small;
	// production MUST NOT set it to a few milliseconds, or forged kids can make
	// the broker hammer the IdP.
	MinRefreshInterval time.Duration
}

// Identity is a verified token's subject as the rest of the broker sees it.
type Identity struct {
	// IssuerName is the issuer's policy name ("okta", "github").
	IssuerName string
	// Issuer is the issuer URL.
	Issuer  string
	Subject string
	Groups  []string
	// Claims holds every claim of the token, for policy (GitHub Actions:
	// repository, ref, sha, event_name, job_workflow_ref, actor, run_id, ...).
	// Integral numbers are int64, other numbers float64.
	Claims map[string]any
	Expiry time.Time
	// Human reports whether the issuer's HumanWhen matched.
	Human bool
	// DevOnly reports that the embedded dev issuer vouched for this identity.
	DevOnly bool
}

// Key is a stable identifier, "issuer|subject", for comparing requesters and
// approvers. Issuer URLs cannot contain '|', so the split is unambiguous.
func (i Identity) Key() string { return i.Issuer + "|" + i.Subject }

// String names the identity for logs.
func (i Identity) String() string {
	s := i.IssuerName + ":" + i.Subject
	if i.DevOnly {
		s += " (DEV ONLY)"
	}
	return s
}

// Verifier verifies tokens from a fixed set of issuers. It is safe for
// concurrent use.
type Verifier struct {
	byIssuer map[string]*issuer
	maxBytes int
	now      func() time.Time
	log      *slog.Logger
}

// NewVerifier validates the issuers and returns a Verifier. It does no network
// I/O: discovery and key sets are fetched on first use.
func NewVerifier(issuers []IssuerConfig, opts Options) (*Verifier, error) {
	if len(issuers) == 0 {
		return nil, errors.New("identity: no issuers configured")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.MaxTokenBytes == 0:
		opts.MaxTokenBytes = DefaultMaxTokenBytes
	case opts.MaxTokenBytes < 0:
		return nil, fmt.Errorf("identity: MaxTokenBytes %d is negative", opts.MaxTokenBytes)
	}
	switch {
	case opts.MinRefreshInterval == 0:
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	case opts.MinRefreshInterval < 0:
		return nil, fmt.Errorf("identity: MinRefreshInterval %s is negative", opts.MinRefreshInterval)
	}
	v := &Verifier{
		byIssuer: map[string]*issuer{},
		maxBytes: opts.MaxTokenBytes,
		now:      opts.Now,
		log:      opts.Logger,
	}
	names := map[string]bool{}
	for _, c := range issuers {
		c, err := c.withDefaults()
		if err != nil {
			return nil, err
		}
		if names[c.Name] {
			return nil, fmt.Errorf("identity: duplicate issuer name %q", c.Name)
		}
		if _, dup := v.byIssuer[c.Issuer]; dup {
			return nil, fmt.Errorf("identity: issuer URL %q configured twice", c.Issuer)
		}
		names[c.Name] = true
		is := &issuer{
			cfg:      c,
			client:   opts.HTTPClient,
			now:      opts.Now,
			interval: opts.MinRefreshInterval,
			log:      opts.Logger,
		}
		for _, a := range c.Algorithms {
			is.algs = append(is.algs, jose.SignatureAlgorithm(a))
		}
		if c.DevOnly {
			opts.Logger.Warn("identity: DEV ONLY issuer configured; never use it in production", "issuer", c.Name, "url", c.Issuer)
		}
		v.byIssuer[c.Issuer] = is
	}
	return v, nil
}

// Verify checks rawToken and returns the identity it carries. Every error
// wraps ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	id, err := v.verify(ctx, rawToken)
	if err != nil {
		// Debug, not Info: a flood of junk tokens must not become a flood of
		// log lines. The caller audits the refusal it returns.
		v.log.Debug("identity: token refused", "reason", err.Error())
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (Identity, error) {
	if len(raw) > v.maxBytes {
		return Identity{}, fmt.Errorf("token too large (%d bytes, limit %d)", len(raw), v.maxBytes)
	}
	hdrB64, payloadB64, sigB64, err := splitCompact(raw)
	if err != nil {
		return Identity{}, err
	}
	hdrJSON, err := base64.RawURLEncoding.Strict().DecodeString(hdrB64)
	if err != nil {
		return Identity{}, errors.New("malformed token: header is not base64url")
	}
	hdr, err := decodeStrictObject(hdrJSON)
	if err != nil {
		return Identity{}, fmt.Errorf("malformed token header: %v", err)
	}
	payloadJSON, err := base64.RawURLEncoding.Strict().DecodeString(payloadB64)
	if err != nil {
		return Identity{}, errors.New("malformed token: payload is not base64url")
	}
	claims, err := decodeStrictObject(payloadJSON)
	if err != nil {
		return Identity{}, fmt.Errorf("malformed token payload: %v", err)
	}
	alg, _ := hdr["alg"].(string)
	if strings.EqualFold(alg, "none") || sigB64 == "" {
		return Identity{}, fmt.Errorf("unsigned token (alg %q) refused", alg)
	}
	if _, ok := hdr["crit"]; ok {
		return Identity{}, errors.New("token with critical header extensions refused")
	}
	iss, ok := claims["iss"].(string)
	if !ok || iss == "" {
		return Identity{}, errors.New("token has no issuer (iss)")
	}
	is := v.byIssuer[iss]
	if is == nil {
		return Identity{}, fmt.Errorf("unknown issuer %q", iss)
	}
	c := &is.cfg
	if !slices.Contains(c.Algorithms, alg) {
		return Identity{}, fmt.Errorf("algorithm %q not allowed for issuer %s (allowed: %s)", alg, c.Name, strings.Join(c.Algorithms, ", "))
	}
	// Claim checks before signature verification: cheap refusals never cause
	// a key-set fetch. go-oidc repeats iss and aud after verifying.
	if err := checkClaims(c, claims, v.now()); err != nil {
		return Identity{}, err
	}
	groups, err := groupsOf(c, claims)
	if err != nil {
		return Identity{}, err
	}
	if err := is.discover(ctx); err != nil {
		return Identity{}, err
	}
	// The signature, against the issuer's cached keys. iss, aud, azp and the
	// times were checked above on the same payload, so go-oidc's
	// IDTokenVerifier (a second parse and two more JSON decodes of the
	// claims) is not needed on this path.
	if err := is.verifySignature(ctx, raw, hdr, alg, payloadJSON); err != nil {
		return Identity{}, err
	}
	exp, _ := numericDate(claims["exp"])
	id := Identity{
		IssuerName: c.Name,
		Issuer:     c.Issuer,
		Subject:    claims["sub"].(string),
		Groups:     groups,
		Claims:     claims,
		Expiry:     exp,
		Human:      isHuman(c, claims),
		DevOnly:    c.DevOnly,
	}
	return id, nil
}

// splitCompact checks the compact JWS shape: exactly three base64url parts.
// It looks at each byte once, so a token of thousands of dots costs nothing.
func splitCompact(raw string) (h, p, s string, err error) {
	if strings.Count(raw, ".") != 2 {
		return "", "", "", errors.New("malformed token: a compact JWS has exactly 3 dot-separated parts")
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", "", errors.New("malformed token: characters outside base64url")
		}
	}
	h, rest, _ := strings.Cut(raw, ".")
	p, s, _ = strings.Cut(rest, ".")
	if h == "" || p == "" {
		return "", "", "", errors.New("malformed token: empty header or payload")
	}
	return h, p, s, nil
}

func checkClaims(c *IssuerConfig, claims map[string]any, now time.Time) error {
	sub, ok := claims["sub"].(string)
	if !ok || sub == "" {
		return errors.New("token has no subject (sub)")
	}
	switch aud := claims["aud"].(type) {
	case string:
		if aud != c.Audience {
			return fmt.Errorf("audience mismatch: token is for %q, want %q", aud, c.Audience)
		}
	case []any:
		found := false
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return errors.New("audience mismatch: aud holds a non-string")
			}
			found = found || s == c.Audience
		}
		if !found {
			return fmt.Errorf("audience mismatch: token is for %v, want %q", aud, c.Audience)
		}
	case nil:
		return fmt.Errorf("audience mismatch: token has no aud, want %q", c.Audience)
	default:
		return errors.New("audience mismatch: aud is neither a string nor a list")
	}
	azp, hasAZP := claims["azp"]
	azpStr, _ := azp.(string)
	switch {
	case hasAZP && azpStr == "":
		return errors.New("authorized party mismatch: azp is not a non-empty string")
	case c.AuthorizedParty != "" && azpStr != c.AuthorizedParty:
		return fmt.Errorf("authorized party mismatch: azp %q, want %q", azpStr, c.AuthorizedParty)
	case c.AuthorizedParty == "" && hasAZP && azpStr != c.Audience:
		return fmt.Errorf("authorized party mismatch: azp %q, want %q", azpStr, c.Audience)
	}
	return checkTimes(c.ClockSkew, claims, now)
}

func checkTimes(skew time.Duration, claims map[string]any, now time.Time) error {
	rawExp, ok := claims["exp"]
	if !ok {
		return errors.New("token has no expiry (exp)")
	}
	exp, ok := numericDate(rawExp)
	if !ok {
		return errors.New("token exp is not a NumericDate")
	}
	if now.After(exp.Add(skew)) {
		return fmt.Errorf("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if raw, ok := claims["nbf"]; ok {
		nbf, ok := numericDate(raw)
		if !ok {
			return errors.New("token nbf is not a NumericDate")
		}
		if now.Add(skew).Before(nbf) {
			return fmt.Errorf("token not yet valid (nbf %s is in the future)", nbf.UTC().Format(time.RFC3339))
		}
	}
	if raw, ok := claims["iat"]; ok {
		iat, ok := numericDate(raw)
		if !ok {
			return errors.New("token iat is not a NumericDate")
		}
		if now.Add(skew).Before(iat) {
			return fmt.Errorf("token issued in the future (iat %s)", iat.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// numericDate converts a JSON NumericDate (seconds since the epoch).
func numericDate(v any) (time.Time, bool) {
	switch n := v.(type) {
	case int64:
		if n < 0 || n > 1<<40 {
			return time.Time{}, false
		}
		return time.Unix(n, 0), true
	case float64:
		if n < 0 || n > 1<<40 || math.IsNaN(n) {
			return time.Time{}, false
		}
		sec, frac := math.Modf(n)
		return time.Unix(int64(sec), int64(frac*1e9)), true
	}
	return time.Time{}, false
}

func groupsOf(c *IssuerConfig, claims map[string]any) ([]string, error) {
	switch g := claims[c.GroupsClaim].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{g}, nil
	case []any:
		out := make([]string, 0, len(g))
		for _, e := range g {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("groups claim %q holds a non-string", c.GroupsClaim)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("groups claim %q is not a list of strings", c.GroupsClaim)
	}
}

func isHuman(c *IssuerConfig, claims map[string]any) bool {
	if c.HumanWhen == "" {
		return false
	}
	claim, want, err := ParseHumanWhen(c.HumanWhen)
	if err != nil {
		return false
	}
	switch v := claims[claim].(type) {
	case string:
		return v == want
	case bool:
		return strconv.FormatBool(v) == want
	case int64:
		return strconv.FormatInt(v, 10) == want
	}
	return false
}
