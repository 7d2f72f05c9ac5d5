package policy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// testCA returns a self-signed CA certificate as PEM.
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kube-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

const kubeHead = `version: 1
issuers:
  - {name: gh, issuer: https://token.actions.githubusercontent.com, audience: jitgate}
targets:
`

const kubeRules = `rules:
  - {name: r, when: "true", targets: [k8s], access: read}
`

// indent puts every line of s under a YAML block scalar at depth n.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
}

func TestKubeTargetLoads(t *testing.T) {
	t.Parallel()
	ca := testCA(t)
	src := kubeHead + `  - name: k8s
    kind: kube
    address: 10.0.0.1:6443
    server_name: kubernetes.default
    ca: |
` + indent(ca, 6) + `
    namespace: shop
    pods: ["web-*", api-0]
    containers: [app]
    exec: true
    copy_files: true
    commands: {allow: [ls, cat], deny: [curl]}
    masking: {detectors: [credit_card]}
    credentials: {source: local, token: env:K8S_TOKEN}
` + kubeRules
	p, err := policy.Parse("k.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := p.Target("k8s")
	st := tg.SpecTarget()
	if st.Protocol != spec.Kube || st.Address != "10.0.0.1:6443" || st.ServerName != "kubernetes.default" || strings.TrimSpace(st.CA) != strings.TrimSpace(ca) {
		t.Errorf("SpecTarget = %+v", st)
	}
	g := tg.SpecGuard(spec.Read)
	want := spec.KubeScope{Namespace: "shop", Pods: []string{"web-*", "api-0"}, Containers: []string{"app"}, Exec: true, CopyFiles: true}
	if !reflect.DeepEqual(g.Kube, want) {
		t.Errorf("SpecGuard.Kube = %+v, want %+v", g.Kube, want)
	}
	// copy_files is on: tar is not added to the deny list.
	if !reflect.DeepEqual(g.Commands, spec.Commands{Allow: []string{"ls", "cat"}, Deny: []string{"curl"}}) {
		t.Errorf("SpecGuard.Commands = %+v", g.Commands)
	}
	if tg.Credentials.Source != policy.SourceLocal || tg.Credentials.Token != "env:K8S_TOKEN" {
		t.Errorf("credentials = %+v", tg.Credentials)
	}
	// The grant's copy is its own: changing it leaves the policy alone.
	g.Kube.Pods[0] = "*"
	if tg.SpecGuard(spec.Read).Kube.Pods[0] != "web-*" {
		t.Error("SpecGuard shares the pods slice with the policy")
	}
}

func TestKubeCAFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testCA(t)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(ca), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := func(caRef string) string {
		return kubeHead + `  - name: k8s
    kind: kube
    address: 10.0.0.1:6443
    ca: ` + caRef + `
    namespace: shop
    credentials: {source: vault, vault_mount: kubernetes, vault_roles: {read: shop-exec}}
` + kubeRules
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A relative path is relative to the policy file.
	p, err := policy.Load(write("ok.yaml", target("file:ca.pem")))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := p.Target("k8s")
	if tg.SpecTarget().CA != ca || tg.Credentials.Role(spec.Read) != "shop-exec" {
		t.Errorf("CA or role not loaded: %+v", tg.Kube)
	}
	// Without copy_files, tar (kubectl cp) is denied wherever it appears.
	if got := tg.SpecGuard(spec.Read).Commands.Deny; !reflect.DeepEqual(got, []string{"tar"}) {
		t.Errorf("Commands.Deny = %v, want [tar]", got)
	}
	for _, tc := range []struct{ name, ref, want string }{
		{"missing", "file:nope.pem", `:8:9: target "k8s": ca: open ` + filepath.Join(dir, "nope.pem") + `: no such file or directory`},
		{"not pem", "file:bad.pem", `:8:9: target "k8s": ca ` + filepath.Join(dir, "bad.pem") + `: not a PEM certificate bundle`},
	} {
		f := write(tc.name+".yaml", target(tc.ref))
		_, err := policy.Load(f)
		if err == nil || err.Error() != f+tc.want {
			t.Errorf("%s: err = %v, want %s%s", tc.name, err, f, tc.want)
		}
	}
	// Parse has no file access: a file reference is refused, never dropped
	// (an empty CA would mean the system roots).
	_, err = policy.Parse("mem.yaml", []byte(target("file:ca.pem")))
	if want := `mem.yaml:8:9: target "k8s": ca file:ca.pem: this policy was parsed without file access; give the PEM inline`; err == nil || err.Error() != want {
		t.Errorf("Parse err = %v, want %s", err, want)
	}
}

func TestKubeTargetErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, target, rules, want string }{
		{"namespace missing", `  - {name: k8s, kind: kube, address: "h:6443", credentials: {source: local, token: env:T}}`, kubeRules,
			`k.yaml:5:5: target "k8s": namespace is required`},
		{"namespace bad", `  - {name: k8s, kind: kube, address: "h:6443", namespace: Shop_1, credentials: {source: local, token: env:T}}`, kubeRules,
			`k.yaml:5:59: target "k8s": namespace "Shop_1": want a Kubernetes namespace name (lowercase letters, digits and -, at most 63)`},
		{"pod glob", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, pods: ["web["], credentials: {source: local, token: env:T}}`, kubeRules,
			`k.yaml:5:72: target "k8s": pods entry "web[": want a name or a glob (* ? [...]) over lowercase names`},
		{"ca env", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, ca: env:CA, credentials: {source: local, token: env:T}}`, kubeRules,
			`k.yaml:5:69: target "k8s": ca: want file:PATH or the PEM inline (a CA bundle is not a secret; env: is not read here)`},
		{"ca garbage", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, ca: "-----BEGIN CERTIFICATE-----", credentials: {source: local, token: env:T}}`, kubeRules,
			`k.yaml:5:69: target "k8s": ca: not a PEM certificate bundle`},
		{"no credentials", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop}`, kubeRules,
			`k.yaml:5:5: target "k8s": credentials are required for a kube target (source local with token: env:NAME or file:PATH, or source vault with vault_mount and vault_roles)`},
		{"literal token", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, credentials: {source: local, token: eyJhbGciOi}}`, kubeRules,
			`k.yaml:5:78: target "k8s" credentials: token must be a reference (env:NAME or file:PATH), not a literal`},
		{"no token", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, credentials: {source: local}}`, kubeRules,
			`k.yaml:5:78: target "k8s" credentials: token (env:NAME or file:PATH) is required for a kube target with source local`},
		{"vault without roles", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, credentials: {source: vault, vault_mount: kubernetes}}`, kubeRules,
			"k.yaml:5:78: target \"k8s\" credentials: vault_roles is required for source vault\n" +
				`k.yaml:7:53: rule "r": grants read on target "k8s", which has no vault_roles.read`},
		{"kv on kube", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, credentials: {source: local, token: env:T, kv_path: a, kv_field: b}}`, kubeRules,
			`k.yaml:5:78: target "k8s" credentials: kv_path and kv_field are only for http targets`},
		{"ssh-only command switch", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, commands: {interactive: true}, credentials: {source: local, token: env:T}}`, kubeRules,
			`k.yaml:5:76: unknown field "interactive" in target "k8s" commands (known: allow, deny)`},
		{"kube key on postgres", `  - {name: k8s, kind: postgres, address: "h:5432", database: shop, namespace: shop, credentials: {source: local, admin_dsn: env:D, read_role: r}}`, kubeRules,
			`k.yaml:5:79: target "k8s": namespace is only for kube targets`},
		{"vault role missing for access", `  - {name: k8s, kind: kube, address: "h:6443", namespace: shop, credentials: {source: vault, vault_mount: kubernetes, vault_roles: {read: r}}}`,
			"rules:\n  - {name: w, when: \"true\", targets: [k8s], access: write}\n",
			`k.yaml:7:53: rule "w": grants write on target "k8s", which has no vault_roles.write`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Parse("k.yaml", []byte(kubeHead+tc.target+"\n"+tc.rules))
			if err == nil || err.Error() != tc.want {
				t.Errorf("err:\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestMatchKubeScope(t *testing.T) {
	t.Parallel()
	s := spec.KubeScope{Namespace: "shop", Pods: []string{"web-*"}, Containers: []string{"app", "side?"}}
	for _, tc := range []struct {
		pod, container string
		ok             bool
		reason         string
	}{
		{"web-1", "app", true, ""},
		{"web-1", "side1", true, ""},
		{"web-1", "", false, `name the container: the target limits containers to [app side?]`},
		{"db-0", "app", false, `pod "db-0" is not covered by the target's pods [web-*]`},
		{"web-1", "debug", false, `container "debug" is not covered by the target's containers [app side?]`},
		{"", "app", false, "no pod named"},
	} {
		ok, reason := policy.MatchKubeScope(s, tc.pod, tc.container)
		if ok != tc.ok || reason != tc.reason {
			t.Errorf("MatchKubeScope(%q, %q) = %v %q, want %v %q", tc.pod, tc.container, ok, reason, tc.ok, tc.reason)
		}
	}
	if ok, _ := policy.MatchKubeScope(spec.KubeScope{Namespace: "shop"}, "anything", ""); !ok {
		t.Error("an unrestricted scope refused a pod")
	}
}

// FuzzKubeTarget: whatever the namespace, globs and ca hold, Parse does not
// panic, and a policy that loads carries a namespace Kubernetes accepts and a
// CA that is either empty (system roots, only when none was given) or PEM.
func FuzzKubeTarget(f *testing.F) {
	f.Add("shop", "web-*", "-----BEGIN CERTIFICATE-----")
	f.Add("Shop", "[", "file:x")
	f.Add("a-b", "*", "")
	f.Fuzz(func(t *testing.T, ns, glob, ca string) {
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		src := kubeHead + "  - {name: k8s, kind: kube, address: \"h:6443\", namespace: " + q(ns) + ", pods: [" + q(glob) + "], ca: " + q(ca) +
			", credentials: {source: local, token: env:T}}\n" + kubeRules
		p, err := policy.Parse("f.yaml", []byte(src))
		if err != nil {
			return
		}
		tg, _ := p.Target("k8s")
		g := tg.SpecGuard(spec.Read)
		if len(g.Kube.Namespace) == 0 || len(g.Kube.Namespace) > 63 || strings.ToLower(g.Kube.Namespace) != g.Kube.Namespace {
			t.Fatalf("namespace %q loaded", g.Kube.Namespace)
		}
		if ca != "" && !strings.Contains(tg.SpecTarget().CA, "-----BEGIN CERTIFICATE-----") {
			t.Fatalf("ca %q loaded as %q", ca, tg.SpecTarget().CA)
		}
	})
}
