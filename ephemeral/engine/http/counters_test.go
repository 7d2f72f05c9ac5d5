package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Every verdict and every masked value counts exactly once, in Serve and
// Exec alike.
func TestCountersFollowTraffic(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{})
	if a, b := p.eng.Verdicts(); a != 0 || b != 0 {
		t.Fatalf("fresh engine: verdicts %d/%d", a, b)
	}
	if m := p.eng.MaskCounts(); len(m) != len(mask.DetectorNames())+1 || m[httpengine.DetectJSONField] != 0 {
		t.Fatalf("fresh engine: MaskCounts %v, want every detector and json_field at 0", m)
	}

	// /v1/text: one card, AWS key, JWT and email in a text body.
	if resp, body := p.get(t, "/v1/text"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/v1/text: %d %s", resp.StatusCode, body)
	}
	want := map[string]uint64{mask.DetectCreditCard: 1, mask.DetectAWSAccessKey: 1, mask.DetectJWT: 1, mask.DetectEmail: 1}
	checkMasked(t, p.eng, want)

	// /v1/users: the two emails and the password redacted by field path
	// (json_field, not email), the card in a note, the card number, the JWT,
	// the AWS key and the \u0040-escaped email by the detectors, and the email
	// in the X-Debug-Owner header.
	if resp, body := p.get(t, "/v1/users"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/v1/users: %d %s", resp.StatusCode, body)
	}
	want[httpengine.DetectJSONField] += 3
	want[mask.DetectCreditCard] += 2
	want[mask.DetectJWT]++
	want[mask.DetectAWSAccessKey]++
	want[mask.DetectEmail] += 2
	checkMasked(t, p.eng, want)

	// Refused by a deny rule, by no rule, and CONNECT; the email in the
	// refused path is masked in the recorded request line.
	for _, c := range []struct{ method, path string }{
		{http.MethodDelete, "/v1/admin/keys"},
		{http.MethodGet, "/v2/users/" + email},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, "http://"+p.addr+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+grantSecret)
		resp, err := p.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s %s: status %d, want 403", c.method, c.path, resp.StatusCode)
		}
	}
	want[mask.DetectEmail]++
	if resp, _ := p.raw(t, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nProxy-Authorization: Bearer "+grantSecret+"\r\n\r\n"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT: status %d", resp.StatusCode)
	}

	// Exec: an allowed read (the owner's email by detector) and an operation
	// that does not parse.
	if res, err := p.eng.Exec(t.Context(), "GET /v1/flags"); err != nil || strings.Contains(res.Output, email) {
		t.Fatalf("Exec: %+v %v", res, err)
	}
	want[mask.DetectEmail]++
	if _, err := p.eng.Exec(t.Context(), "FETCH"); err == nil {
		t.Fatal("Exec of a malformed operation succeeded")
	}
	if a, b := p.eng.Verdicts(); a != 3 || b != 4 {
		t.Fatalf("verdicts %d allowed %d blocked, want 3 and 4", a, b)
	}
	checkMasked(t, p.eng, want)
}

// checkMasked compares MaskCounts with want (absent: 0).
func checkMasked(t *testing.T, eng *httpengine.Engine, want map[string]uint64) {
	t.Helper()
	got := eng.MaskCounts()
	for k, v := range got {
		if want[k] != v {
			t.Errorf("MaskCounts[%s] = %d, want %d (all: %v)", k, v, want[k], got)
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("MaskCounts lacks %s: %v", k, got)
		}
	}
}

// A streamed text body with many secrets counts each once, however the
// stream masker's windows cut it.
func TestStreamedBodyCountsEachSecretOnce(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for i := range 60 {
			fmt.Fprintf(w, "%s line %d card %s\n", strings.Repeat("x", 2000), i, card)
			if i%7 == 0 {
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(srv.Close)
	p := startProxy(t, &upstream{srv: srv}, opts{})
	resp, body := p.get(t, "/v1/stream")
	if resp.StatusCode != http.StatusOK || strings.Contains(body, card) || strings.Count(body, "**** **** **** ****") != 60 {
		t.Fatalf("status %d, %d bytes, %d masked cards", resp.StatusCode, len(body), strings.Count(body, "**** **** **** ****"))
	}
	if n := p.eng.MaskCounts()[mask.DetectCreditCard]; n != 60 {
		t.Fatalf("counted %d cards, want 60", n)
	}
}

// A grant that masks nothing reports no masked values.
func TestMaskCountsNilWithoutMasking(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	p := startProxy(t, up, opts{mutate: func(c *httpengine.Config) { c.Masker = nil; c.MaskJSONFields = nil }})
	if resp, _ := p.get(t, "/v1/users"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if m := p.eng.MaskCounts(); m != nil {
		t.Fatalf("MaskCounts = %v, want nil", m)
	}
	if a, b := p.eng.Verdicts(); a != 1 || b != 0 {
		t.Fatalf("verdicts %d/%d, want 1/0", a, b)
	}
}

// Through a real session proxy: 1000 refused requests on distinct paths
// (each with an email in it) and a few allowed ones are one series per
// verdict of the grant's rule and one per detector, with exact values; no
// path, field or email becomes a label.
func TestMetricsLabelsStayBounded(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	g := &spec.Grant{ID: "g-http-metrics", Mode: spec.Session, Rule: "agents-api",
		Target:       spec.Target{Name: "config-api", Protocol: spec.HTTP, Address: up.srv.URL},
		ClientSecret: spec.WireSecret(grantSecret), Listen: "127.0.0.1:0", Metrics: "127.0.0.1:0",
		Deadline:   time.Now().Add(time.Hour),
		Credential: spec.Credential{Token: spec.WireSecret(apiToken), LeaseID: "kv:secret/config-api#1"},
		Guard:      spec.Guard{Access: spec.Read},
		Mask:       spec.Mask{Detectors: []string{"all"}},
		Record:     spec.Record{Dir: t.TempDir()},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := session.Run(ctx, session.Config{Grant: g, Status: pw,
			Engines: map[spec.Protocol]session.Factory{spec.HTTP: factory(testRules(), []string{"$.users[*].email", "password"})}})
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	var ready spec.Status
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &ready) == nil && ready.Type != "" {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if ready.Type != spec.StatusReady || ready.Metrics == "" {
		t.Fatalf("first status %+v, want ready with a metrics address", ready)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	defer client.CloseIdleConnections()
	get := func(path string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ready.Addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+grantSecret)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const refused = 1000
	for i := range refused {
		if st := get(fmt.Sprintf("/v1/admin/u%d/user%d@example.com", i, i)); st != http.StatusForbidden {
			t.Fatalf("request %d: status %d, want 403", i, st)
		}
	}
	for range 2 {
		if st := get("/v1/users"); st != http.StatusOK {
			t.Fatalf("/v1/users: status %d", st)
		}
	}

	body := scrape(t, ready.Metrics)
	var statements, masked []string
	for _, l := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(l, session.MetricStatements+"{"):
			statements = append(statements, l)
		case strings.HasPrefix(l, session.MetricMasked+"{"):
			masked = append(masked, l)
		}
	}
	wantStatements := []string{
		session.MetricStatements + `{grant="g-http-metrics",rule="agents-api",verdict="allowed"} 2`,
		session.MetricStatements + `{grant="g-http-metrics",rule="agents-api",verdict="blocked"} 1000`,
	}
	if strings.Join(statements, "\n") != strings.Join(wantStatements, "\n") {
		t.Errorf("statement series:\n%s\nwant:\n%s", strings.Join(statements, "\n"), strings.Join(wantStatements, "\n"))
	}
	if len(masked) != len(mask.DetectorNames())+1 {
		t.Errorf("%d masked-value series, want one per detector plus json_field:\n%s", len(masked), strings.Join(masked, "\n"))
	}
	for _, w := range []string{
		// 1000 emails in refused paths, 2 per /v1/users (escaped, header).
		session.MetricMasked + `{detector="email",grant="g-http-metrics"} 1004`,
		session.MetricMasked + `{detector="json_field",grant="g-http-metrics"} 6`,
		session.MetricMasked + `{detector="credit_card",grant="g-http-metrics"} 4`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %q:\n%s", w, strings.Join(masked, "\n"))
		}
	}
	if strings.Contains(body, "example.com") || strings.Contains(body, "/v1/") {
		t.Error("a path or an email leaked into the metrics")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("session ended with %v", err)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
