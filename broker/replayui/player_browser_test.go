package replayui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium starts a headless Chromium and collects what its console and
// exceptions report.
func chromium(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skip("chromium is not installed (Debian package chromium)")
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.UserDataDir(t.TempDir()), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true))
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var messages []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *log.EventEntryAdded:
			messages = append(messages, e.Entry.Text)
		case *runtime.EventExceptionThrown:
			messages = append(messages, "exception: "+e.ExceptionDetails.Text)
		}
	}); err != nil {
		t.Fatal(err)
	}
	tctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelT)
	if err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, log.Enable, cdp.Empty{})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	return tctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), messages...)
	}
}

// TestPlayerInHeadlessChromium: the terminal page under its CSP loads the
// embedded asciinema-player, which fetches the sealed cast, renders a
// terminal, and plays: its clock advances and the masked output appears on
// screen. The browser reports no CSP violation and no exception.
func TestPlayerInHeadlessChromium(t *testing.T) {
	f := newCastFixture(t, "g-play")
	srv := httptest.NewServer(http.StripPrefix("/replay", f.handler(t, f.key.PublicKey(), nil)))
	defer srv.Close()
	ctx, messages := chromium(t)

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/replay/g-play"), chromedp.WaitVisible("div.player .ap-term")); err != nil {
		t.Fatalf("the player's terminal did not render: %v (browser said %v)", err, messages())
	}
	now := func() float64 {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.jitgatePlayers[0].getCurrentTime() || 0`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Poll (no wall-clock assumption beyond the test's timeout): the clock
	// moves forward twice, and the masked line reaches the screen.
	first := -1.0
	var screen string
	for ctx.Err() == nil {
		c := now()
		if first < 0 && c > 0 {
			first = c
		}
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("div.player .ap-term").textContent`))
		if err != nil {
			t.Fatal(err)
		}
		screen = text
		if first > 0 && c > first && strings.Contains(screen, castMasked) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("the player did not play: first clock %v, screen %q, browser said %v", first, screen, messages())
	}
	if !strings.Contains(screen, castPrompt+"cat /etc/app.conf") {
		t.Errorf("screen %q lacks the typed command", screen)
	}
	for _, m := range messages() {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, "exception") || strings.Contains(m, "Refused") {
			t.Errorf("browser reported: %s", m)
		}
	}
}
