package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/notify"
)

func msg() notify.Message {
	return notify.Message{GrantID: "g_1", Requester: "agent-7", Target: "test-db", Access: "write", Mode: "exec",
		Statements: []notify.Statement{{SQL: "UPDATE t SET x = 1 WHERE id = 2", Kind: "UPDATE", Class: "write"}},
		Rule:       "r", Quorum: 1, Claims: map[string]any{"repository": "acme/shop", "ref": "refs/pull/42/merge", "sha": "abc123"},
		Expires: time.Unix(1_900_000_000, 0)}
}

func TestWebhookIsSignedAndVerifiable(t *testing.T) {
	secret := []byte("s3cret")
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.Verify(secret, body, r.Header.Get("X-Jitgate-Signature"), time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), 401)
			return
		}
		got.Store(string(body))
	}))
	defer srv.Close()
	n, err := notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Webhook, URL: srv.URL, Secret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	res := n.Pending(context.Background(), msg())
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(got.Load().(string)), &body); err != nil {
		t.Fatal(err)
	}
	if body["event"] != "grant.pending" || body["grant_id"] != "g_1" || body["operation"] != nil && body["operation"] != "" {
		t.Fatalf("body %v", body)
	}
	// A tampered body or a wrong secret fails verification; so does a replay outside the window.
	sig := notify.Sign(secret, []byte(`{"a":1}`), time.Now())
	if notify.Verify(secret, []byte(`{"a":2}`), sig, time.Now(), time.Minute) == nil {
		t.Error("tampered body verified")
	}
	if notify.Verify([]byte("other"), []byte(`{"a":1}`), sig, time.Now(), time.Minute) == nil {
		t.Error("wrong secret verified")
	}
	if notify.Verify(secret, []byte(`{"a":1}`), sig, time.Now().Add(10*time.Minute), time.Minute) == nil {
		t.Error("stale signature verified")
	}
}

func TestSlackMessageCarriesTheContext(t *testing.T) {
	var text atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		_ = json.NewDecoder(r.Body).Decode(&b)
		text.Store(b["text"])
	}))
	defer srv.Close()
	n, _ := notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Slack, URL: srv.URL}}})
	if r := n.Pending(context.Background(), msg()); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	s := text.Load().(string)
	for _, want := range []string{"agent-7", "test-db", "UPDATE t SET x = 1 WHERE id = 2", "acme/shop", "refs/pull/42/merge", "jitgate approve g_1"} {
		if !strings.Contains(s, want) {
			t.Errorf("slack text lacks %q: %s", want, s)
		}
	}
}

func TestRetriesThenGivesUp(t *testing.T) {
	var calls atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(503)
		}
	}))
	defer flaky.Close()
	n, _ := notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Slack, URL: flaky.URL}}, Backoff: time.Millisecond})
	if r := n.Pending(context.Background(), msg()); r[0].Err != nil || r[0].Attempts != 3 {
		t.Fatalf("flaky receiver: %+v", r[0])
	}
	var bad atomic.Int32
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { bad.Add(1); w.WriteHeader(404) }))
	defer rejecting.Close()
	n, _ = notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Slack, URL: rejecting.URL}}, Backoff: time.Millisecond})
	if r := n.Pending(context.Background(), msg()); r[0].Err == nil || bad.Load() != 1 {
		t.Fatalf("a 404 must fail without retries: %+v calls=%d", r[0], bad.Load())
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	down.Close()
	n, _ = notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Slack, URL: down.URL}}, Backoff: time.Millisecond, Attempts: 2})
	if r := n.Pending(context.Background(), msg()); r[0].Err == nil || r[0].Attempts != 2 {
		t.Fatalf("unreachable receiver: %+v", r[0])
	}
}

func TestConfigRefusesUnsignedWebhooks(t *testing.T) {
	if _, err := notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Webhook, URL: "https://x"}}}); err == nil {
		t.Fatal("a generic webhook without a secret was accepted")
	}
	if _, err := notify.New(notify.Config{Targets: []notify.Target{{Kind: notify.Slack, URL: "ftp://x"}}}); err == nil {
		t.Fatal("a non-http url was accepted")
	}
}
