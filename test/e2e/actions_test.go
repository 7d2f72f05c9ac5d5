package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestGitHubActionsTokenDiscovery recreates the runner's environment: with no
// token given, the CLI asks ACTIONS_ID_TOKEN_REQUEST_URL (authenticated with
// ACTIONS_ID_TOKEN_REQUEST_TOKEN) for a token with the jitgate audience. The
// answering server is a stand-in for GitHub's token service that returns a
// test-issuer token carrying GitHub's claims.
func TestGitHubActionsTokenDiscovery(t *testing.T) {
	e := newEnv(t)
	tok, err := e.issuer.Token("repo:acme/shop:pull_request", []string{"ai-agents"}, "jitgate", map[string]any{
		"repository": "acme/shop", "event_name": "pull_request", "ref": "refs/pull/42/merge", "sha": "0123abc", "run_id": "7"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer runner-request-token" || r.URL.Query().Get("audience") != "jitgate" {
			http.Error(w, "bad request token or audience", 403)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"value": tok})
	}))
	defer gh.Close()
	e.cmdEnv = append(e.cmdEnv, "ACTIONS_ID_TOKEN_REQUEST_URL="+gh.URL+"/token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=runner-request-token")
	out, errOut, code := e.run("", "exec", "--target", "orders-db", "--format", "csv", "--sql", "SELECT item FROM orders WHERE id = 1")
	if code != 0 || !strings.Contains(out, "analytical engine") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if calls.Load() != 1 {
		t.Fatalf("token service called %d times, want 1", calls.Load())
	}
	// The grant carries the PR context for approvers and audit.
	_, body := e.api(tok, "GET", "/v1/grants", nil)
	g := body["grants"].([]any)[0].(map[string]any)
	claims := g["claims"].(map[string]any)
	if claims["repository"] != "acme/shop" || claims["ref"] != "refs/pull/42/merge" || claims["sha"] != "0123abc" {
		t.Fatalf("grant claims %v", claims)
	}
}
