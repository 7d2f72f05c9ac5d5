package browser

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jitgate/jitgate/test/shopdb"
)

const selectCards = "SELECT name, card_number, email FROM users ORDER BY id"

// grantOn returns the id of tok's one ended grant on target.
func (s *stack) grantOn(tok, target string) string {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", s.base+"/v1/grants", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var body struct {
				Grants []struct {
					ID     string `json:"id"`
					Target string `json:"target"`
					State  string `json:"state"`
				} `json:"grants"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			for _, g := range body.Grants {
				if g.Target == target && g.State == "ended" {
					return g.ID
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("no ended grant on %s appeared", target)
	return ""
}

// TestReplayPageInChromium: an agent reads card numbers through a masked
// read grant; signed in on the approval page, it follows "Replay recording"
// from its grant and sees the statement, the verified banner and the masked
// rows as a table, never a card number. Someone who may not see the grant is
// refused the recording.
func TestReplayPageInChromium(t *testing.T) {
	s := startStack(t)
	agent := s.agentToken()
	out, err := s.jitgate(agent, "exec", "--target", "orders-db", "--sql", selectCards, "--reason", "replay page test").CombinedOutput()
	if err != nil {
		t.Fatalf("exec: %v\n%s", err, out)
	}
	for _, c := range shopdb.Cards {
		if strings.Contains(string(out), c) {
			t.Fatalf("exec printed the card %q unmasked:\n%s", c, out)
		}
	}
	id := s.grantOn(agent, "orders-db")

	b := newBrowser(t)
	signIn(t, b, s.base+"/ui/grants/"+id, "agent-1", "ai-agents")
	step(t, b, "grant page with its replay link", chromedp.WaitVisible("#replay"))
	if st := click(t, b, "#replay"); st != 200 {
		t.Fatalf("open replay: status %d", st)
	}
	step(t, b, "replay page", chromedp.WaitVisible("#verification"))
	banner := run(t, b, "banner", chromedp.Text("#verification"))
	wantText(t, "verification banner", banner, "Verified:", "complete, signed by ed25519:")
	sql := run(t, b, "statement", chromedp.Text("tr.ev-query .sql"))
	if sql != selectCards {
		t.Errorf("recorded statement %q, want %q", sql, selectCards)
	}
	table := run(t, b, "rows", chromedp.Text("table.rows"))
	wantText(t, "rows table", table, "name", "card_number", "email", "Ada Lovelace", "Alan Turing")
	page := run(t, b, "page text", chromedp.Text("body"))
	for _, secret := range append(append([]string{}, shopdb.Cards...), shopdb.Emails...) {
		if strings.Contains(page, secret) {
			t.Errorf("the replay page shows %q unmasked", secret)
		}
	}
	if url := run(t, b, "url", chromedp.Location()); url != s.base+"/ui/recordings/"+id {
		t.Errorf("replay page at %s", url)
	}
	screenshot(t, b, t.ArtifactDir(), "replay.png")

	// Someone who may not see the grant gets no recording.
	m := newBrowser(t)
	signIn(t, m, s.base+"/ui/", "mallory", "devs")
	r, err := chromedp.RunResponse(m, chromedp.Navigate(s.base+"/ui/recordings/"+id))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusForbidden {
		t.Errorf("mallory opened the recording: status %d", r.Status)
	}
	if txt := run(t, m, "refusal", chromedp.Text("body")); strings.Contains(txt, "Ada Lovelace") || strings.Contains(txt, selectCards) {
		t.Errorf("the refusal page shows the recording:\n%s", txt)
	}
}
