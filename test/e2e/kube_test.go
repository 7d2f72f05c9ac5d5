package e2e

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/test/kubetest"
	"github.com/jitgate/jitgate/test/stack"
	"github.com/jitgate/jitgate/test/vaulttest"
)

// TestKube: an agent reaches a Kubernetes API server (the kubetest double,
// which runs exec commands for real) only through jitgate: the real kubectl
// through a session grant (`jitgate connect -- kubectl ...`, over WebSocket and
// SPDY), and exec mode (`jitgate exec --pod`). The service account token comes
// from Vault's Kubernetes secrets engine (the vaulttest double) and is revoked
// when the grant ends; output is masked; rm in its disguises is refused and
// never reaches the API server; the recordings verify.
func TestKube(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH; the Kubernetes end-to-end test needs the real client")
	}
	k := kubetest.Start(t)
	notes := filepath.Join(k.Dir(), "notes.txt")
	if err := os.WriteFile(notes, []byte("customer card 4111 1111 1111 1111\nowner: ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vault := vaulttest.Start(t, vaulttest.Config{Kubernetes: &vaulttest.KubernetesConfig{
		Roles: map[string][]string{"shop-exec": {"shop"}},
		Token: func(role, ns string) (string, error) { return k.Token(), nil },
	}})

	iss, ts := startTLSIssuer(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k8s-ca.pem"), []byte(k.CAPEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	policyText := fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %s, audience: jitgate}
targets:
  - name: shop-k8s
    kind: kube
    address: %s
    ca: file:k8s-ca.pem
    namespace: shop
    exec: true
    masking: {detectors: [credit_card]}
    credentials: {source: vault, vault_mount: kubernetes, vault_roles: {read: shop-exec}}
rules:
  - name: agents-exec
    when: '"ai-agents" in identity.groups'
    targets: [shop-k8s]
    access: read
`, ts.URL, k.Addr())
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	writeCert(t, filepath.Join(dir, "ca.pem"), ts.TLS)
	listen := freeAddr(t)
	dataDir := filepath.Join(dir, "data")
	envv := append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(dir, "ca.pem"), "JITGATE_BROKER=http://"+listen,
		"VAULT_ADDR="+vault.Addr(), "VAULT_TOKEN="+vault.Token, "HOME="+dir)
	startJitgate(t, envv, "broker", "serve", "--policy", policyPath, "--listen", listen, "--data-dir", dataDir, "--log-level", "warn")
	waitHealthy(t, "http://"+listen+"/healthz")
	tok, err := iss.Token("agent-1", []string{"ai-agents"}, "jitgate", nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(extraEnv []string, args ...string) (string, string, int) {
		c := exec.Command(jitgateBin, args...)
		c.Env = append(append(append([]string{}, envv...), extraEnv...), "JITGATE_TOKEN="+tok)
		var out, errb strings.Builder
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run jitgate %v: %v", args, err)
		}
		return out.String(), errb.String(), code
	}
	unmasked := func(s string) bool { return strings.Contains(strings.ReplaceAll(s, " ", ""), "4111111111111111") }
	grantRE := regexp.MustCompile(`(?:session|grant) (g_[A-Za-z0-9_]+)`)
	var grants []string

	// Session mode: kubectl lists the namespace's pods through the proxy.
	out, errOut, code := run(nil, "connect", "--target", "shop-k8s", "--", kubectl, "get", "pods", "-n", "shop", "-o", "name")
	if code != 0 || !strings.Contains(out, "pod/web-1") || !strings.Contains(out, "pod/db-1") {
		t.Fatalf("kubectl get pods: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if m := grantRE.FindStringSubmatch(errOut); m != nil {
		grants = append(grants, m[1])
	} else {
		t.Fatalf("no grant id in %q", errOut)
	}
	// kubectl exec over both transports; the card comes back masked.
	for _, transport := range []struct {
		name, notice string
		env          []string
	}{{"websocket", "websocket v5.channel.k8s.io", nil}, {"spdy", "spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}}} {
		out, errOut, code := run(transport.env, "connect", "--target", "shop-k8s", "--", kubectl, "exec", "web-1", "-c", "app", "--", "cat", "notes.txt")
		if code != 0 || !strings.Contains(out, "owner: ops") || !strings.Contains(out, "customer card") {
			t.Fatalf("kubectl exec over %s: exit %d\nstdout %s\nstderr %s", transport.name, code, out, errOut)
		}
		if unmasked(out) {
			t.Fatalf("kubectl exec over %s: the card number was not masked:\n%s", transport.name, out)
		}
		m := grantRE.FindStringSubmatch(errOut)
		if m == nil {
			t.Fatalf("no grant id in %q", errOut)
		}
		grants = append(grants, m[1])
		// The recording names the transport kubectl used towards the proxy.
		var replay string
		for end := time.Now().Add(20 * time.Second); ; {
			replay, errOut, code = run(nil, "replay", m[1], "--data-dir", dataDir)
			if code == 0 || time.Now().After(end) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 0 || !strings.Contains(replay, transport.notice) || unmasked(replay) {
			t.Errorf("replay of the %s session: exit %d, want %q in\n%s%s", transport.name, code, transport.notice, replay, errOut)
		}
		// The exec stream is also an asciicast v2 file, masked.
		var casts []string
		_ = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), m[1]) && strings.HasSuffix(d.Name(), ".cast") {
				casts = append(casts, p)
			}
			return nil
		})
		if len(casts) != 1 {
			t.Fatalf("%s session: asciicast files %v, want one", transport.name, casts)
		}
		cast, err := os.ReadFile(casts[0])
		if err != nil || !strings.HasPrefix(string(cast), `{"version":2`) || !strings.Contains(string(cast), "owner: ops") || unmasked(string(cast)) {
			t.Errorf("%s session asciicast %s: %v\n%s", transport.name, casts[0], err, cast)
		}
	}
	upgrades := map[string]bool{}
	for _, r := range k.Requests() {
		if strings.HasSuffix(r.Path, "/exec") {
			upgrades[strings.ToLower(r.Upgrade)] = true
		}
	}
	if !upgrades["spdy/3.1"] {
		t.Errorf("no SPDY exec reached the API server: %v", upgrades)
	}

	// rm in its disguises: refused by the proxy, never seen by the API server.
	before := len(k.Requests())
	for _, attack := range [][]string{
		{"rm", "-rf", "notes.txt"},
		{"sh", "-c", "rm -rf notes.txt"},
		{"bash", "-c", "ls && rm notes.txt"},
		{"sh", "-c", "echo $(rm notes.txt)"},
		{"env", "rm", "notes.txt"},
		{"/bin/rm", "notes.txt"},
		{"sh", "-c", "echo rm notes.txt | sh"},
	} {
		args := append([]string{"connect", "--target", "shop-k8s", "--quiet", "--", kubectl, "exec", "web-1", "-c", "app", "--"}, attack...)
		_, errOut, code := run(nil, args...)
		if code == 0 || !strings.Contains(errOut, "jitgate:") {
			t.Errorf("session %q: exit %d, stderr %s; want a refusal from jitgate", attack, code, errOut)
		}
		_, errOut, code = run(nil, append([]string{"exec", "--target", "shop-k8s", "--pod", "shop/web-1/app", "--"}, attack...)...)
		if code != 3 || !strings.Contains(errOut, "refused") {
			t.Errorf("exec %q: exit %d, stderr %s; want exit 3 (refused)", attack, code, errOut)
		}
	}
	for _, r := range k.Requests()[before:] {
		if strings.HasSuffix(r.Path, "/exec") {
			t.Errorf("a refused exec reached the API server: %+v", r)
		}
	}
	if _, err := os.Stat(notes); err != nil {
		t.Fatalf("the canary file is gone: %v", err)
	}

	// Exec mode: one command under its own grant, output masked.
	out, errOut, code = run(nil, "exec", "--target", "shop-k8s", "--pod", "shop/web-1/app", "--", "cat", "notes.txt")
	if code != 0 || !strings.Contains(out, "owner: ops") || unmasked(out) {
		t.Fatalf("jitgate exec --pod: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if m := grantRE.FindStringSubmatch(errOut); m != nil {
		grants = append(grants, m[1])
	} else {
		t.Fatalf("no grant id in %q", errOut)
	}
	// Outside the namespace: denied by the broker.
	_, errOut, code = run(nil, "exec", "--target", "shop-k8s", "--pod", "other/x-1", "--", "ls")
	if code != 3 || !strings.Contains(errOut, "namespace other is not covered") {
		t.Errorf("other namespace: exit %d, stderr %s", code, errOut)
	}

	// Every service account token Vault issued was revoked with its grant.
	deadline := time.Now().Add(20 * time.Second)
	for len(vault.KubeLeases()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := vault.KubeLeases(); len(left) > 0 {
		t.Errorf("leases not revoked after the grants ended: %v", left)
	}
	var issued, revoked int
	for _, c := range vault.Calls() {
		switch {
		case c.Path == "/v1/kubernetes/creds/shop-exec" && c.Status == 200:
			issued++
		case strings.HasPrefix(c.Path, "/v1/sys/leases/revoke") && c.Status == 204:
			revoked++
		}
	}
	if issued == 0 || revoked < issued || !vault.KubeTokenRevoked(k.Token()) {
		t.Errorf("vault: %d tokens issued, %d revocations", issued, revoked)
	}

	// The recordings exist and verify.
	for _, id := range grants {
		var out, errOut string
		var code int
		for end := time.Now().Add(20 * time.Second); ; {
			out, errOut, code = run(nil, "recording", "verify", id, "--data-dir", dataDir)
			if code == 0 || time.Now().After(end) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 0 {
			t.Errorf("recording verify %s: exit %d\n%s%s", id, code, out, errOut)
		}
	}
}

// TestKubeAttachAndPortForward: a target with attach and port_forward (ports
// [8080]) through the real binary and the real kubectl: kubectl attach -i
// shows the running container's card number masked; kubectl port-forward
// carries an HTTP GET and the stream is recorded; a port outside the grant
// and both switches on a target without them are refused, never reaching the
// API server.
func TestKubeAttachAndPortForward(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH; the Kubernetes end-to-end test needs the real client")
	}
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from web-1")
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = web.Serve(webLn) }()
	t.Cleanup(func() { _ = web.Close() })
	k := kubetest.StartPods(t, []kubetest.Pod{
		{Namespace: "shop", Name: "web-1", Containers: []string{"app"},
			Run:   []string{"sh", "-c", "echo order paid with 4111 1111 1111 1111; cat"},
			Ports: map[int]string{8080: webLn.Addr().String(), 9090: webLn.Addr().String()}},
	})
	iss, ts := startTLSIssuer(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k8s-ca.pem"), []byte(k.CAPEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	policyText := fmt.Sprintf(`version: 1
issuers:
  - {name: test, issuer: %[1]s, audience: jitgate}
targets:
  - name: shop-streams
    kind: kube
    address: %[2]s
    ca: file:k8s-ca.pem
    namespace: shop
    attach: true
    port_forward: true
    ports: [8080]
    masking: {detectors: [credit_card]}
    credentials: {source: local, token: env:K8S_TOKEN}
  - name: shop-plain
    kind: kube
    address: %[2]s
    ca: file:k8s-ca.pem
    namespace: shop
    exec: true
    credentials: {source: local, token: env:K8S_TOKEN}
rules:
  - name: agents
    when: '"ai-agents" in identity.groups'
    targets: [shop-streams, shop-plain]
    access: read
`, ts.URL, k.Addr())
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	writeCert(t, filepath.Join(dir, "ca.pem"), ts.TLS)
	listen := freeAddr(t)
	dataDir := filepath.Join(dir, "data")
	envv := append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(dir, "ca.pem"), "JITGATE_BROKER=http://"+listen,
		"K8S_TOKEN="+k.Token(), "HOME="+dir)
	startJitgate(t, envv, "broker", "serve", "--policy", policyPath, "--listen", listen, "--data-dir", dataDir, "--log-level", "warn")
	waitHealthy(t, "http://"+listen+"/healthz")
	tok, err := iss.Token("agent-1", []string{"ai-agents"}, "jitgate", nil)
	if err != nil {
		t.Fatal(err)
	}
	cmdEnv := append(append([]string{}, envv...), "JITGATE_TOKEN="+tok)
	run := func(stdin string, args ...string) (string, string, int) {
		out, errOut, code, err := stack.Run(jitgateBin, cmdEnv, stdin, args...)
		if err != nil {
			t.Fatalf("run jitgate %v: %v", args, err)
		}
		return out, errOut, code
	}
	unmasked := func(s string) bool { return strings.Contains(strings.ReplaceAll(s, " ", ""), "4111111111111111") }

	// attach -i: the container's output masked, the input echoed back.
	out, errOut, code := run("typed by the agent\n", "connect", "--target", "shop-streams", "--", kubectl, "attach", "-i", "web-1", "-c", "app")
	if code != 0 || !strings.Contains(out, "order paid with") || !strings.Contains(out, "typed by the agent") || unmasked(out) {
		t.Fatalf("kubectl attach: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}

	// port-forward: an HTTP GET through it, recorded per stream.
	pf := stack.StartProcess(t, stack.ProcessConfig{Bin: jitgateBin, Env: cmdEnv,
		Args: []string{"connect", "--target", "shop-streams", "--", kubectl, "port-forward", "--address", "127.0.0.1", "pod/web-1", ":8080"}})
	fwd := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 8080`)
	var local string
	for end := time.Now().Add(30 * time.Second); local == "" && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if m := fwd.FindStringSubmatch(pf.Logs.String()); m != nil {
			local = m[1]
		}
	}
	if local == "" {
		t.Fatalf("kubectl port-forward did not start:\n%s", pf.Logs.String())
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}).Get("http://" + local + "/")
	if err != nil {
		t.Fatalf("GET through the port-forward: %v\n%s", err, pf.Logs.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from web-1" {
		t.Fatalf("GET through the port-forward: %q", body)
	}
	pf.Stop()
	grant := regexp.MustCompile(`(?:session|grant) (g_[A-Za-z0-9_]+)`).FindStringSubmatch(pf.Logs.String())
	if grant == nil {
		t.Fatalf("no grant id in the port-forward's output:\n%s", pf.Logs.String())
	}
	var replay string
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		replay, errOut, code = run("", "replay", grant[1], "--data-dir", dataDir)
		if code == 0 && regexp.MustCompile(`\]\s+port 8080\n`).MatchString(replay) || time.Now().After(end) {
			break
		}
	}
	// The stream's result event and its asciicast (replay plays what came
	// from the pod).
	if !regexp.MustCompile(`\]\s+port 8080\n`).MatchString(replay) || !strings.Contains(replay, "portforward1.port8080.cast") ||
		!strings.Contains(replay, "hello from web-1") {
		t.Errorf("replay of the port-forward: exit %d, want the stream event and payload in\n%s%s", code, replay, errOut)
	}

	// A port outside the grant, and both switches off: refused.
	pf9090 := stack.StartProcess(t, stack.ProcessConfig{Bin: jitgateBin, Env: cmdEnv,
		Args: []string{"connect", "--target", "shop-streams", "--", kubectl, "port-forward", "--address", "127.0.0.1", "pod/web-1", ":9090"}})
	fwd9090 := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 9090`)
	local = ""
	for end := time.Now().Add(30 * time.Second); local == "" && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if m := fwd9090.FindStringSubmatch(pf9090.Logs.String()); m != nil {
			local = m[1]
		}
	}
	if local == "" {
		t.Fatalf("kubectl port-forward :9090 did not start:\n%s", pf9090.Logs.String())
	}
	if resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}).Get("http://" + local + "/"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) == "hello from web-1" {
			t.Fatalf("a port outside the grant was forwarded")
		}
	}
	const refused9090 = "jitgate: port 9090 is not covered by this grant (ports 8080)"
	for end := time.Now().Add(20 * time.Second); !strings.Contains(pf9090.Logs.String(), refused9090) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(pf9090.Logs.String(), refused9090) {
		t.Errorf("port 9090: want %q in\n%s", refused9090, pf9090.Logs.String())
	}
	pf9090.Stop()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attach", "web-1", "-c", "app"}, "jitgate: attach is not allowed by this grant (when allowed, what is typed into an attached container is recorded, not filtered)"},
		{[]string{"port-forward", "pod/web-1", ":8080"}, "jitgate: port-forward is not allowed by this grant"},
	} {
		_, errOut, code := run("", append([]string{"connect", "--target", "shop-plain", "--", kubectl}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("kubectl %v on shop-plain: exit %d, want %q in\n%s", tc.args, code, tc.want, errOut)
		}
	}
	attaches := 0
	for _, r := range k.Requests() {
		if strings.HasSuffix(r.Path, "/attach") {
			attaches++
		}
	}
	if attaches != 1 {
		t.Errorf("attach requests upstream: %d, want the one allowed", attaches)
	}
}
