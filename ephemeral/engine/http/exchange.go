package http

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// exchange is one request on its way through the engine, from Serve or Exec.
type exchange struct {
	conn   int
	method string
	target string      // origin-form request target, exactly as sent
	header http.Header // the agent's request headers
	body   io.Reader   // nil: no body
	length int64       // Content-Length; -1 unknown
	line   string      // "METHOD target" with detector matches masked, for the recording
}

// statement is the request line as recorded.
func (e *Engine) statement(x *exchange) string {
	if x.line == "" {
		x.line = x.method + " " + e.maskString(x.target)
	}
	return x.line
}

// outcome is what became of an exchange.
type outcome struct {
	status  int
	blocked bool   // refused by policy (guard, body limit, binary response)
	reason  string // why it was refused
	err     error  // the upstream or the stream failed
	wrote   bool   // the response head was sent: a failure must abort the connection
}

// errorBody is the JSON body of every response the proxy itself writes.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(errorBody{Error: msg})
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// maskString runs the detectors over s.
func (e *Engine) maskString(s string) string {
	if !e.masking {
		return s
	}
	return string(e.cfg.Masker.Text([]byte(s)))
}

func (e *Engine) refuse(w http.ResponseWriter, x *exchange, status int, reason string) outcome {
	writeError(w, status, "blocked by policy: "+reason)
	e.log.Info("request refused", "conn", x.conn, "request", e.statement(x), "status", status, "reason", reason)
	_ = e.rec(record.Event{Type: record.Result, Conn: x.conn, Statement: e.statement(x), Tag: "HTTP " + strconv.Itoa(status)})
	return outcome{status: status, blocked: true, reason: reason}
}

func (e *Engine) fail(w http.ResponseWriter, x *exchange, status int, err error) outcome {
	msg := e.maskString(err.Error())
	writeError(w, status, msg)
	e.log.Warn("request failed", "conn", x.conn, "request", e.statement(x), "status", status, "err", msg)
	_ = e.rec(record.Event{Type: record.Error, Conn: x.conn, Statement: e.statement(x), Error: msg})
	return outcome{status: status, err: err}
}

// do runs one exchange: record, guard, forward with the injected credential,
// stream the masked response into w, record the outcome.
func (e *Engine) do(ctx context.Context, w http.ResponseWriter, x *exchange) outcome {
	line := e.statement(x)
	if err := e.rec(record.Event{Type: record.Query, Conn: x.conn, Statement: line, Tag: "http"}); err != nil {
		writeError(w, http.StatusServiceUnavailable, "the session cannot be recorded; refusing the request")
		return outcome{status: http.StatusServiceUnavailable, err: fmt.Errorf("http: record: %w", err)}
	}
	allowed, reason, rule := e.judge(x)
	if err := e.verdict(x.conn, line, allowed, reason, rule); err != nil {
		writeError(w, http.StatusServiceUnavailable, "the session cannot be recorded; refusing the request")
		return outcome{status: http.StatusServiceUnavailable, err: fmt.Errorf("http: record: %w", err)}
	}
	if !allowed {
		return e.refuse(w, x, http.StatusForbidden, reason)
	}
	max := e.cfg.MaxBody
	if x.length > max {
		return e.refuse(w, x, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", x.length, max))
	}
	var body []byte
	if x.body != nil {
		b, err := io.ReadAll(io.LimitReader(x.body, max+1))
		if err != nil {
			return e.fail(w, x, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err))
		}
		if int64(len(b)) > max {
			return e.refuse(w, x, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", max))
		}
		body = b
	}
	if len(body) > 0 {
		if err := e.recordBody(x.conn, "request", x.header.Get("Content-Type"), body, int64(len(body))); err != nil {
			writeError(w, http.StatusServiceUnavailable, "the session cannot be recorded; refusing the request")
			return outcome{status: http.StatusServiceUnavailable, err: fmt.Errorf("http: record: %w", err)}
		}
	}

	req, err := e.upstreamRequest(ctx, x, body)
	if err != nil {
		return e.fail(w, x, http.StatusBadGateway, err)
	}
	resp, err := e.transport.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("upstream %s: %w", e.hostPort, ctx.Err())
		} else {
			err = fmt.Errorf("upstream %s: %w", e.hostPort, err)
		}
		return e.fail(w, x, http.StatusBadGateway, err)
	}
	defer resp.Body.Close()
	return e.respond(ctx, w, x, resp)
}

// judge applies the guard to the exchange.
func (e *Engine) judge(x *exchange) (allowed bool, reason, rule string) {
	if wantsUpgrade(x.header) {
		return false, "protocol upgrades (WebSocket, h2c) are refused: the proxy cannot guard what runs inside them", ""
	}
	if v := e.cfg.Guard.CheckHeader(x.header); !v.Allowed {
		return false, v.Reason, v.Rule
	}
	v := e.cfg.Guard.Check(x.method, x.target)
	if v.Allowed && e.g.Guard.Access == spec.Read && !readOnlyMethod(x.method) {
		// The grant's access level caps the methods whatever the rules say.
		return false, fmt.Sprintf("%s is not allowed on a read grant (GET, HEAD and OPTIONS only)", x.method), v.Rule
	}
	return v.Allowed, v.Reason, v.Rule
}

func readOnlyMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// upstreamRequest builds the request to the target: the agent's target and
// headers without hop-by-hop headers, its credentials, cookies, forwarding
// headers, ranges and override headers, plus the injected credential.
func (e *Engine) upstreamRequest(ctx context.Context, x *exchange, body []byte) (*http.Request, error) {
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, x.method, e.baseURL+x.target, rd)
	if err != nil {
		return nil, fmt.Errorf("building the upstream request: %w", err)
	}
	if got := req.URL.RequestURI(); got != x.target {
		return nil, fmt.Errorf("the request target %q cannot be forwarded unchanged (it would become %q)", x.target, got)
	}
	// The agent's header map is the exchange's own (the server's request,
	// or Exec's parsed operation): it is edited in place, not copied.
	h := x.header
	if h == nil {
		h = http.Header{}
	}
	removeHop(h)
	for _, n := range agentOnly {
		h.Del(n)
	}
	h.Del("Expect")
	h.Del("Host")
	if e.transforms() {
		// A byte range of a text body could cut a secret in two, each half
		// passing the detectors: always fetch whole bodies.
		h.Del("Range")
		h.Del("If-Range")
	}
	h.Del(e.injName)
	h.Set(e.injName, e.injValue)
	h.Set("Accept-Encoding", "identity")
	req.Header = h
	req.Host = e.base.Host
	req.ContentLength = int64(len(body))
	return req, nil
}

// transforms reports whether some response bodies are rewritten.
func (e *Engine) transforms() bool { return e.masking || len(e.patterns) > 0 }

// respond streams the upstream response into w.
func (e *Engine) respond(ctx context.Context, w http.ResponseWriter, x *exchange, resp *http.Response) outcome {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return e.fail(w, x, http.StatusBadGateway, errors.New("upstream switched protocols, which the proxy refuses"))
	}
	removeHop(resp.Header)
	kind := classify(x.method, resp.StatusCode, resp.Header)
	var src io.Reader = resp.Body
	decoded := false
	if ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce != "" && ce != "identity" && kind != bodyNone {
		switch {
		case ce == "gzip" || ce == "x-gzip":
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				return e.fail(w, x, http.StatusBadGateway, fmt.Errorf("upstream gzip body: %w", err))
			}
			defer zr.Close()
			src, decoded = zr, true
		case kind == bodyBinary && e.cfg.AllowBinary:
		default:
			return e.fail(w, x, http.StatusBadGateway, fmt.Errorf("upstream sent a %q-encoded body, which the proxy cannot inspect", ce))
		}
	}
	if kind == bodyBinary && !e.cfg.AllowBinary {
		return e.refuse(w, x, http.StatusForbidden, fmt.Sprintf("the response is %q, which the proxy cannot mask, and this grant does not allow binary responses", resp.Header.Get("Content-Type")))
	}
	if kind == bodyText && len(e.patterns) > 0 {
		// JSON served under a text type still gets its fields masked.
		br := bufio.NewReaderSize(src, 512)
		if looksJSON(br) {
			kind = bodyJSON
		}
		src = br
	}
	maskJSON := kind == bodyJSON && e.transforms()
	maskText := kind == bodyText && e.masking
	transform := decoded || maskJSON || maskText
	if transform && resp.StatusCode == http.StatusPartialContent {
		return e.fail(w, x, http.StatusBadGateway, errors.New("upstream sent a partial (206) body, which cannot be masked reliably"))
	}

	dropped := 0
	h := w.Header()
	for k, vs := range resp.Header {
		switch k {
		case "Set-Cookie":
			// Upstream sessions stay upstream: the agent authenticates with
			// the grant secret only.
			dropped += len(vs)
			continue
		case "Content-Length", "Content-Md5", "Digest", "Content-Digest", "Repr-Digest", "Content-Encoding":
			if transform {
				continue
			}
		}
		if e.masking {
			// The upstream's header map is ours: mask in place.
			for i, v := range vs {
				vs[i] = e.maskString(v)
			}
		}
		h[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	o := outcome{status: resp.StatusCode, wrote: true}

	streaming := resp.ContentLength < 0
	s := &sink{w: w, max: e.cfg.MaxRecordedBody, keep: kind != bodyBinary}
	if s.keep && kind != bodyNone {
		// One allocation for the excerpt instead of append's doublings.
		n := int64(4 << 10)
		if resp.ContentLength >= 0 && resp.ContentLength < n {
			n = resp.ContentLength
		}
		s.ex = make([]byte, 0, min(int(n), s.max))
	}
	if fl, ok := w.(http.Flusher); ok && streaming {
		s.flusher = fl
	}
	var err error
	switch {
	case kind == bodyNone:
	case maskJSON:
		jm := e.newJSONMasker(s.write)
		err = jm.Run(src)
	case maskText:
		idle := time.Duration(0)
		if streaming {
			idle = e.cfg.FlushDelay
		}
		tm := newTextMasker(e.cfg.Masker, idle, s.write)
		err = copyInto(tm, src)
		if err != nil {
			tm.Abort()
		} else {
			err = tm.Close()
		}
	default:
		err = s.copyFrom(src)
	}
	statement := e.statement(x)
	reason := ""
	if errors.Is(err, errOutputFull) {
		err, reason = nil, "output cut at the exec limit; "
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (the grant ended)", ctx.Err())
		}
		o.err = fmt.Errorf("response body: %w", err)
		_ = e.rec(record.Event{Type: record.Error, Conn: x.conn, Statement: statement, Tag: "HTTP " + strconv.Itoa(resp.StatusCode), Error: e.maskString(o.err.Error())})
		return o
	}
	if kind != bodyNone {
		if rerr := e.recordExcerpt(x.conn, s, kind); rerr != nil {
			o.err = fmt.Errorf("http: record: %w", rerr)
			return o
		}
	}
	if dropped > 0 {
		reason += fmt.Sprintf("%d Set-Cookie header(s) dropped", dropped)
	}
	reason = strings.TrimSuffix(reason, "; ")
	if rerr := e.rec(record.Event{Type: record.Result, Conn: x.conn, Statement: statement, Tag: "HTTP " + strconv.Itoa(resp.StatusCode), Reason: reason}); rerr != nil {
		o.err = fmt.Errorf("http: record: %w", rerr)
	}
	return o
}

// newJSONMasker masks a JSON body with the engine's detectors and field
// patterns, counting the field redactions.
func (e *Engine) newJSONMasker(write func([]byte) error) *jsonMasker {
	jm := newJSONMasker(e.maskerOrNil(), e.patterns, write)
	jm.redacted = &e.counts.jsonFields
	return jm
}

func (e *Engine) maskerOrNil() *mask.Masker {
	if !e.masking {
		return nil
	}
	return e.cfg.Masker
}

// looksJSON peeks at the first non-space byte of what has arrived (it waits
// for the first byte only, so a streaming body is not held up).
func looksJSON(br *bufio.Reader) bool {
	if _, err := br.Peek(1); err != nil {
		return false
	}
	b, _ := br.Peek(br.Buffered())
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// copyBufs recycles the 32 KiB relay buffers across requests.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyInto copies src into w, returning the first read or write error.
func copyInto(w io.Writer, src io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	_, err := io.CopyBuffer(struct{ io.Writer }{w}, src, *bp)
	return err
}

// sink writes response bytes to the agent and keeps a capped excerpt.
type sink struct {
	w       http.ResponseWriter
	flusher http.Flusher
	n       int64
	ex      []byte
	max     int
	keep    bool // keep an excerpt (not for binary bodies)
}

func (s *sink) write(b []byte) error {
	n, err := s.w.Write(b)
	s.n += int64(n)
	if s.keep && len(s.ex) < s.max {
		s.ex = append(s.ex, b[:min(len(b), s.max-len(s.ex))]...)
	}
	if err != nil {
		return fmt.Errorf("writing to the agent: %w", err)
	}
	if s.flusher != nil {
		s.flusher.Flush()
	}
	return nil
}

func (s *sink) copyFrom(src io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := s.write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// recordExcerpt records the (masked) response bytes sent, capped.
func (e *Engine) recordExcerpt(conn int, s *sink, kind bodyKind) error {
	ex := ""
	if s.keep {
		ex = string(s.ex)
	} else {
		ex = fmt.Sprintf("[%s body not recorded]", kind)
	}
	return e.rec(record.Event{Type: record.Rows, Conn: conn, Tag: "response", Columns: []string{"response"},
		Rows: [][]*string{{&ex}}, RowCount: s.n})
}

// recordBody records a request body, masked like a response of its type.
func (e *Engine) recordBody(conn int, name, ctype string, body []byte, size int64) error {
	kind := classify(http.MethodPost, http.StatusOK, http.Header{"Content-Type": {ctype}})
	var ex string
	switch {
	case kind == bodyBinary:
		ex = "[binary body not recorded]"
	case kind == bodyJSON && e.transforms(), kind == bodyText && len(e.patterns) > 0 && looksJSON(bufio.NewReader(bytes.NewReader(body))):
		var buf bytes.Buffer
		jm := e.newJSONMasker(func(b []byte) error { buf.Write(b); return nil })
		if err := jm.Run(bytes.NewReader(body)); err != nil {
			ex = "[body not recorded: " + err.Error() + "]"
		} else {
			ex = buf.String()
		}
	default:
		ex = e.maskString(string(body))
	}
	if len(ex) > e.cfg.MaxRecordedBody {
		ex = ex[:e.cfg.MaxRecordedBody]
	}
	return e.rec(record.Event{Type: record.Rows, Conn: conn, Tag: name, Columns: []string{name}, Rows: [][]*string{{&ex}}, RowCount: size})
}
