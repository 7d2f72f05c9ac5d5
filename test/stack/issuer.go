package stack

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/identity/devissuer"
)

// Issuer is a test OIDC issuer (broker/identity/devissuer) served over
// HTTPS on loopback, as a real IdP would be: real discovery and JWKS, real
// RS256 tokens. A jitgate process trusts it through SSL_CERT_FILE=CAFile
// (Env). It stops when the test ends.
type Issuer struct {
	*devissuer.Issuer
	// URL is the issuer URL (https://127.0.0.1:port).
	URL string
	// CAFile is a PEM file with the server's certificate.
	CAFile string
}

// StartIssuer starts an Issuer and writes its CAFile into a test temp dir.
func StartIssuer(t testing.TB) *Issuer {
	t.Helper()
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(iss.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	iss.SetURL(ts.URL)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	WriteCert(t, caFile, ts.TLS)
	return &Issuer{Issuer: iss, URL: ts.URL, CAFile: caFile}
}

// WriteCert writes the certificates of a TLS server's config (an
// httptest.Server's TLS) to path as PEM, for SSL_CERT_FILE.
func WriteCert(t testing.TB, path string, cfg *tls.Config) {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range cfg.Certificates {
		for _, der := range c.Certificate {
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Env is what a jitgate process needs to trust the issuer.
func (i *Issuer) Env() []string { return []string{"SSL_CERT_FILE=" + i.CAFile} }

// Token signs a token for sub in groups with audience "jitgate".
func (i *Issuer) Token(t testing.TB, sub string, groups ...string) string {
	t.Helper()
	tok, err := i.Issuer.Token(sub, groups, "jitgate", nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TrustIn returns policy text pol with this issuer added first to its
// issuers list as "test" (audience jitgate, groups from the groups claim).
func (i *Issuer) TrustIn(pol string) string {
	return strings.Replace(pol, "issuers:\n", fmt.Sprintf("issuers:\n  - name: test\n    issuer: %s\n    audience: jitgate\n    groups_claim: groups\n", i.URL), 1)
}
