package kube

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/internal/oneconn"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// Serve speaks HTTPS with one agent connection until it closes or ctx (the
// grant deadline) ends; then the connection, its exec streams and their
// upstream streams are closed.
func (e *Engine) Serve(ctx context.Context, client net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := int(e.conns.Add(1))
	// Closing the raw connection also ends hijacked (exec) streams.
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	defer client.Close()
	if len(e.secret) == 0 {
		return fmt.Errorf("kube: grant %s has no client secret", e.g.ID)
	}
	tc := tls.Server(client, e.tls)
	_ = client.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = e.rec(record.Event{Type: record.Error, Conn: id, Tag: "tls", Statement: client.RemoteAddr().String(), Error: err.Error()})
		return fmt.Errorf("kube: tls handshake: %w", err)
	}
	_ = client.SetDeadline(time.Time{})
	ln := oneconn.New(tc)
	var wg sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			wg.Add(1)
			defer wg.Done()
			e.serveHTTP(ctx, w, r, id)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	stopSrv := context.AfterFunc(ctx, func() { _ = srv.Close(); ln.Close() })
	defer stopSrv()
	err := srv.Serve(ln)
	// The connection is gone (the agent left, or the deadline): end the
	// upstream exec streams too rather than let commands run unattended.
	cancel()
	wg.Wait()
	switch {
	case ctx.Err() != nil && !errors.Is(err, oneconn.ErrDone):
		return nil
	case err == nil, errors.Is(err, http.ErrServerClosed), errors.Is(err, oneconn.ErrDone), errors.Is(err, net.ErrClosed):
		return nil
	}
	return fmt.Errorf("kube: serve: %w", err)
}

// serveHTTP authenticates, classifies, records and runs one request.
func (e *Engine) serveHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, conn int) {
	stmt := r.Method + " " + string(e.maskAll([]byte(clean(r.RequestURI))))
	if !e.authorized(r) {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "auth", Statement: stmt, Error: "authentication failed: no valid grant secret"})
		w.Header().Set("WWW-Authenticate", `Bearer realm="jitgate"`)
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "jitgate: authentication required: the grant secret is the bearer token")
		return
	}
	rt, reason := Classify(&e.g.Guard, r.Method, r.RequestURI, r.Header)
	if reason == "" && rt.Kind == KindExec {
		reason = e.checkCommand(rt)
	}
	stream := rt.Kind == KindExec || rt.Kind == KindAttach || rt.Kind == KindPortForward
	if reason == "" && stream && !isUpgrade(r) {
		reason = rt.Kind.String() + " needs a WebSocket or SPDY upgrade"
	}
	if reason == "" && !stream && isUpgrade(r) {
		reason = "upgrades are allowed only for exec, attach and port-forward"
	}
	tag := "kube " + rt.Kind.String()
	if err := e.rec(record.Event{Type: record.Query, Conn: conn, Tag: tag, Statement: stmt}); err != nil {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "jitgate: the request cannot be recorded")
		return
	}
	allowed := reason == ""
	e.countVerdict(allowed)
	if err := e.rec(record.Event{Type: record.Verdict, Conn: conn, Tag: tag, Statement: stmt, Allowed: &allowed, Reason: reason}); err != nil {
		writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "jitgate: the request cannot be recorded")
		return
	}
	if !allowed {
		writeStatus(w, http.StatusForbidden, "Forbidden", "jitgate: "+reason)
		return
	}
	switch rt.Kind {
	case KindExec, KindAttach:
		e.serveExec(ctx, w, r, conn, rt)
		return
	case KindPortForward:
		e.servePortForward(ctx, w, r, conn, rt)
		return
	}
	e.forward(ctx, w, r, conn, rt)
}

// checkCommand judges an exec argv: tar (kubectl cp) unless CopyFiles, then
// the shell guard on the argv quoted as one simple command, which also
// recurses into sh -c strings and looks through wrappers.
func (e *Engine) checkCommand(rt Route) string {
	argv := rt.Command
	kube := e.g.Guard.Kube
	name := argv[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if name == "tar" && !kube.CopyFiles {
		return "copying files (kubectl cp, tar) is not allowed by this grant"
	}
	if rt.TTY && rt.Stdin && e.g.Guard.Commands.Interactive && len(argv) == 1 && shellName(name) {
		return "" // an interactive shell: recorded, not filtered
	}
	line, err := quoteArgv(argv)
	if err != nil {
		return "the command cannot be quoted for checking: " + err.Error()
	}
	v := e.cfg.Guard.Check(line)
	if !v.Allowed {
		return "blocked by policy: " + v.Reason
	}
	return ""
}

func shellName(s string) bool {
	switch s {
	case "sh", "bash", "ash", "dash", "zsh":
		return true
	}
	return false
}

// authorized checks Authorization: Bearer <grant secret> in constant time.
func (e *Engine) authorized(r *http.Request) bool {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), e.secret) == 1
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return r.Header.Get("Upgrade") != ""
}

// forwarded request headers; everything else (Authorization, Impersonate-*,
// cookies, Accept-Encoding) stays at the proxy.
var forwardHeaders = []string{"User-Agent", "Kubectl-Command", "Kubectl-Session", "X-Request-Id"}

// forward runs a discovery or pods read upstream and streams the answer
// back, pods objects through the masker.
func (e *Engine) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, conn int, rt Route) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+rt.Upstream, nil)
	if err != nil {
		writeStatus(w, http.StatusBadGateway, "InternalError", "jitgate: "+err.Error())
		return
	}
	for _, h := range forwardHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	filter := rt.Kind == KindListPods && len(e.g.Guard.Kube.Pods) > 0
	if filter {
		// A plain PodList, filtered by the pod globs below.
		req.Header.Set("Accept", "application/json")
	} else {
		req.Header.Set("Accept", acceptJSON(r.Header.Values("Accept")))
	}
	req.Header.Set("Authorization", "Bearer "+string(e.g.Credential.Token))
	resp, err := e.up.RoundTrip(req)
	if err != nil {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "upstream", Statement: rt.Upstream, Error: err.Error()})
		writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", "jitgate: upstream: "+err.Error())
		return
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); resp.StatusCode < 300 && mt != "application/json" && !strings.HasPrefix(mt, "text/") && rt.Kind != KindDiscovery {
		_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "upstream", Statement: rt.Upstream, Error: "unexpected content type " + ct})
		writeStatus(w, http.StatusBadGateway, "InternalError", "jitgate: upstream answered "+ct+", which the proxy cannot mask")
		return
	}
	for _, h := range []string{"Content-Type", "Audit-Id", "Cache-Control", "Date", "Etag",
		"X-Kubernetes-Pf-Flowschema-Uid", "X-Kubernetes-Pf-Prioritylevel-Uid"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	var n int64
	if filter && resp.StatusCode == http.StatusOK {
		b, err := e.filterPods(resp.Body)
		if err != nil {
			_ = e.rec(record.Event{Type: record.Error, Conn: conn, Tag: "upstream", Statement: rt.Upstream, Error: err.Error()})
			writeStatus(w, http.StatusBadGateway, "InternalError", "jitgate: the pod list cannot be filtered: "+err.Error())
			return
		}
		b = e.maskAll(b)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		nw, werr := w.Write(b)
		_ = e.rec(record.Event{Type: record.Result, Conn: conn, Tag: "status 200", Statement: rt.Upstream,
			Error: fmt.Sprintf("%d bytes (pod list filtered by the grant's pod globs)", nw)})
		_ = werr
		return
	}
	if rt.Kind == KindDiscovery || e.cfg.Masker == nil {
		if resp.ContentLength >= 0 && resp.Uncompressed == false {
			w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
		w.WriteHeader(resp.StatusCode)
		n, err = io.Copy(w, resp.Body)
	} else {
		w.WriteHeader(resp.StatusCode)
		fl, _ := w.(http.Flusher)
		ms := mask.NewStream(e.cfg.Masker, e.cfg.FlushDelay, func(b []byte) error {
			n += int64(len(b))
			if _, err := w.Write(b); err != nil {
				return err
			}
			if fl != nil {
				fl.Flush()
			}
			return nil
		})
		_, err = io.Copy(ms, resp.Body)
		if cerr := ms.Close(); err == nil {
			err = cerr
		}
	}
	ev := record.Event{Type: record.Result, Conn: conn, Tag: "status " + strconv.Itoa(resp.StatusCode), Statement: rt.Upstream,
		Error: fmt.Sprintf("%d bytes", n)}
	if err != nil {
		ev.Type, ev.Error = record.Error, err.Error()
	}
	_ = e.rec(ev)
}

// acceptJSON keeps the JSON media types of an Accept header (Table and
// aggregated discovery included) and drops protobuf and CBOR, which the
// masker cannot read.
func acceptJSON(vals []string) string {
	var keep []string
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			p := strings.TrimSpace(part)
			mt, _, err := mime.ParseMediaType(p)
			if err != nil {
				continue
			}
			if mt == "application/json" || mt == "*/*" {
				keep = append(keep, p)
			}
		}
	}
	if len(keep) == 0 {
		return "application/json"
	}
	return strings.Join(keep, ",")
}

// status is a Kubernetes Status object, which kubectl prints as the reason.
type status struct {
	Kind       string         `json:"kind"`
	APIVersion string         `json:"apiVersion"`
	Metadata   map[string]any `json:"metadata"`
	Status     string         `json:"status"`
	Message    string         `json:"message"`
	Reason     string         `json:"reason"`
	Code       int            `json:"code"`
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	b, _ := json.Marshal(status{Kind: "Status", APIVersion: "v1", Metadata: map[string]any{}, Status: "Failure",
		Message: msg, Reason: reason, Code: code})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// clean makes a request target safe for the recording (no control bytes).
func clean(s string) string {
	if len(s) > 4096 {
		s = s[:4096] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// maxPodList bounds a pod list the proxy filters in memory.
const maxPodList = 64 << 20

// filterPods keeps the items of a PodList whose names match the grant's pod
// globs. Anything but a PodList is refused.
func (e *Engine) filterPods(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPodList+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPodList {
		return nil, errors.New("the pod list is larger than 64 MiB")
	}
	var list map[string]json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var kind string
	if err := json.Unmarshal(list["kind"], &kind); err != nil || kind != "PodList" {
		return nil, fmt.Errorf("not a PodList (kind %q)", kind)
	}
	var items []json.RawMessage
	if raw, ok := list["items"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
	}
	keep := []json.RawMessage{}
	for _, it := range items {
		var pod struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(it, &pod); err != nil {
			return nil, fmt.Errorf("item: %w", err)
		}
		if globMatch(e.g.Guard.Kube.Pods, pod.Metadata.Name) {
			keep = append(keep, it)
		}
	}
	if list["items"], err = json.Marshal(keep); err != nil {
		return nil, err
	}
	return json.Marshal(list)
}
