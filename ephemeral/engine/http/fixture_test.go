package http_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	httpengine "github.com/jitgate/jitgate/ephemeral/engine/http"
	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Secrets the upstream plants in its responses; none may reach the agent.
const (
	card      = "4111 1111 1111 1111"
	cardPlain = "4111111111111111"
	email     = "alice@example.com"
	awsKey    = "AKIAIOSFODNN7EXAMPLE"
	jwt       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	password  = "hunter2-correct-horse"

	apiToken    = "upstream-api-token-7c1e"
	grantSecret = "grant-secret-0123456789abcdef"
)

var planted = []string{card, cardPlain, email, awsKey, jwt, password, "4111 1111", "alice@"}

// seenRequest is what the upstream received.
type seenRequest struct {
	Method, URI, Host string
	Header            http.Header
	Body              string
}

// upstream is an httptest API that plants secrets in JSON and text.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	seen    []seenRequest
	release chan struct{} // /v1/hold waits on it
	held    chan struct{} // /v1/hold signals it sent its first line
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func usersJSON() string {
	return `{"users":[{"id":1,"email":"` + email + `","profile":{"password":"` + password + `","note":"card ` + card + `"}},` +
		`{"id":2,"email":"bob@example.org","token":"` + jwt + `","aws":"` + awsKey + `","escaped":"alice\u0040example.com"}],` +
		`"count":2,"card_number":` + cardPlain + `}`
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{}), held: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/users", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Debug-Owner", email)
		w.Header().Add("Set-Cookie", "session=abc123; HttpOnly")
		_, _ = io.WriteString(w, usersJSON())
	})
	mux.HandleFunc("/v1/flags", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"flags":{"dark_mode":true,"beta":false},"owner":"`+email+`"}`)
	})
	mux.HandleFunc("/v1/text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "card %s\naws %s\njwt %s\nmail %s\n", card, awsKey, jwt, email)
	})
	// /v1/split?at=N&pad=P: text with a card at offset P, flushed in two parts
	// split at byte N.
	mux.HandleFunc("/v1/split", func(w http.ResponseWriter, r *http.Request) {
		at, _ := strconv.Atoi(r.URL.Query().Get("at"))
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		body := splitBody(pad, r.URL.Query().Get("type") == "application/json")
		at = min(max(at, 0), len(body))
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		_, _ = io.WriteString(w, body[:at])
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, body[at:])
	})
	mux.HandleFunc("/v1/hold", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "first line\n")
		w.(http.Flusher).Flush()
		select {
		case u.held <- struct{}{}:
		default:
		}
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second line "+card+"\n")
	})
	mux.HandleFunc("/v1/binary", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write([]byte("\x00\x01binary " + card))
	})
	mux.HandleFunc("/v1/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, usersJSON())
		_ = zw.Close()
	})
	mux.HandleFunc("/v1/brotli", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "br")
		_, _ = w.Write([]byte{0x1b, 0x02})
	})
	mux.HandleFunc("/v1/ndjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, `{"email":"`+email+`"}`+"\n"+`{"password":"`+password+`"}`+"\n")
	})
	mux.HandleFunc("/v1/notjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"a":"b", oops}`)
	})
	mux.HandleFunc("/v1/plainjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, `  {"password":"`+password+`"}`)
	})
	mux.HandleFunc("/v1/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		line := strings.Repeat("x", 99) + "\n"
		for range n {
			_, _ = io.WriteString(w, line)
		}
	})
	bench := benchJSON()
	mux.HandleFunc("/v1/bench", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("latency")); err == nil {
			time.Sleep(d) // a backend's service time, for the latency benchmark
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(bench)))
		_, _ = w.Write(bench)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/bench" {
			mux.ServeHTTP(w, r) // not kept: benchmarks send millions
			return
		}
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: string(b)})
		u.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

// benchJSON is a 730-byte API answer: eight users with names, emails and flags.
func benchJSON() []byte {
	var b strings.Builder
	b.WriteString(`{"users":[`)
	for i := range 8 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"user number %d","email":"user%d@example.com","active":true,"score":%d.5}`, i, i, i, i*17)
	}
	b.WriteString(`],"next":null,"total":8}`)
	return []byte(b.String())
}

// splitBody is text with a card at offset pad, and more text after it; as
// JSON, the same text is one string in an array, after `["`.
func splitBody(pad int, asJSON bool) string {
	s := strings.Repeat("y", pad) + " card " + card + " tail " + strings.Repeat("z ", 3000)
	if asJSON {
		return `["` + s + `",1]`
	}
	return s
}

func testRules() []httprule.Rule {
	return []httprule.Rule{
		{Methods: []string{"GET", "HEAD"}, Path: "/v1/**", Effect: "allow"},
		{Methods: []string{"POST", "PUT"}, Path: "/v1/items/**", Effect: "allow"},
		{Methods: []string{"*"}, Path: "/v1/admin/**", Effect: "deny"},
	}
}

func testMasker(t testing.TB) *mask.Masker {
	t.Helper()
	m, err := mask.New(mask.Config{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// proxy is the engine under test, listening on a loopback port.
type proxy struct {
	eng   *httpengine.Engine
	rec   *record.Recorder
	grant *spec.Grant
	addr  string
	up    *upstream
	m     *mask.Masker
}

type opts struct {
	mutate  func(*httpengine.Config)
	rules   []httprule.Rule
	maxBody int64
	access  spec.Access // the guard's cap
	grant   spec.Access // the grant's access level; default write
}

func startProxy(t testing.TB, up *upstream, o opts) *proxy {
	t.Helper()
	dir := t.TempDir()
	if o.grant == spec.AccessNone {
		o.grant = spec.Write
	}
	g := &spec.Grant{
		ID: "g-http-1", Mode: spec.Session, Identity: "agent@ci", Rule: "test",
		Target:       spec.Target{Name: "config-api", Protocol: spec.HTTP, Address: up.srv.URL},
		ClientSecret: spec.WireSecret(grantSecret),
		Deadline:     time.Now().Add(time.Hour),
		Credential:   spec.Credential{Token: spec.WireSecret(apiToken), LeaseID: "kv:secret/config-api#1"},
		Guard:        spec.Guard{Access: o.grant},
		Record:       spec.Record{Dir: dir},
	}
	rec, err := record.Open(dir, record.Header{GrantID: g.ID, Mode: "session", Target: "config-api"})
	if err != nil {
		t.Fatal(err)
	}
	rules := o.rules
	if rules == nil {
		rules = testRules()
	}
	gd, err := httprule.New(httprule.Config{Rules: rules, MaxBodyBytes: o.maxBody, Access: o.access})
	if err != nil {
		t.Fatal(err)
	}
	m := testMasker(t)
	cfg := httpengine.Config{Grant: g, Guard: gd, Masker: m, Recorder: rec,
		MaskJSONFields: []string{"$.users[*].email", "password"},
		FlushDelay:     time.Hour, // tests of idle flushing set their own
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	eng, err := httpengine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = eng.Serve(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		_ = eng.Close()
		_ = rec.Close()
	})
	return &proxy{eng: eng, rec: rec, grant: g, addr: ln.Addr().String(), up: up, m: m}
}

// client talks to the proxy as a reverse proxy, with the grant secret.
func (p *proxy) client() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
}

func (p *proxy) get(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+grantSecret)
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp, string(b)
}

// raw sends one request exactly as written and reads the response.
func (p *proxy) raw(t testing.TB, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", request, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// events flushes and reads the recording so far.
func (p *proxy) events(t testing.TB) []record.Event {
	t.Helper()
	if err := p.rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(p.rec.Path())
	if err != nil && !strings.Contains(err.Error(), "unexpected end") {
		t.Fatal(err)
	}
	return evs
}

func noSecrets(t testing.TB, where, s string) {
	t.Helper()
	for _, sec := range planted {
		if strings.Contains(s, sec) {
			t.Fatalf("%s leaks %q:\n%s", where, sec, s)
		}
	}
}

func errorOf(t testing.TB, body string) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	return e.Error
}

func jsonValid(s string) bool {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			return true
		} else if err != nil {
			return false
		}
	}
}
