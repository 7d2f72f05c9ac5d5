package browser

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	teststack "github.com/jitgate/jitgate/test/stack"
)

// TestTerminalReplayInChromium: an admin's interactive ssh shell (real sshd,
// real ssh -tt client through `jitgate connect`, under `jitgate dev`) is
// recorded; signed in on the approval page, the admin follows "Replay
// recording" from the grant and the asciinema player plays it: the terminal
// renders, its clock advances, the masked card line appears and the card
// number never does. The browser reports no CSP violation.
func TestTerminalReplayInChromium(t *testing.T) {
	srv, caFile := teststack.SSHTarget(t, t.TempDir(), map[string]string{"card.txt": "card 4111 1111 1111 1111 on file\n"})
	policy := fmt.Sprintf(`version: 1
targets:
%s
rules:
  - name: admins-shell
    when: '"admins" in identity.groups'
    targets: [box]
    access: admin
`, teststack.SSHPolicyTarget("box", srv, caFile, "commands: {interactive: true}"))
	s := startDev(t, policy)

	tok := s.token("alice", "admins")
	sshCmd := `ssh -tt -F /dev/null -o UserKnownHostsFile="$JITGATE_KNOWN_HOSTS" -o StrictHostKeyChecking=yes ` +
		`-o PreferredAuthentications=password -o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1 -o LogLevel=error ` +
		`-p "$JITGATE_PORT" "$JITGATE_USER@$JITGATE_HOST"`
	c := s.jitgate(tok, "connect", "--target", "box", "--access", "admin", "--quiet", "--", "sh", "-c", sshCmd)
	// A pause inside the session, so the recording lasts long enough for
	// the player's clock to be seen moving.
	c.Stdin = strings.NewReader("echo start-$((6*7))\nsleep 2\ncat card.txt\nexit\n")
	out, err := c.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "on file") || strings.Contains(strings.ReplaceAll(string(out), " ", ""), "4111111111111111") {
		t.Fatalf("ssh shell: %v\n%q", err, out)
	}
	id := s.grantOn(tok, "box")

	b := newBrowser(t)
	signIn(t, b, s.base+"/ui/grants/"+id, "alice", "admins")
	var exceptions []string
	var mu sync.Mutex
	if err := chromedp.Listen(b, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			exceptions = append(exceptions, e.ExceptionDetails.Text)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	step(t, b, "grant page with its replay link", chromedp.WaitVisible("#replay"))
	if st := click(t, b, "#replay"); st != 200 {
		t.Fatalf("open replay: status %d", st)
	}
	step(t, b, "the player's terminal", chromedp.WaitVisible("div.player .ap-term"))
	wantText(t, "cast status", run(t, b, "cast note", chromedp.Text("section.cast-sealed .note")), "Sealed by the recording")
	first, screen := -1.0, ""
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		now := run(t, b, "clock", chromedp.Evaluate[float64](`window.jitgatePlayers[0].getCurrentTime() || 0`))
		if first < 0 && now > 0 {
			first = now
		}
		screen = run(t, b, "screen", chromedp.Evaluate[string](`document.querySelector("div.player .ap-term").textContent`))
		if first > 0 && now > first && strings.Contains(screen, "on file") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if first <= 0 || !strings.Contains(screen, "on file") || !strings.Contains(screen, "start-42") {
		t.Fatalf("the player did not play the session: first clock %v, screen %q", first, screen)
	}
	if strings.Contains(strings.ReplaceAll(screen, " ", ""), "4111111111111111") {
		t.Fatalf("the player shows the card number: %q", screen)
	}
	screenshot(t, b, t.ArtifactDir(), "terminal-replay.png")
	mu.Lock()
	defer mu.Unlock()
	if len(exceptions) > 0 {
		t.Errorf("the page threw: %v", exceptions)
	}
}
