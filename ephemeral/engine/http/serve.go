package http

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/internal/oneconn"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// Serve speaks HTTP/1.1 with one agent connection until it closes or ctx
// (the grant deadline) ends, when the connection and every upstream request
// in flight are closed.
func (e *Engine) Serve(ctx context.Context, client net.Conn) error {
	id := int(e.conns.Add(1))
	ln := oneconn.New(client)
	var inflight gate
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !inflight.enter() {
				// Serve is returning and closing the connection: answer nothing.
				panic(http.ErrAbortHandler)
			}
			defer inflight.leave()
			e.serveHTTP(w, r, id)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() {
		_ = srv.Close()
		e.transport.CloseIdleConnections()
	})
	defer stop()
	err := srv.Serve(ln)
	inflight.closeAndWait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil, errors.Is(err, http.ErrServerClosed), errors.Is(err, oneconn.ErrDone):
		return nil
	}
	return fmt.Errorf("http: serve: %w", err)
}

// serveHTTP authenticates one request and resolves its target, then runs it.
func (e *Engine) serveHTTP(w http.ResponseWriter, r *http.Request, conn int) {
	viaProxy := !strings.HasPrefix(r.RequestURI, "/")
	if !e.authorized(r) {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "auth",
			Statement: r.Method + " " + e.maskString(r.RequestURI), Error: "authentication failed: no valid grant secret"})
		w.Header().Set("Connection", "close")
		status := http.StatusUnauthorized
		if viaProxy || r.Header.Get("Proxy-Authorization") != "" {
			status = http.StatusProxyAuthRequired
			w.Header().Set("Proxy-Authenticate", `Basic realm="jitgate"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jitgate"`)
		}
		writeErrorKeep(w, status, "authentication required: send the grant secret as Authorization: Bearer <secret> or as the Proxy-Authorization password")
		return
	}
	target := r.RequestURI
	if r.Method == http.MethodConnect {
		x := &exchange{conn: conn, method: r.Method, target: target, header: r.Header}
		_ = e.rec(record.Event{Type: record.Query, Conn: conn, Statement: e.statement(x), Tag: "http"})
		reason := "CONNECT is always refused: the proxy does not open tunnels (use http:// URLs through HTTP_PROXY)"
		_ = e.verdict(conn, e.statement(x), false, reason, "")
		e.refuse(w, x, http.StatusForbidden, reason)
		return
	}
	if viaProxy && target != "*" {
		t, err := e.originForm(r)
		if err != nil {
			x := &exchange{conn: conn, method: r.Method, target: target, header: r.Header}
			_ = e.rec(record.Event{Type: record.Query, Conn: conn, Statement: e.statement(x), Tag: "http"})
			_ = e.verdict(conn, e.statement(x), false, err.Error(), "")
			e.refuse(w, x, http.StatusForbidden, err.Error())
			return
		}
		target = t
	}
	var body = r.Body
	if r.ContentLength == 0 {
		body = nil
	}
	x := &exchange{conn: conn, method: r.Method, target: target, header: r.Header, body: body, length: r.ContentLength}
	o := e.do(r.Context(), w, x)
	if o.err != nil && o.wrote {
		// The head is out; the only honest way to report a broken body is
		// to cut the connection, so the agent sees an incomplete response.
		panic(http.ErrAbortHandler)
	}
}

func writeErrorKeep(w http.ResponseWriter, status int, msg string) {
	conn := w.Header().Get("Connection")
	auth := [2][2]string{{"Proxy-Authenticate", w.Header().Get("Proxy-Authenticate")}, {"WWW-Authenticate", w.Header().Get("WWW-Authenticate")}}
	for k := range w.Header() {
		delete(w.Header(), k)
	}
	if conn != "" {
		w.Header().Set("Connection", conn)
	}
	for _, a := range auth {
		if a[1] != "" {
			w.Header().Set(a[0], a[1])
		}
	}
	b := `{"error":` + quoteJSON(msg) + "}\n"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b))
}

// authorized checks the grant secret in Proxy-Authorization or
// Authorization, as a Bearer token or a Basic password, in constant time.
func (e *Engine) authorized(r *http.Request) bool {
	if len(e.secret) == 0 {
		return false
	}
	ok := 0
	for _, name := range []string{"Proxy-Authorization", "Authorization"} {
		for _, v := range r.Header.Values(name) {
			if s := credentialOf(v); s != nil {
				ok |= subtle.ConstantTimeCompare(s, e.secret)
			}
		}
	}
	return ok == 1
}

// credentialOf returns the secret carried by one authorization header value.
func credentialOf(v string) []byte {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return nil
	}
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer":
		return []byte(rest)
	case "basic":
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return nil
		}
		_, pw, ok := strings.Cut(string(b), ":")
		if !ok {
			return nil
		}
		return []byte(pw)
	}
	return nil
}

// originForm turns an absolute-form request target (an agent using the
// proxy as HTTP_PROXY) into origin form, if it points at the grant's target:
// the target's host (or the target's name) and port, plain http, no user
// information. Everything else is refused.
func (e *Engine) originForm(r *http.Request) (string, error) {
	raw := r.RequestURI
	u := r.URL
	if u == nil || !u.IsAbs() {
		return "", fmt.Errorf("request target %q is neither origin-form nor absolute-form", clipString(raw))
	}
	if !strings.EqualFold(u.Scheme, "http") {
		return "", fmt.Errorf("absolute-form target with scheme %q: only http:// URLs go through the proxy", u.Scheme)
	}
	if u.User != nil {
		return "", errors.New("absolute-form target carries user information")
	}
	if !e.isTargetHost(u.Host) {
		return "", fmt.Errorf("absolute-form target host %q is not this grant's target %s", u.Host, e.hostPort)
	}
	rest := raw[strings.Index(raw, "://")+3:]
	i := strings.IndexAny(rest, "/?")
	switch {
	case i < 0:
		return "/", nil
	case rest[i] == '?':
		return "/" + rest[i:], nil
	}
	return rest[i:], nil
}

// isTargetHost reports whether an absolute-form host names the target: its
// host name or the target's name, with no port or the target's port.
func (e *Engine) isTargetHost(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	thost, tport, _ := net.SplitHostPort(e.hostPort)
	if host != strings.ToLower(thost) && (e.g.Target.Name == "" || host != strings.ToLower(e.g.Target.Name)) {
		return false
	}
	return port == "" || port == tport
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// gate counts running handlers; once closed it admits no more and
// closeAndWait returns when the last one left.
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	n      int
	closed bool
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.cond != nil {
		g.cond.Broadcast()
	}
}

func (g *gate) closeAndWait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	for g.n > 0 {
		g.cond.Wait()
	}
}
