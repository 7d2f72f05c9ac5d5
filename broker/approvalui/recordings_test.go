package approvalui_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/jitgate/jitgate/broker/approvalui"
)

// fakeRecordings stands in for replayui: it has a recording for the grants it
// is told about and reports what Authorized said about each request.
type fakeRecordings struct {
	mu     sync.Mutex
	has    map[string]bool
	served []string
}

func (f *fakeRecordings) Has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.has[id]
}

func (f *fakeRecordings) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.served = append(f.served, r.URL.Path)
	f.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/static/") {
		fmt.Fprint(w, "player script")
		return
	}
	id := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]
	if err := approvalui.Authorized(r, id); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if approvalui.Authorized(r, id+"x") == nil {
		http.Error(w, "authorized for another grant", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "RECORDING OF %s at %s", id, r.URL.Path)
}

func TestReplayLinkAndAuthorization(t *testing.T) {
	t.Parallel()
	rec := &fakeRecordings{has: map[string]bool{}}
	e := newEnvRec(t, rec)
	g := e.request("test-db", insert, "needs a replay")
	alice := e.browser()
	alice.signIn(e.ui+"/", "alice", "dba")

	// No recording yet: no link.
	if d := alice.get(e.ui + "/grants/" + g.ID); d.status != 200 || strings.Contains(d.body, `id="replay"`) {
		t.Fatalf("grant page before any recording: %d, link shown: %v", d.status, strings.Contains(d.body, `id="replay"`))
	}
	rec.mu.Lock()
	rec.has[g.ID] = true
	rec.mu.Unlock()
	d := alice.get(e.ui + "/grants/" + g.ID)
	wantIn(t, "grant page", d.body, `<a class="button replay" id="replay" href="`+e.ui+`/recordings/`+g.ID+`">Replay recording</a>`)

	for _, path := range []string{"/recordings/" + g.ID, "/recordings/" + g.ID + "/casts/" + g.ID + ".conn1.ch0.cast"} {
		p := alice.get(e.ui + path)
		if p.status != 200 || !strings.Contains(p.body, "RECORDING OF "+g.ID+" at "+strings.TrimPrefix(path, "/recordings")) {
			t.Errorf("approver GET %s: %d %q", path, p.status, p.body)
		}
	}
	// The requester may see its own grant's recording.
	agent := e.browser()
	agent.signIn(e.ui+"/", "agent-1", "ai-agents")
	if p := agent.get(e.ui + "/recordings/" + g.ID); p.status != 200 || !strings.Contains(p.body, "RECORDING OF") {
		t.Errorf("requester: %d %q", p.status, p.body)
	}

	rec.mu.Lock()
	before := len(rec.served)
	rec.mu.Unlock()
	// Someone who may not see the grant, and a visitor who is not signed in,
	// never reach the recording.
	mallory := e.browser()
	mallory.signIn(e.ui+"/", "mallory", "devs")
	if p := mallory.get(e.ui + "/recordings/" + g.ID); p.status != http.StatusForbidden || strings.Contains(p.body, "RECORDING OF") {
		t.Errorf("non-approver: %d %q", p.status, p.body)
	}
	if p := mallory.get(e.ui + "/recordings/not-a-grant-id"); p.status != http.StatusNotFound || strings.Contains(p.body, "RECORDING OF") {
		t.Errorf("bad id: %d %q", p.status, p.body)
	}
	anon := e.browser()
	if p := anon.get(e.ui + "/recordings/" + g.ID); strings.Contains(p.body, "RECORDING OF") || !strings.Contains(p.body, "DEV ONLY sign-in") {
		t.Errorf("signed out: %d at %s, want the sign-in", p.status, p.url)
	}
	rec.mu.Lock()
	after := len(rec.served)
	rec.mu.Unlock()
	if after != before {
		t.Errorf("the recording handler was reached %d times by refused requests", after-before)
	}
	// The player's static files need no session.
	if p := anon.get(e.ui + "/recordings/static/asciinema-player.min.js"); p.status != 200 || p.body != "player script" {
		t.Errorf("static: %d %q", p.status, p.body)
	}
	// A request the page did not let through is not authorized.
	r, _ := http.NewRequest("GET", "/"+g.ID, nil)
	if err := approvalui.Authorized(r, g.ID); !errors.Is(err, approvalui.ErrNotAuthorized) {
		t.Errorf("Authorized on a bare request: %v", err)
	}
}
