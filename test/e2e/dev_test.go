package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/shopdb"
	"github.com/jitgate/jitgate/test/stack"
)

// TestDevStack runs `jitgate dev` with its embedded DEV-ONLY issuer: a token
// from `jitgate dev token` reads orders, and `policy check` agrees offline.
func TestDevStack(t *testing.T) {
	pg := stack.StartShop(t)
	dir := t.TempDir()
	policyPath := writePolicy(t, dir, shopdb.PolicyFor(pg.Addr()))
	dev := serve(t, policyPath, filepath.Join(dir, "data"), []string{"SHOP_ADMIN_DSN=" + pg.AdminDSN("postgres")}, "dev")
	envv, logs := dev.env, dev.logs
	if !strings.Contains(logs.String(), "DEV ONLY") {
		t.Errorf("jitgate dev does not mark its issuer DEV ONLY:\n%s", logs.String())
	}
	tokCmd := exec.Command(jitgateBin, "dev", "token", "--sub", "agent-1", "--groups", "ai-agents")
	tokCmd.Env = envv
	tok, err := tokCmd.Output()
	if err != nil {
		t.Fatalf("dev token: %v\n%s", err, logs.String())
	}
	run := exec.Command(jitgateBin, "exec", "--target", "orders-db", "--format", "csv", "--sql", "SELECT item FROM orders WHERE id = 3")
	run.Env = append(envv, "JITGATE_TOKEN="+strings.TrimSpace(string(tok)))
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bombe") {
		t.Fatalf("exec through jitgate dev: %v\n%s\n%s", err, out, logs.String())
	}

	// policy check: the same decision offline, as JSON; exit 2 on a broken file.
	chk := exec.Command(jitgateBin, "policy", "check", "--policy", policyPath, "--target", "orders-db", "--groups", "ai-agents", "--sql", "DELETE FROM orders WHERE id = 1")
	out, err = chk.Output()
	if err != nil {
		t.Fatalf("policy check: %v", err)
	}
	for _, want := range []string{`"effect": "deny"`, `"class": "write"`, `"kind": "DELETE"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("policy check output lacks %s:\n%s", want, out)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("version: 1\ntargets:\n  - name: x\n    kind: postgres\n    adress: 1\n"), 0o600)
	chk = exec.Command(jitgateBin, "policy", "check", "--policy", bad)
	out, err = chk.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "bad.yaml:5") {
		t.Fatalf("broken policy: err %v, output %s; want exit 2 naming bad.yaml:5", err, out)
	}
}
