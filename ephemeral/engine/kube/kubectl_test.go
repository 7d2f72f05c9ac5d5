package kube_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKubectlGetPods(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	r := p.kubectl(t, nil, "", "get", "pods", "-n", "shop")
	if r.code != 0 || !strings.Contains(r.out, "web-1") || !strings.Contains(r.out, "db-1") {
		t.Fatalf("kubectl get pods: %s", r)
	}
	if strings.Contains(r.out, "x-1") {
		t.Fatalf("pod of another namespace listed: %s", r)
	}
}

func TestKubectlExecMasked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		want string // upgrade header the proxy received from kubectl
	}{
		{"websocket", nil, "websocket"},
		{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}, "SPDY/3.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, opts{scope: defaultScope()})
			p.plant(t, "orders.txt", "order 1 paid with "+card+"\n")
			r := p.kubectl(t, tc.env, "", "exec", "-n", "shop", "web-1", "-c", "app", "--", "cat", "orders.txt")
			if r.code != 0 || !strings.Contains(r.out, "order 1 paid with") {
				t.Fatalf("kubectl exec: %s", r)
			}
			if strings.Contains(r.out, card) {
				t.Fatalf("card number not masked: %s", r)
			}
		})
	}
}

// TestKubectlRefusals: each refused kubectl command shows the proxy's reason
// and its refused request never reaches the API server.
func TestKubectlRefusals(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	p.plant(t, "x", "keep me\n")
	for _, tc := range []struct {
		name    string
		args    []string
		want    string // in kubectl's stderr
		neverUp string // no upstream request contains this
	}{
		{"rm", []string{"exec", "-n", "shop", "web-1", "-c", "app", "--", "rm", "-rf", "x"}, "jitgate: blocked by policy", "command=rm"},
		{"sh -c rm", []string{"exec", "-n", "shop", "web-1", "-c", "app", "--", "sh", "-c", "rm -rf x"}, "jitgate: blocked by policy", "command=sh"},
		{"env rm", []string{"exec", "-n", "shop", "web-1", "-c", "app", "--", "env", "rm", "x"}, "jitgate: blocked by policy", "command=env"},
		{"other namespace", []string{"exec", "-n", "other", "x-1", "--", "ls"}, "jitgate: namespace other is not covered by this grant", "/namespaces/other"},
		{"attach", []string{"attach", "-n", "shop", "web-1", "-c", "app"}, "jitgate: attach is not allowed by this grant", "/attach"},
		{"port-forward", []string{"port-forward", "-n", "shop", "pod/web-1", "18080:80"}, "jitgate: port-forward is not allowed by this grant", "/portforward"},
		{"cp", []string{"cp", "shop/web-1:x", t.TempDir() + "/x", "-c", "app"}, "jitgate: copying files (kubectl cp, tar) is not allowed by this grant", "command=tar"},
		{"get secrets", []string{"get", "secrets", "-n", "shop"}, "jitgate: resource secrets is not allowed", "/secrets"},
		{"get pods -A", []string{"get", "pods", "-A"}, "jitgate: listing pods across all namespaces is not allowed", "/api/v1/pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := p.kubectl(t, nil, "", tc.args...)
			t.Log(r)
			if r.code == 0 || !strings.Contains(r.err, tc.want) {
				t.Fatalf("want refusal %q, got %s", tc.want, r)
			}
			if p.upstreamSaw(tc.neverUp) {
				t.Fatalf("refused request reached the API server (%q): %+v", tc.neverUp, p.up.Requests())
			}
		})
	}
	if _, err := os.Stat(filepath.Join(p.up.Dir(), "x")); err != nil {
		t.Fatalf("the file a refused rm named is gone: %v", err)
	}
}

func TestKubectlWrongToken(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	r := p.kubectl(t, nil, "not-the-secret", "get", "pods", "-n", "shop")
	if r.code == 0 || !strings.Contains(r.err, "Unauthorized") && !strings.Contains(r.err, "provide credentials") {
		t.Fatalf("want 401, got %s", r)
	}
	if n := len(p.up.Requests()); n != 0 {
		t.Fatalf("unauthenticated requests reached the API server: %+v", p.up.Requests())
	}
}

// TestKubectlGetPodsFilteredByGlobs: with pod globs, a list shows only the
// matching pods and a get of another pod is refused.
func TestKubectlGetPodsFilteredByGlobs(t *testing.T) {
	t.Parallel()
	scope := defaultScope()
	scope.Pods = []string{"web-*"}
	p := startProxy(t, opts{scope: scope})
	for _, args := range [][]string{{"get", "pods", "-n", "shop"}, {"get", "pods", "-n", "shop", "-o", "name"}} {
		r := p.kubectl(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.out, "web-1") || !strings.Contains(r.out, "web-2") || strings.Contains(r.out, "db-1") {
			t.Fatalf("kubectl %v: want web-1 and web-2 only: %s", args, r)
		}
	}
	r := p.kubectl(t, nil, "", "get", "pod", "db-1", "-n", "shop")
	if r.code == 0 || !strings.Contains(r.err, "jitgate: pod db-1 is not covered by this grant") {
		t.Fatalf("get of a pod outside the globs: %s", r)
	}
}
