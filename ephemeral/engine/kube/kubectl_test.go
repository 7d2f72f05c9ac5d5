package kube_test

import (
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
