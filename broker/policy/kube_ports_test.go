package policy_test

import (
	"reflect"
	"testing"

	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestKubePortsLoad(t *testing.T) {
	t.Parallel()
	src := kubeHead + `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, port_forward: true, ports: [8080, 5432], credentials: {source: local, token: env:T}}
` + kubeRules
	p, err := policy.Parse("k.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := p.Target("k8s")
	g := tg.SpecGuard(spec.Read)
	want := spec.KubeScope{Namespace: "shop", PortForward: true, Ports: []int{8080, 5432}}
	if !reflect.DeepEqual(g.Kube, want) {
		t.Errorf("SpecGuard.Kube = %+v, want %+v", g.Kube, want)
	}
	g.Kube.Ports[0] = 1
	if again := tg.SpecGuard(spec.Read); again.Kube.Ports[0] != 8080 {
		t.Errorf("SpecGuard shares its Ports slice with the policy")
	}
}

func TestKubePortsErrors(t *testing.T) {
	t.Parallel()
	const head = `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, `
	const creds = `, credentials: {source: local, token: env:T}}`
	for _, tc := range []struct{ name, fields, want string }{
		{"port_forward without ports", `port_forward: true`,
			`k.yaml:5:79: target "k8s": port_forward needs ports: the pod ports it may reach (e.g. ports: [8080])`},
		{"ports without port_forward", `ports: [8080]`,
			`k.yaml:5:72: target "k8s": ports are only for port_forward: true`},
		{"empty list", `port_forward: true, ports: []`,
			`k.yaml:5:92: target "k8s": ports must be a non-empty list of port numbers, got a list`},
		{"not a list", `port_forward: true, ports: 8080`,
			`k.yaml:5:92: target "k8s": ports must be a non-empty list of port numbers, got int "8080"`},
		{"zero", `port_forward: true, ports: [0]`,
			`k.yaml:5:93: target "k8s": ports entry 0: want a port number (1-65535)`},
		{"too large", `port_forward: true, ports: [8080, 65536]`,
			`k.yaml:5:99: target "k8s": ports entry 65536: want a port number (1-65535)`},
		{"string", `port_forward: true, ports: ["8080"]`,
			`k.yaml:5:93: target "k8s": ports entry "8080": want a port number (1-65535)`},
		{"name", `port_forward: true, ports: [http]`,
			`k.yaml:5:93: target "k8s": ports entry "http": want a port number (1-65535)`},
		{"duplicate", `port_forward: true, ports: [8080, 8080]`,
			`k.yaml:5:99: target "k8s": port 8080 is listed twice (first at line 5)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Parse("k.yaml", []byte(kubeHead+head+tc.fields+creds+"\n"+kubeRules))
			if err == nil || err.Error() != tc.want {
				t.Errorf("err:\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
	// ports on another kind is refused as a kube-only key.
	src := kubeHead + `  - {name: pg, kind: postgres, address: "h:5432", database: shop, ports: [1], credentials: {source: local, admin_dsn: env:D, read_role: r}}
rules:
  - {name: r, when: "true", targets: [pg], access: read}
`
	if _, err := policy.Parse("k.yaml", []byte(src)); err == nil || !contains(err.Error(), `target "pg": ports is only for kube targets`) {
		t.Errorf("ports on a postgres target: %v", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}
