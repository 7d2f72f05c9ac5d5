// Package sshca is the embedded SSH certificate authority: the SSH credential
// source of the broker (grant → CREDENTIALS → launch). For each grant it makes
// a fresh ed25519 key in memory and signs a short-lived OpenSSH user
// certificate for it; the key and certificate travel to the ephemeral proxy
// inside spec.Grant and are never shown to the agent.
//
//	signer, caLine, _ := sshca.GenerateCA() // caLine goes into the target's TrustedUserCAKeys file
//	ca, _ := sshca.New(sshca.Config{CA: signer, Principals: map[spec.Access]string{spec.Read: "deploy"}})
//	cred, _ := ca.Issue(ctx, credentials.Request{GrantID: id, Access: spec.Read, Expires: deadline})
//
// A certificate is valid from 30 seconds before issue (clock skew) until the
// request's hard expiry, names exactly one principal (the login user
// configured for the access level), carries the key id "jitgate:<grant id>"
// and a random serial, and permits nothing beyond a command or shell: no
// agent, X11 or port forwarding, no pty, no user rc, unless the Config or the
// IssueWith options ask for them.
//
// Certificates stop working by themselves at ValidBefore. Revoke records the
// serial and, when Config.RevokedKeysFile is set, appends the certified public
// key to that file; sshd configured with "RevokedKeys <file>" then refuses the
// certificate at once (sshd reads the file at each authentication).
package sshca

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Skew is how far before issue a certificate becomes valid.
const Skew = 30 * time.Second

// LeasePrefix starts every lease id this source issues: "local:ssh:<serial>".
const LeasePrefix = "local:ssh:"

// Permissions are the certificate extensions a grant may need.
type Permissions struct {
	// PTY permits a pseudo-terminal (interactive shells).
	PTY bool
	// PortForwarding permits the target's sshd to forward ports for the
	// proxy (used only for grants with spec.Commands.PortForwarding).
	PortForwarding bool
}

// Config configures the CA.
type Config struct {
	// CA signs the certificates. Required. Its public key must be in the
	// target sshd's TrustedUserCAKeys.
	CA ssh.Signer
	// Principals maps an access level to the login user on the target. An
	// access level that is not mapped is refused with credentials.ErrNoRole.
	Principals map[spec.Access]string
	// Permissions apply to every certificate; IssueWith may add to them.
	Permissions Permissions
	// SourceAddresses, when set, become the certificate's source-address
	// critical option (CIDR list): only the proxy's hosts may use it.
	SourceAddresses []string
	// RevokedKeysFile, when set, is appended to by Revoke (one public key per
	// line, sshd's RevokedKeys text format).
	RevokedKeysFile string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// CA issues per-grant SSH certificates. It is safe for concurrent use.
type CA struct {
	cfg Config

	mu      sync.Mutex
	revoked map[uint64]time.Time // serial → ValidBefore
}

// New validates cfg.
func New(cfg Config) (*CA, error) {
	if cfg.CA == nil {
		return nil, errors.New("sshca: no CA signer")
	}
	for a, u := range cfg.Principals {
		if a == spec.AccessNone {
			return nil, fmt.Errorf("sshca: a principal for access level none")
		}
		if u == "" || strings.ContainsAny(u, ", \t\n*?") {
			return nil, fmt.Errorf("sshca: unusable principal %q for access %s", u, a)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &CA{cfg: cfg, revoked: map[uint64]time.Time{}}, nil
}

// Issue signs a certificate for req with the CA-wide permissions.
func (c *CA) Issue(ctx context.Context, req credentials.Request) (spec.Credential, error) {
	return c.IssueWith(ctx, req, Permissions{})
}

// IssueWith signs a certificate for req; p adds to the CA-wide permissions.
func (c *CA) IssueWith(ctx context.Context, req credentials.Request, p Permissions) (spec.Credential, error) {
	if err := ctx.Err(); err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: issue: %w", err)
	}
	now := c.cfg.Now()
	if err := req.Validate(now); err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: %w", err)
	}
	user, ok := c.cfg.Principals[req.Access]
	if !ok {
		return spec.Credential{}, fmt.Errorf("sshca: grant %s: access %s: %w", req.GrantID, req.Access, credentials.ErrNoRole)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: generate key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: public key: %w", err)
	}
	var sb [8]byte
	if _, err := rand.Read(sb[:]); err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: serial: %w", err)
	}
	serial := binary.BigEndian.Uint64(sb[:])
	ext := map[string]string{}
	if c.cfg.Permissions.PTY || p.PTY {
		ext["permit-pty"] = ""
	}
	if c.cfg.Permissions.PortForwarding || p.PortForwarding {
		ext["permit-port-forwarding"] = ""
	}
	crit := map[string]string{}
	if len(c.cfg.SourceAddresses) > 0 {
		crit["source-address"] = strings.Join(c.cfg.SourceAddresses, ",")
	}
	cert := &ssh.Certificate{
		Key:             sshPub,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           "jitgate:" + req.GrantID,
		ValidPrincipals: []string{user},
		ValidAfter:      uint64(now.Add(-Skew).Unix()),
		ValidBefore:     uint64(req.Expires.Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: crit, Extensions: ext},
	}
	if err := cert.SignCert(rand.Reader, c.cfg.CA); err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: sign: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "jitgate:"+req.GrantID)
	if err != nil {
		return spec.Credential{}, fmt.Errorf("sshca: marshal key: %w", err)
	}
	return spec.Credential{
		Username:    user,
		PrivateKey:  spec.WireSecret(pem.EncodeToMemory(block)),
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		LeaseID:     LeasePrefix + strconv.FormatUint(serial, 10),
		Expires:     time.Unix(int64(cert.ValidBefore), 0),
	}, nil
}

// Revoke records the certificate's serial as revoked and, when configured,
// appends its key to the RevokedKeysFile. It is idempotent.
func (c *CA) Revoke(ctx context.Context, cred spec.Credential) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sshca: revoke: %w", err)
	}
	serial, err := ParseLease(cred.LeaseID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, done := c.revoked[serial]; done {
		return nil
	}
	if c.cfg.RevokedKeysFile != "" && cred.Certificate != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cred.Certificate))
		if err != nil {
			return fmt.Errorf("sshca: revoke %s: certificate: %w", cred.LeaseID, err)
		}
		cert, ok := pub.(*ssh.Certificate)
		if !ok || cert.Serial != serial {
			return fmt.Errorf("sshca: revoke %s: certificate does not match the lease", cred.LeaseID)
		}
		f, err := os.OpenFile(c.cfg.RevokedKeysFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("sshca: revoke %s: %w", cred.LeaseID, err)
		}
		_, werr := f.Write(ssh.MarshalAuthorizedKey(cert.Key))
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return fmt.Errorf("sshca: revoke %s: %w", cred.LeaseID, err)
		}
	}
	c.revoked[serial] = cred.Expires
	// Forget serials whose certificates have expired anyway.
	now := c.cfg.Now()
	for s, exp := range c.revoked {
		if !exp.IsZero() && exp.Before(now.Add(-time.Hour)) {
			delete(c.revoked, s)
		}
	}
	return nil
}

// Revoked reports whether Revoke was called for the certificate with this
// serial (and it has not long expired).
func (c *CA) Revoked(serial uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.revoked[serial]
	return ok
}

// ParseLease returns the serial of a lease id issued by this package.
func ParseLease(lease string) (uint64, error) {
	s, ok := strings.CutPrefix(lease, LeasePrefix)
	if !ok {
		return 0, fmt.Errorf("sshca: lease %q was not issued by the SSH CA", lease)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sshca: lease %q: bad serial", lease)
	}
	return n, nil
}

// GenerateCA makes a new ed25519 CA key and returns it with its
// authorized_keys line (for sshd's TrustedUserCAKeys).
func GenerateCA() (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("sshca: generate CA: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("sshca: generate CA: %w", err)
	}
	return s, ssh.MarshalAuthorizedKey(s.PublicKey()), nil
}

// GenerateCAPEM makes a new ed25519 CA key as an OpenSSH PEM private key, for
// callers that keep the CA in a file; load it with LoadCA.
func GenerateCAPEM() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshca: generate CA: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "jitgate ssh ca")
	if err != nil {
		return nil, fmt.Errorf("sshca: generate CA: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// LoadCA parses an (unencrypted) OpenSSH or PKCS#8 private key as the CA.
func LoadCA(pemBytes []byte) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("sshca: load CA: %w", err)
	}
	return s, nil
}

// Signer turns a credential issued by this package (or any OpenSSH key plus
// certificate) into the signer an SSH client authenticates with.
func Signer(cred spec.Credential) (ssh.Signer, error) {
	key, err := ssh.ParsePrivateKey([]byte(cred.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("sshca: credential key: %w", err)
	}
	if cred.Certificate == "" {
		return key, nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cred.Certificate))
	if err != nil {
		return nil, fmt.Errorf("sshca: credential certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("sshca: credential certificate is a plain key")
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, fmt.Errorf("sshca: credential: %w", err)
	}
	return s, nil
}
