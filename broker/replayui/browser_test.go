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

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// TestPageInHeadlessChromium loads the page in a real browser: the style
// allowed by its CSP hash applies, the browser reports no CSP violation, and
// the hostile values render as text.
func TestPageInHeadlessChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skip("chromium is not installed (Debian package chromium)")
	}
	f := newFixture(t, "g-browser")
	srv := httptest.NewServer(http.StripPrefix("/replay", f.handler(t, f.key.PublicKey(), nil)))
	defer srv.Close()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.UserDataDir(t.TempDir()), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser (no timeout on this first call)
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
	defer cancelT()
	enableLog := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, log.Enable, cdp.Empty{})
		return err
	})
	if err := chromedp.Do(tctx, enableLog, chromedp.Navigate(srv.URL+"/replay/g-browser"), chromedp.WaitVisible("#verification")); err != nil {
		t.Fatal(err)
	}
	eval := func(js string) string {
		v, err := chromedp.Run(tctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	bg := eval(`getComputedStyle(document.getElementById("verification")).backgroundColor`)
	nulls := eval(`String(document.querySelectorAll("td.null").length)`)
	scripts := eval(`String(document.querySelectorAll("script").length)`)
	title := eval(`document.title`)
	statement, err := chromedp.Run(tctx, chromedp.Text("tr.ev-query .sql"))
	if err != nil {
		t.Fatal(err)
	}
	if bg != "rgb(229, 246, 234)" {
		t.Errorf("banner background %q: the page's style did not apply under its CSP", bg)
	}
	if nulls != "1" || scripts != "0" || title != "jitgate recording g-browser" {
		t.Errorf("nulls %s, scripts %s, title %q", nulls, scripts, title)
	}
	if !strings.Contains(statement, `<script>alert("owned")</script>`) {
		t.Errorf("statement renders as %q, want the hostile text shown as text", statement)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range messages {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, "exception") {
			t.Errorf("browser reported: %s", m)
		}
	}
}
