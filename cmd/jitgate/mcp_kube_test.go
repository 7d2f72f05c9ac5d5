package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/kubetest"
)

// kubePolicy is a kube target on the kubetest double: namespace shop, pods
// web-*, exec allowed, tar not (no copy_files), cards masked.
func kubePolicy(t *testing.T, k *kubetest.Server) string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "k8s-ca.pem")
	if err := os.WriteFile(ca, []byte(k.CAPEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`version: 1
targets:
  - name: shop-k8s
    kind: kube
    address: %s
    ca: "file:%s"
    namespace: shop
    pods: ["web-*"]
    exec: true
    masking: {detectors: [credit_card]}
    credentials: {source: local, token: env:SHOP_K8S_TOKEN}
rules:
  - name: agents-exec
    when: '"ai-agents" in identity.groups'
    targets: [shop-k8s]
    access: read
`, k.Addr(), ca)
}

// TestMCPKube: kubectl_exec sends the API's kube operation; the command runs
// in the pod (the double runs it for real), the output comes back masked, and
// what the grant does not cover is denied by the broker before anything
// reaches the API server.
func TestMCPKube(t *testing.T) {
	t.Parallel()
	k := kubetest.Start(t)
	if err := os.WriteFile(filepath.Join(k.Dir(), "notes.txt"), []byte("card 4111 1111 1111 1111\nowner: ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDevPolicy(t, kubePolicy(t, k), "SHOP_K8S_TOKEN="+k.Token())
	agent := d.token("agent-1", "ai-agents")
	cs := connectMCP(t, mcpConfig{Broker: d.broker, Tokens: staticToken(agent), Policy: d.pol}, nil)

	out, res, raw := call[outcome](t, cs, toolKubectlExec, map[string]any{"target": "shop-k8s", "namespace": "shop", "pod": "web-1",
		"container": "app", "command": []string{"cat", "notes.txt"}, "reason": "r"}, nil)
	if res.IsError || out.State != "ok" || !strings.Contains(out.Output, "owner: ops") || out.Tag != "exit 0" {
		t.Fatalf("%s", raw)
	}
	if strings.Contains(strings.ReplaceAll(raw, " ", ""), "4111111111111111") {
		t.Fatalf("card reached the model: %s", raw)
	}
	before := len(k.Requests())
	for _, tc := range []struct {
		args   map[string]any
		reason string
	}{
		{map[string]any{"namespace": "shop", "pod": "web-1", "command": []string{"sh", "-c", "rm -rf notes.txt"}}, "command refused: rm is denied by default"},
		{map[string]any{"namespace": "shop", "pod": "web-1", "command": []string{"env", "rm", "notes.txt"}}, "command refused: rm is denied by default"},
		{map[string]any{"namespace": "shop", "pod": "web-1", "command": []string{"tar", "cf", "-", "."}}, "command refused: tar is on the grant's deny list"},
		{map[string]any{"namespace": "other", "pod": "x-1", "command": []string{"ls"}}, "namespace other is not covered by target shop-k8s"},
		{map[string]any{"namespace": "shop", "pod": "db-1", "command": []string{"ls"}}, `pod "db-1" is not covered`},
	} {
		tc.args["target"], tc.args["reason"] = "shop-k8s", "r"
		out, res, raw := call[outcome](t, cs, toolKubectlExec, tc.args, nil)
		if !res.IsError || out.State != "denied" || !strings.Contains(strings.Join(out.Reasons, "; "), tc.reason) {
			t.Errorf("%v: %s", tc.args, raw)
		}
	}
	if after := k.Requests(); len(after) != before {
		t.Errorf("denied operations reached the API server: %+v", after[before:])
	}
	if _, err := os.Stat(filepath.Join(k.Dir(), "notes.txt")); err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	// A malformed operation is the broker's 400, reported as bad_request.
	out, _, raw = call[outcome](t, cs, toolKubectlExec, map[string]any{"target": "shop-k8s", "namespace": "shop", "pod": "web-1", "command": []string{""}, "reason": "r"}, nil)
	if out.State != "bad_request" {
		t.Errorf("%s", raw)
	}
}
