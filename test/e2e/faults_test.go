package e2e

import (
	"strings"
	"testing"
)

// TestTargetDown: a target that cannot be reached gives a clear error, the grant
// ends failed (not active), and the credential minted for it is revoked.
func TestTargetDown(t *testing.T) {
	e := newEnv(t)
	agent := e.token("agent-3", "ai-agents")
	_, errOut, code := e.run(agent, "exec", "--target", "down-db", "--sql", "SELECT 1")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	if !strings.Contains(errOut, "connect") && !strings.Contains(errOut, "refused") {
		t.Errorf("error does not say the target is unreachable: %s", errOut)
	}
	_, body := e.api(agent, "GET", "/v1/grants", nil)
	gs := body["grants"].([]any)
	if len(gs) != 1 {
		t.Fatalf("want one grant, got %v", gs)
	}
	g := gs[0].(map[string]any)
	if g["state"] != "failed" {
		t.Errorf("grant state %v, want failed", g["state"])
	}
	if g["credential_revoked"] != true {
		t.Errorf("credential not revoked: %v", g)
	}
	if roles := e.perGrantRoles(); len(roles) != 0 {
		t.Errorf("roles left behind: %v", roles)
	}
}
