package postgres

import (
	"crypto/rand"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

const scramMechanism = "SCRAM-SHA-256"

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramAuth verifies clients against the grant's client secret with SCRAM-SHA-256.
// Only the derived StoredKey/ServerKey are kept; proof checks are constant time
// (hmac.Equal inside xdg-go/scram).
type scramAuth struct {
	server *scram.Server
}

func newScramAuth(secret spec.Secret) (*scramAuth, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("postgres: scram salt: %w", err)
	}
	client, err := scram.SHA256.NewClient("", secret.Reveal(), "")
	if err != nil {
		// Like PostgreSQL: a password SASLprep rejects is used as raw bytes.
		client, err = scram.SHA256.NewClientUnprepped("", secret.Reveal(), "")
		if err != nil {
			return nil, fmt.Errorf("postgres: scram: %w", err)
		}
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: scramIterations})
	if err != nil {
		return nil, fmt.Errorf("postgres: scram: %w", err)
	}
	// PostgreSQL clients send an empty SCRAM user name (the startup message carries
	// it), so every lookup answers with the grant's one credential.
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return nil, fmt.Errorf("postgres: scram: %w", err)
	}
	return &scramAuth{server: srv}, nil
}

// errAuthFailed is the one reason a client ever learns for a failed login.
var errAuthFailed = fmt.Errorf("postgres: password authentication failed")

// authenticate runs the SCRAM exchange on a client that sent its StartupMessage.
// It returns errAuthFailed (wrapped) for a wrong secret and other errors for
// protocol violations; either way the caller sends FATAL 28P01 and closes.
func (c *conn) authenticate() error {
	conv := c.e.auth.server.NewConversation()
	if err := c.cw.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}}); err != nil {
		return err
	}
	if err := c.cw.flush(); err != nil {
		return err
	}
	var first pgproto3.SASLInitialResponse
	if err := c.readAuth(&first); err != nil {
		return err
	}
	if first.AuthMechanism != scramMechanism {
		return fmt.Errorf("postgres: auth: unsupported mechanism %q", first.AuthMechanism)
	}
	out, err := conv.Step(string(first.Data))
	if err != nil {
		return fmt.Errorf("%w: %v", errAuthFailed, err)
	}
	if err := c.cw.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(out)}); err != nil {
		return err
	}
	if err := c.cw.flush(); err != nil {
		return err
	}
	var final pgproto3.SASLResponse
	if err := c.readAuth(&final); err != nil {
		return err
	}
	out, err = conv.Step(string(final.Data))
	if err != nil || !conv.Valid() {
		return fmt.Errorf("%w: %v", errAuthFailed, err)
	}
	if err := c.cw.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(out)}); err != nil {
		return err
	}
	return c.cw.send(&pgproto3.AuthenticationOk{})
}

// maxAuthMsg bounds SASL messages (PostgreSQL's own limit is similar).
const maxAuthMsg = 8 << 10

func (c *conn) readAuth(m pgproto3.FrontendMessage) error {
	t, body, err := c.cr.next()
	if err != nil {
		return fmt.Errorf("postgres: auth: %w", err)
	}
	if t != 'p' {
		return fmt.Errorf("postgres: auth: expected a password message, got %q", t)
	}
	if len(body) > maxAuthMsg {
		return fmt.Errorf("postgres: auth: message too large")
	}
	if err := m.Decode(body); err != nil {
		return fmt.Errorf("postgres: auth: %w", err)
	}
	return nil
}
