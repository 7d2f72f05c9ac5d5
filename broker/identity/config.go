// Package identity verifies the OIDC tokens that agents, CI jobs and approvers
// present to the broker. It is the first step of the flow:
//
//	token → identity → policy → approval → grant → ...
//
// A Verifier knows a fixed set of trusted issuers (Okta, GitHub Actions, the
// embedded dev issuer). It picks the issuer by the token's unverified "iss"
// claim only after cheap size and shape checks, checks the claims, and then
// verifies the signature with github.com/coreos/go-oidc/v3 against the issuer's
// discovery document and JSON Web Key Set. Keys are cached; an unknown "kid"
// triggers at most one key-set fetch per MinRefreshInterval per issuer, so a
// flood of forged tokens cannot turn into a flood of requests to the IdP.
//
// Every refusal wraps ErrInvalidToken and says why in its text ("token
// expired", "audience mismatch", "unknown issuer", "issuer unreachable", ...).
// The package never fetches keys named by a token ("jku", "x5u", an embedded
// "jwk"): keys come only from the configured issuer's jwks_uri.
package identity

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults and limits.
const (
	DefaultGroupsClaim        = "groups"
	DefaultClockSkew          = 30 * time.Second
	MaxClockSkew              = 5 * time.Minute
	DefaultMaxTokenBytes      = 16 << 10
	DefaultMinRefreshInterval = time.Minute
)

// DefaultAlgorithms are the signature algorithms accepted when an issuer does
// not list its own.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// asymmetricAlgorithms are the algorithms an issuer may allow. Symmetric (HS*)
// algorithms and "none" are never accepted: a broker that verifies with a
// shared secret could be fooled by anyone who knows the issuer's public key.
var asymmetricAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

var issuerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	// Name is the issuer's name in policy ("okta", "github"). Lowercase letters,
	// digits, '-' and '_'.
	Name string
	// Issuer is the exact issuer URL. A token's "iss" must equal it byte for
	// byte: no trailing-slash, scheme or case leniency. It MUST be https, except
	// for a DevOnly issuer on a loopback address.
	Issuer string
	// Audience is required: a token must list it in "aud". Use a value that
	// names this broker (e.g. "api://jitgate"), never a value shared with
	// other services, or their tokens would be accepted here.
	Audience string
	// GroupsClaim is the claim holding group names; default "groups".
	GroupsClaim string
	// Algorithms is the allow-list of signature algorithms; default RS256 and
	// ES256. "none" and HS* are refused at configuration time.
	Algorithms []string
	// ClockSkew is the leeway applied to exp, nbf and iat; default 30s, max 5m.
	ClockSkew time.Duration
	// AuthorizedParty, when set, must equal the token's "azp" (and a token
	// without "azp" is refused). When unset, a token that has "azp" must have
	// it equal to Audience.
	AuthorizedParty string
	// HumanWhen marks human identities (the only ones that may approve):
	// "claim=value", e.g. "token_type=human". The claim's value (a string, a
	// bool or a number, as text) must equal value exactly. When empty, no
	// identity of this issuer is human.
	HumanWhen string
	// DevOnly marks the embedded development issuer (jitgate dev). Identities it
	// vouches for carry Identity.DevOnly, and its URL must be a loopback
	// address. It MUST NOT be configured in production.
	DevOnly bool
}

// withDefaults validates c and returns a copy with defaults filled in.
func (c IssuerConfig) withDefaults() (IssuerConfig, error) {
	if !issuerNameRE.MatchString(c.Name) {
		return c, fmt.Errorf("identity: issuer name %q: want lowercase letters, digits, '-' or '_'", c.Name)
	}
	if err := checkIssuerURL(c.Issuer, c.DevOnly); err != nil {
		return c, fmt.Errorf("identity: issuer %s: %w", c.Name, err)
	}
	if strings.TrimSpace(c.Audience) == "" {
		return c, fmt.Errorf("identity: issuer %s: audience is required", c.Name)
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = append([]string(nil), DefaultAlgorithms...)
	} else {
		c.Algorithms = append([]string(nil), c.Algorithms...)
	}
	for _, a := range c.Algorithms {
		if err := CheckAlgorithm(a); err != nil {
			return c, fmt.Errorf("identity: issuer %s: %w", c.Name, err)
		}
	}
	switch {
	case c.ClockSkew == 0:
		c.ClockSkew = DefaultClockSkew
	case c.ClockSkew < 0:
		return c, fmt.Errorf("identity: issuer %s: clock skew %s is negative", c.Name, c.ClockSkew)
	case c.ClockSkew > MaxClockSkew:
		return c, fmt.Errorf("identity: issuer %s: clock skew %s exceeds the maximum %s", c.Name, c.ClockSkew, MaxClockSkew)
	}
	if c.HumanWhen != "" {
		if _, _, err := ParseHumanWhen(c.HumanWhen); err != nil {
			return c, fmt.Errorf("identity: issuer %s: %w", c.Name, err)
		}
	}
	return c, nil
}

// Validate reports whether c is a usable issuer configuration.
func (c IssuerConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

// CheckAlgorithm reports whether alg may be allowed for an issuer.
func CheckAlgorithm(alg string) error {
	switch {
	case strings.EqualFold(alg, "none"):
		return fmt.Errorf("algorithm %q is refused: unsigned tokens are never accepted", alg)
	case len(alg) >= 2 && strings.EqualFold(alg[:2], "HS"):
		return fmt.Errorf("algorithm %q is refused: symmetric algorithms are never accepted", alg)
	case !asymmetricAlgorithms[alg]:
		return fmt.Errorf("algorithm %q is not supported (want one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", alg)
	}
	return nil
}

// ParseHumanWhen splits a HumanWhen setting "claim=value".
func ParseHumanWhen(s string) (claim, value string, err error) {
	claim, value, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(claim) == "" || claim != strings.TrimSpace(claim) {
		return "", "", fmt.Errorf("human_when %q: want claim=value", s)
	}
	return claim, value, nil
}

func checkIssuerURL(s string, devOnly bool) error {
	if s == "" {
		return fmt.Errorf("issuer URL is required")
	}
	if strings.Contains(s, "|") {
		// "|" separates issuer and subject in Identity.Key.
		return fmt.Errorf("issuer URL %q must not contain '|'", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("issuer URL %q: %w", s, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("issuer URL %q: want scheme://host[:port][/path] without user info, query or fragment", s)
	}
	loopback := isLoopbackHost(u.Hostname())
	switch {
	case devOnly && !loopback:
		return fmt.Errorf("issuer URL %q: a dev-only issuer must be on a loopback address", s)
	case devOnly && (u.Scheme == "http" || u.Scheme == "https"):
	case u.Scheme != "https":
		return fmt.Errorf("issuer URL %q: scheme must be https", s)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
