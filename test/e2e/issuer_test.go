package e2e

import (
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

// startTLSIssuer serves a test OIDC issuer over HTTPS (trust its certificate
// with writeCert + SSL_CERT_FILE).
func startTLSIssuer(t *testing.T) (*devissuer.Issuer, *httptest.Server) {
	t.Helper()
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(iss.Handler())
	t.Cleanup(ts.Close)
	iss.SetURL(ts.URL)
	return iss, ts
}

func ssh_authorized(s ssh.Signer) []byte { return ssh.MarshalAuthorizedKey(s.PublicKey()) }
