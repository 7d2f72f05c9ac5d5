package vaulttest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/vaulttest"
)

// countingMinter stands in for the real minter so the fuzzer runs without
// PostgreSQL; the property under test is the double's access control.
type countingMinter struct{ issued atomic.Int64 }

func (m *countingMinter) Issue(_ context.Context, req credentials.Request) (spec.Credential, error) {
	m.issued.Add(1)
	return spec.Credential{Username: "u_" + req.GrantID, Password: "PLANTED-PASSWORD", LeaseID: "x", Expires: req.Expires}, nil
}

func (m *countingMinter) Revoke(context.Context, spec.Credential) error { return nil }

// FuzzServeHTTP: whatever the method, path, headers and body, a request without
// the root token never mints a credential, never sees a password, and every
// answer is JSON (or empty) with Vault's status codes.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range [][4]string{
		{"GET", "/v1/database/creds/shop_read", "", ""},
		{"PUT", "/v1/sys/wrapping/unwrap", "hvs.x", `{"token":"hvs.y"}`},
		{"GET", "/v1/database/creds/../creds/shop_read", "", ""},
		{"POST", "/v1/sys/leases/revoke-prefix/database", "", `{}`},
		{"GET", "/v1/sys/health", "", ""},
		{"GET", "/v1//database/creds/shop_read", "Bearer x", "null"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	m := &countingMinter{}
	srv := vaulttest.Start(f, vaulttest.Config{Minter: m, Roles: map[string]spec.Access{"shop_read": spec.Read}})
	f.Fuzz(func(t *testing.T, method, path, token, body string) {
		if token == srv.Token {
			return
		}
		req, err := http.NewRequest(method, "http://vault"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		if token != "" {
			req.Header.Set("X-Vault-Token", token)
			req.Header.Set("Authorization", token)
		}
		req.Header.Set("X-Vault-Wrap-TTL", "60")
		before := m.issued.Load()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if m.issued.Load() != before {
			t.Fatalf("%s %q without the root token minted a credential (status %d)", method, path, rec.Code)
		}
		out := rec.Body.String()
		if strings.Contains(out, "PLANTED") {
			t.Fatalf("%s %q without the root token got a password: %s", method, path, out)
		}
		switch rec.Code {
		case 200:
			if req.URL.Path != "/v1/sys/health" {
				t.Fatalf("%s %q without the root token: 200 %s", method, path, out)
			}
		case 400, 403, 404, 405, 503:
		default:
			t.Fatalf("%s %q: unexpected status %d", method, path, rec.Code)
		}
		if out != "" && !json.Valid([]byte(out)) {
			t.Fatalf("%s %q: body is not JSON: %q", method, path, out)
		}
	})
}
