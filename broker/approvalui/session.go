package approvalui

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jitgate/jitgate/broker/identity"
)

// Cookie names. The name is the AEAD's additional data, so one cookie's value
// never opens as the other.
const (
	sessionCookie = "jitgate_ui_session"
	loginCookie   = "jitgate_ui_login"
	// maxCookieLen keeps a sealed cookie under browsers' 4096-byte limit.
	maxCookieLen = 3900
	// loginTTL bounds a sign-in from /login to /callback.
	loginTTL = 10 * time.Minute
)

// sealer seals cookie values with AES-256-GCM under a key derived from
// Config.CookieKey, and keys CSRF tokens with another derived key.
type sealer struct {
	aead    cipher.AEAD
	csrfKey []byte
}

func derive(key []byte, label string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	return m.Sum(nil)
}

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(derive(key, "jitgate/approvalui/cookie/v1"))
	if err != nil {
		return nil, fmt.Errorf("approvalui: cookie cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("approvalui: cookie cipher: %w", err)
	}
	return &sealer{aead: aead, csrfKey: derive(key, "jitgate/approvalui/csrf/v1")}, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	pt, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, pt, []byte(name)))
	if len(name)+1+len(out) > maxCookieLen {
		return "", fmt.Errorf("cookie %s would be %d bytes, more than browsers keep", name, len(out))
	}
	return out, nil
}

var errBadCookie = errors.New("cookie does not open")

func (s *sealer) open(name, value string, v any) error {
	if len(value) > maxCookieLen {
		return errBadCookie
	}
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return errBadCookie
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, b[:n], b[n:], []byte(name))
	if err != nil {
		return errBadCookie
	}
	if err := json.Unmarshal(pt, v); err != nil {
		return errBadCookie
	}
	return nil
}

// csrfFor derives a session's CSRF token from its random id.
func (s *sealer) csrfFor(sid string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(sid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionData is the sealed content of the session cookie.
type sessionData struct {
	// Token is the raw ID token; it is verified again on every request.
	Token string `json:"t"`
	// SID is random; the CSRF token is derived from it.
	SID string `json:"s"`
}

// loginData is the sealed content of the sign-in cookie.
type loginData struct {
	State    string    `json:"st"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Next     string    `json:"x"`
	Expires  time.Time `json:"e"`
}

// session is a signed-in approver.
type session struct {
	who  identity.Identity
	csrf string
}

func (u *ui) cookie(name, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name: name, Value: value, Path: u.path + "/",
		HttpOnly: true, Secure: u.secure,
		// Lax, not Strict: the sign-in cookie must come along on the
		// identity provider's redirect back to /callback, a cross-site
		// top-level GET. POSTs are guarded by the CSRF token and Origin.
		SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		c.MaxAge = -1
		return c
	}
	c.Expires = expires.UTC()
	c.MaxAge = max(int(expires.Sub(u.cfg.Now()).Seconds()), 1)
	return c
}

func (u *ui) clear(w http.ResponseWriter, name string) {
	http.SetCookie(w, u.cookie(name, "", time.Time{}))
}

// session returns the signed-in approver, or nil (clearing a cookie that no
// longer opens or verifies, e.g. because its token expired).
func (u *ui) session(w http.ResponseWriter, r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var d sessionData
	if err := u.seal.open(sessionCookie, c.Value, &d); err != nil || d.Token == "" || d.SID == "" {
		u.clear(w, sessionCookie)
		return nil
	}
	who, err := u.verify(r, d.Token)
	if err != nil {
		u.cfg.Logger.Info("approvalui: session ended", "err", err)
		u.clear(w, sessionCookie)
		return nil
	}
	return &session{who: who, csrf: u.seal.csrfFor(d.SID)}
}

// verify checks an ID token for this page: the Verifier's checks, plus the
// configured issuer and this client in the audience (the Verifier may trust
// other issuers, e.g. GitHub Actions, whose tokens never sign in here).
func (u *ui) verify(r *http.Request, raw string) (identity.Identity, error) {
	who, err := u.cfg.Verifier.Verify(r.Context(), raw)
	if err != nil {
		return identity.Identity{}, err
	}
	if who.Issuer != u.cfg.IssuerURL {
		return identity.Identity{}, fmt.Errorf("token from issuer %q, not the sign-in issuer %q", who.Issuer, u.cfg.IssuerURL)
	}
	if !hasAudience(who.Claims["aud"], u.cfg.ClientID) {
		return identity.Identity{}, fmt.Errorf("token audience does not include client %q", u.cfg.ClientID)
	}
	return who, nil
}

func hasAudience(aud any, client string) bool {
	switch a := aud.(type) {
	case string:
		return a == client
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && s == client {
				return true
			}
		}
	case []string:
		for _, s := range a {
			if s == client {
				return true
			}
		}
	}
	return false
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}
