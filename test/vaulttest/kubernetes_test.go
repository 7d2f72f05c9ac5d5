package vaulttest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/vaulttest"
)

// TestKubernetesCreds checks the double's Kubernetes secrets engine against
// Vault's documented envelope and error bodies.
func TestKubernetesCreds(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t, vaulttest.Config{Kubernetes: &vaulttest.KubernetesConfig{
		Roles: map[string][]string{"exec": {"shop"}, "any": {"*"}},
		Token: func(role, ns string) (string, error) { return "tok-" + role + "-" + ns, nil },
	}})
	do := func(method, path, body, token string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.Addr()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("X-Vault-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	st, m := do("POST", "/v1/kubernetes/creds/exec", `{"kubernetes_namespace":"shop","ttl":"90s"}`, srv.Token)
	if st != 200 {
		t.Fatalf("status %d: %v", st, m)
	}
	data, _ := m["data"].(map[string]any)
	lease, _ := m["lease_id"].(string)
	if data["service_account_token"] != "tok-exec-shop" || data["service_account_namespace"] != "shop" || data["service_account_name"] != "jitgate-exec" ||
		!strings.HasPrefix(lease, "kubernetes/creds/exec/") || m["lease_duration"] != float64(90) || m["renewable"] != false {
		t.Errorf("envelope %v", m)
	}
	for _, k := range []string{"request_id", "wrap_info", "warnings", "auth"} {
		if _, ok := m[k]; !ok {
			t.Errorf("envelope has no %s", k)
		}
	}
	for _, tc := range []struct {
		method, path, body, token string
		status                    int
		msg                       string
	}{
		{"POST", "/v1/kubernetes/creds/nope", `{"kubernetes_namespace":"shop"}`, srv.Token, 400, "role 'nope' does not exist"},
		{"POST", "/v1/kubernetes/creds/exec", `{}`, srv.Token, 400, "'kubernetes_namespace' is required"},
		{"POST", "/v1/kubernetes/creds/exec", `{"kubernetes_namespace":"kube-system"}`, srv.Token, 400, "kubernetes_namespace 'kube-system' is not present in role's allowed_kubernetes_namespaces"},
		{"GET", "/v1/kubernetes/creds/exec", ``, srv.Token, 405, "unsupported operation"},
		{"POST", "/v1/kubernetes/creds/exec", `{"kubernetes_namespace":"shop"}`, "hvs.wrong", 403, "permission denied"},
	} {
		st, m := do(tc.method, tc.path, tc.body, tc.token)
		errs, _ := m["errors"].([]any)
		if st != tc.status || len(errs) != 1 || errs[0] != tc.msg {
			t.Errorf("%s %s %s: %d %v, want %d %q", tc.method, tc.path, tc.body, st, m, tc.status, tc.msg)
		}
	}
	if st, _ := do("POST", "/v1/kubernetes/creds/any", `{"kubernetes_namespace":"billing"}`, srv.Token); st != 200 {
		t.Errorf("role with * refused namespace billing: %d", st)
	}
	if st, _ := do("PUT", "/v1/sys/leases/revoke", `{"lease_id":"`+lease+`"}`, srv.Token); st != 204 {
		t.Errorf("revoke: %d", st)
	}
	if !srv.KubeTokenRevoked("tok-exec-shop") {
		t.Error("token not reported revoked")
	}
	if got := srv.KubeLeases(); len(got) != 1 {
		t.Errorf("leases %v, want the any-role lease only", got)
	}
}
