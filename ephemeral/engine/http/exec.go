package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jitgate/jitgate/ephemeral/guard/httprule"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Exec runs one request, an exec grant's operation ("GET /v1/flags", header
// lines and a body after a blank line allowed; see httprule.ParseOperation),
// through the same guard, mask and record path as Serve. The masked response
// body is Result.Output (at most MaxExecOutput bytes, then Truncated), the
// status Result.Tag ("HTTP 200"), the response Content-Type Result.Notices[0].
// A refused request returns an error wrapping ErrBlocked and never reaches the
// target; an upstream status of 4xx or 5xx is a result, not an error.
func (e *Engine) Exec(ctx context.Context, operation string) (*spec.Result, error) {
	conn := int(e.conns.Add(1))
	defer e.transport.CloseIdleConnections()
	op, err := httprule.ParseOperation(operation)
	if err != nil {
		_ = e.rec(record.Event{Type: record.Query, Conn: conn, Statement: e.maskString(firstLine(operation)), Tag: "http"})
		if rerr := e.verdict(conn, "", false, err.Error(), ""); rerr != nil {
			return nil, fmt.Errorf("http: record: %w", rerr)
		}
		return nil, fmt.Errorf("http: %w: %v", ErrBlocked, err)
	}
	x := &exchange{conn: conn, method: op.Method, target: op.Target, header: op.Header, length: int64(len(op.Body))}
	if len(op.Body) > 0 {
		x.body = bytes.NewReader(op.Body)
	}
	cw := &captureWriter{h: http.Header{}, max: e.cfg.MaxExecOutput}
	o := e.do(ctx, cw, x)
	switch {
	case o.blocked:
		return nil, fmt.Errorf("http: %w: %s", ErrBlocked, o.reason)
	case o.err != nil:
		return nil, fmt.Errorf("http: exec: %w", o.err)
	}
	res := &spec.Result{Output: cw.body.String(), Tag: "HTTP " + strconv.Itoa(o.status), Truncated: cw.cut}
	if ct := cw.h.Get("Content-Type"); ct != "" {
		res.Notices = []string{"Content-Type: " + ct}
	}
	return res, nil
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		s = s[:i]
	}
	return clipString(s)
}

// errOutputFull stops reading the upstream body once Exec has all it keeps.
var errOutputFull = errors.New("http: exec output limit reached")

// captureWriter is the ResponseWriter of Exec: it keeps the status, headers
// and the first max body bytes.
type captureWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
	max    int
	cut    bool
}

func (c *captureWriter) Header() http.Header { return c.h }

func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if room := c.max - c.body.Len(); room < len(p) {
		c.cut = true
		if room > 0 {
			c.body.Write(p[:room])
		}
		return max(room, 0), errOutputFull
	}
	return c.body.Write(p)
}

func (c *captureWriter) Flush() {}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
