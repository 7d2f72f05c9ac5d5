package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/kube"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/vaulttest"
)

const saToken = "eyJhbGciOiJSUzI1NiJ9.kube-test-token.sig"

func startVault(t *testing.T) *vaulttest.Server {
	t.Helper()
	return vaulttest.Start(t, vaulttest.Config{Kubernetes: &vaulttest.KubernetesConfig{
		Roles: map[string][]string{"shop-exec": {"shop"}, "other": {"billing"}},
		Token: func(role, ns string) (string, error) { return saToken + "." + role + "." + ns, nil },
	}})
}

func vaultSource(t *testing.T, srv *vaulttest.Server, roles map[spec.Access]string) *kube.Source {
	t.Helper()
	src, err := kube.New(kube.Config{Client: srv.Client(), Target: "shop-k8s", Namespace: "shop", Roles: roles})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func request(ttl time.Duration) credentials.Request {
	return credentials.Request{GrantID: "g_kube1", Access: spec.Read, Expires: time.Now().Add(ttl)}
}

// TestVaultIssueRevoke: a grant gets a service account token from Vault's
// Kubernetes secrets engine whose lease ends with the grant, and revoking the
// lease ends the token (the double records the revocation).
func TestVaultIssueRevoke(t *testing.T) {
	t.Parallel()
	srv := startVault(t)
	src := vaultSource(t, srv, map[spec.Access]string{spec.Read: "shop-exec"})
	ctx := context.Background()
	req := request(10 * time.Minute)
	cred, err := src.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	tok := string(cred.Token)
	if tok != saToken+".shop-exec.shop" {
		t.Errorf("token %q, want the engine's token for role shop-exec in namespace shop", tok)
	}
	if !strings.HasPrefix(cred.LeaseID, "kubernetes/creds/shop-exec/") {
		t.Errorf("lease %q, want kubernetes/creds/shop-exec/...", cred.LeaseID)
	}
	if cred.Username != "system:serviceaccount:shop:jitgate-exec" {
		t.Errorf("username %q", cred.Username)
	}
	// The ttl asked for is the grant's: the lease does not outlive it.
	if cred.Expires.After(req.Expires) || cred.Expires.Before(req.Expires.Add(-time.Minute)) {
		t.Errorf("expires %s, want about the grant's %s", cred.Expires, req.Expires)
	}
	if got := srv.KubeLeases(); len(got) != 1 || got[0] != cred.LeaseID {
		t.Errorf("leases %v", got)
	}
	if err := src.Revoke(ctx, cred); err != nil {
		t.Fatal(err)
	}
	if got := srv.KubeLeases(); len(got) != 0 || !srv.KubeTokenRevoked(tok) {
		t.Errorf("after revoke: leases %v, token revoked %v", got, srv.KubeTokenRevoked(tok))
	}
	if err := src.Revoke(ctx, cred); err != nil {
		t.Errorf("second revoke: %v", err)
	}
	var creds, revokes int
	for _, c := range srv.Calls() {
		switch {
		case c.Path == "/v1/kubernetes/creds/shop-exec" && c.Status == 200:
			creds++
		case strings.HasPrefix(c.Path, "/v1/sys/leases/revoke") && c.Status == 204:
			revokes++
		}
	}
	if creds != 1 || revokes != 2 {
		t.Errorf("calls: %d creds, %d revokes; want 1 and 2: %+v", creds, revokes, srv.Calls())
	}
}

func TestVaultErrors(t *testing.T) {
	t.Parallel()
	srv := startVault(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		roles map[spec.Access]string
		want  error
		text  string
	}{
		{"unknown role", map[spec.Access]string{spec.Read: "nope"}, credentials.ErrNoRole, "role 'nope' does not exist"},
		{"namespace not allowed", map[spec.Access]string{spec.Read: "other"}, credentials.ErrNoRole, "allowed_kubernetes_namespaces"},
		{"no role for the level", map[spec.Access]string{spec.Write: "shop-exec"}, credentials.ErrNoRole, "no Vault role is configured for read access"},
	} {
		_, err := vaultSource(t, srv, tc.roles).Issue(ctx, request(time.Minute))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err = %v, want %v containing %q", tc.name, err, tc.want, tc.text)
		}
	}
	if n := len(srv.KubeLeases()); n != 0 {
		t.Errorf("%d leases left after failed issues", n)
	}

	// A wrong Vault token is the broker's own credential refused: ErrDenied.
	bad := srv.Client()
	bad.SetToken("hvs.wrong")
	src, err := kube.New(kube.Config{Client: bad, Target: "shop-k8s", Namespace: "shop", Roles: map[spec.Access]string{spec.Read: "shop-exec"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Issue(ctx, request(time.Minute)); !errors.Is(err, credentials.ErrDenied) {
		t.Errorf("wrong token: err = %v, want ErrDenied", err)
	}

	// A sealed Vault is a temporary failure: ErrUnavailable, for issue and revoke.
	good := vaultSource(t, srv, map[spec.Access]string{spec.Read: "shop-exec"})
	cred, err := good.Issue(ctx, request(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	if _, err := good.Issue(ctx, request(time.Minute)); !errors.Is(err, credentials.ErrUnavailable) {
		t.Errorf("sealed issue: err = %v, want ErrUnavailable", err)
	}
	if err := good.Revoke(ctx, cred); !errors.Is(err, credentials.ErrUnavailable) {
		t.Errorf("sealed revoke: err = %v, want ErrUnavailable", err)
	}
	srv.SetDown(false)
	if err := good.Revoke(ctx, cred); err != nil {
		t.Errorf("revoke after unseal: %v", err)
	}
	// A lease from another mount is not this source's to revoke.
	if err := good.Revoke(ctx, spec.Credential{LeaseID: "database/creds/x/1"}); err == nil || !strings.Contains(err.Error(), "is not under mount") {
		t.Errorf("foreign lease: err = %v", err)
	}
}

func TestStatic(t *testing.T) {
	t.Parallel()
	src, err := kube.New(kube.Config{Target: "shop-k8s", Static: spec.NewSecret(saToken)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := request(5 * time.Minute)
	cred, err := src.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if string(cred.Token) != saToken || cred.LeaseID != "static:shop-k8s" || !cred.Expires.Equal(req.Expires) {
		t.Errorf("credential %+v", credentials.Redacted(cred))
	}
	if err := src.Revoke(ctx, cred); err != nil {
		t.Errorf("revoke: %v", err)
	}
	if err := src.Revoke(ctx, spec.Credential{LeaseID: "static:other"}); err == nil {
		t.Error("revoked another target's lease")
	}
	if _, err := src.Issue(ctx, credentials.Request{GrantID: "g", Access: spec.Read, Expires: time.Now().Add(-time.Second)}); err == nil {
		t.Error("issued for an expired request")
	}
	// The token never prints.
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", cred, cred, src, src), mustJSON(t, credentials.Redacted(cred))} {
		if strings.Contains(s, saToken) {
			t.Errorf("token printed: %s", s)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	srv := startVault(t)
	roles := map[spec.Access]string{spec.Read: "shop-exec"}
	for _, tc := range []struct {
		name string
		cfg  kube.Config
		want string
	}{
		{"neither", kube.Config{Target: "t"}, "set Client (Vault) or Static"},
		{"both", kube.Config{Target: "t", Client: srv.Client(), Static: spec.NewSecret("x"), Namespace: "shop", Roles: roles}, "set only one of Client and Static"},
		{"no target", kube.Config{Static: spec.NewSecret("x")}, "Target"},
		{"bad namespace", kube.Config{Target: "t", Client: srv.Client(), Namespace: "Shop", Roles: roles}, "not a Kubernetes namespace name"},
		{"no roles", kube.Config{Target: "t", Client: srv.Client(), Namespace: "shop"}, "Roles is empty"},
		{"dot mount", kube.Config{Target: "t", Client: srv.Client(), Namespace: "shop", Roles: roles, Mount: "kubernetes/.."}, "Mount"},
		{"role traversal", kube.Config{Target: "t", Client: srv.Client(), Namespace: "shop", Roles: map[spec.Access]string{spec.Read: ".."}}, "role"},
		{"token with newline", kube.Config{Target: "t", Static: spec.NewSecret("abc\nHost: evil")}, "white space"},
	} {
		if _, err := kube.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestRealVault runs issue and revoke against a real Vault whose Kubernetes
// secrets engine is already configured against a cluster (none can run here).
func TestRealVault(t *testing.T) {
	mount, role, ns := os.Getenv("JITGATE_TEST_VAULT_KUBE_MOUNT"), os.Getenv("JITGATE_TEST_VAULT_KUBE_ROLE"), os.Getenv("JITGATE_TEST_VAULT_KUBE_NAMESPACE")
	if os.Getenv("VAULT_ADDR") == "" || os.Getenv("VAULT_TOKEN") == "" || mount == "" || role == "" || ns == "" {
		t.Skip("real Vault Kubernetes engine skipped: set VAULT_ADDR, VAULT_TOKEN and JITGATE_TEST_VAULT_KUBE_MOUNT, _ROLE, _NAMESPACE (an engine configured against a cluster) to run it")
	}
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	src, err := kube.New(kube.Config{Client: client, Target: "real", Namespace: ns, Mount: mount, Roles: map[spec.Access]string{spec.Read: role}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cred, err := src.Issue(ctx, request(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Token == "" || !strings.HasPrefix(cred.LeaseID, mount+"/creds/"+role+"/") {
		t.Errorf("credential %v", credentials.Redacted(cred))
	}
	if err := src.Revoke(ctx, cred); err != nil {
		t.Fatal(err)
	}
	if err := src.Revoke(ctx, cred); err != nil {
		t.Errorf("second revoke: %v", err)
	}
}
