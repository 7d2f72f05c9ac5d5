package vaultauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/functions/internal/vaultauth"
)

var creds = credentials.NewStaticCredentialsProvider("AKIAFUNCTIONROLE", "role-secret-key", "session-token-of-the-role")

// vaultAWSAuth answers auth/aws/login as Vault does, after checking what
// Vault checks before it replays the request to STS: the method, URL and
// body, the server-id header (signed), and a valid SigV4 signature over them.
type vaultAWSAuth struct {
	t        *testing.T
	serverID string
	role     string
	logins   int
}

func (v *vaultAWSAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
	}
	if r.URL.Path != "/v1/auth/aws/login" || r.Method != http.MethodPut && r.Method != http.MethodPost {
		fail(404, "")
		return
	}
	if r.Header.Get("X-Vault-Token") != "" {
		fail(400, "login must not carry a token")
		return
	}
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fail(400, err.Error())
		return
	}
	if body["role"] != v.role {
		fail(400, "entry for role "+body["role"]+" not found")
		return
	}
	u, _ := base64.StdEncoding.DecodeString(body["iam_request_url"])
	b, _ := base64.StdEncoding.DecodeString(body["iam_request_body"])
	hdr, err := vaultauth.ParseHeaders(body["iam_request_headers"])
	if err != nil || body["iam_http_request_method"] != "POST" || string(u) != vaultauth.DefaultSTSURL || string(b) != "Action=GetCallerIdentity&Version=2011-06-15" {
		fail(400, "not a GetCallerIdentity request")
		return
	}
	if hdr.Get(vaultauth.ServerIDHeader) != v.serverID || !strings.Contains(strings.ToLower(hdr.Get("Authorization")), strings.ToLower(vaultauth.ServerIDHeader)) {
		fail(400, "expected IAM server ID header to be signed")
		return
	}
	// Re-sign the same request at the same time; the signatures must agree.
	req, _ := http.NewRequest(http.MethodPost, string(u), strings.NewReader(string(b)))
	for k, vs := range hdr {
		if k != "Authorization" {
			req.Header[k] = vs
		}
	}
	at, err := time.Parse("20060102T150405Z", hdr.Get("X-Amz-Date"))
	if err != nil {
		fail(400, "no X-Amz-Date")
		return
	}
	c, _ := creds.Retrieve(context.Background())
	sum := sha256.Sum256(b)
	if err := v4.NewSigner().SignHTTP(context.Background(), c, req, hex.EncodeToString(sum[:]), "sts", "us-east-1", at); err != nil || req.Header.Get("Authorization") != hdr.Get("Authorization") {
		fail(403, "signature does not match")
		return
	}
	v.logins++
	_ = json.NewEncoder(w).Encode(map[string]any{
		"request_id": "1", "lease_id": "", "renewable": false, "lease_duration": 0, "data": nil, "wrap_info": nil, "warnings": nil,
		"auth": map[string]any{"client_token": "hvs.from-aws-login", "accessor": "a", "policies": []string{"jitgate-api"},
			"lease_duration": 900, "renewable": true, "metadata": map[string]string{"role": v.role}},
	})
}

func client(t *testing.T, h http.Handler) *vaultapi.Client {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	cfg := vaultapi.DefaultConfig()
	cfg.Address, cfg.MaxRetries = hs.URL, 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("hvs.stale-token-that-must-not-be-sent")
	return c
}

func TestLoginWithTheFunctionsRole(t *testing.T) {
	t.Parallel()
	v := &vaultAWSAuth{t: t, serverID: "vault.example.com", role: "jitgate-api"}
	c := client(t, v)
	secret, err := vaultauth.Login(t.Context(), c, creds, vaultauth.Config{Role: "jitgate-api", ServerID: "vault.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Token() != "hvs.from-aws-login" || secret.Auth.LeaseDuration != 900 || v.logins != 1 {
		t.Errorf("token %q lease %d logins %d", c.Token(), secret.Auth.LeaseDuration, v.logins)
	}
}

func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		creds aws.CredentialsProvider
		cfg   vaultauth.Config
		want  string
	}{
		{"unknown role", creds, vaultauth.Config{Role: "admin", ServerID: "vault.example.com"}, "entry for role admin not found"},
		{"no server id", creds, vaultauth.Config{Role: "jitgate-api"}, "server ID header"},
		{"other server id", creds, vaultauth.Config{Role: "jitgate-api", ServerID: "vault.attacker.example"}, "server ID header"},
		{"wrong key", credentials.NewStaticCredentialsProvider("AKIAFUNCTIONROLE", "not-the-key", "session-token-of-the-role"),
			vaultauth.Config{Role: "jitgate-api", ServerID: "vault.example.com"}, "signature does not match"},
		{"no role", creds, vaultauth.Config{ServerID: "vault.example.com"}, "Role is required"},
	}
	for _, tc := range tests {
		v := &vaultAWSAuth{t: t, serverID: "vault.example.com", role: "jitgate-api"}
		c := client(t, v)
		_, err := vaultauth.Login(t.Context(), c, tc.creds, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if c.Token() != "hvs.stale-token-that-must-not-be-sent" {
			t.Errorf("%s: a failed login changed the client's token", tc.name)
		}
	}
}

// TestLoginDataHoldsNoSecretKey: what goes to Vault is a signature, never
// the role's secret key.
func TestLoginDataHoldsNoSecretKey(t *testing.T) {
	t.Parallel()
	data, err := vaultauth.LoginData(t.Context(), creds, vaultauth.Config{Role: "r", ServerID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(data)
	hdr, _ := vaultauth.ParseHeaders(data["iam_request_headers"].(string))
	if strings.Contains(string(b), "role-secret-key") || strings.Contains(hdr.Get("Authorization"), "role-secret-key") {
		t.Error("the login carries the secret access key")
	}
	if hdr.Get("X-Amz-Security-Token") != "session-token-of-the-role" || !strings.HasPrefix(hdr.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIAFUNCTIONROLE/") {
		t.Errorf("headers %v", hdr)
	}
}
