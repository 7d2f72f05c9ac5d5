package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// poisonSQL replaces a blocked statement upstream. It cannot parse, so PostgreSQL
// answers with an error and applies its own error semantics; the error is then
// replaced by the guard's refusal on the way back.
const poisonSQL = "jitgate_blocked_by_policy"

// pendKind is what a client message expects back from upstream.
type pendKind uint8

const (
	pkQuery    pendKind = iota + 1 // simple Query: results, then ReadyForQuery
	pkFunc                         // FunctionCall (always refused): ReadyForQuery
	pkParse                        // ParseComplete
	pkBind                         // BindComplete
	pkDescribe                     // [ParameterDescription] RowDescription | NoData
	pkExecute                      // rows, CommandComplete | EmptyQuery | PortalSuspended
	pkClose                        // CloseComplete
	pkSync                         // ReadyForQuery
)

func (k pendKind) String() string {
	switch k {
	case pkQuery:
		return "query"
	case pkFunc:
		return "function call"
	case pkParse:
		return "parse"
	case pkBind:
		return "bind"
	case pkDescribe:
		return "describe"
	case pkExecute:
		return "execute"
	case pkClose:
		return "close"
	case pkSync:
		return "sync"
	}
	return "unknown"
}

func (k pendKind) extended() bool { return k >= pkParse && k <= pkClose }

// pending is one expected upstream response, queued by clientToUpstream in the
// order the messages went upstream and consumed in the same order by
// upstreamToClient.
type pending struct {
	kind pendKind
	// sql is the Query text, the Parse text, or the SQL of the statement a
	// Describe or Execute refers to.
	sql string
	// shape is the guard's Verdict.Shape of a Query: when set, the masking
	// plan and lineage are keyed by it instead of the text, so statements that
	// differ only in constants share them (the guard proved their trees differ
	// only in constant leaves, which lineage never reads).
	shape  string
	portal string
	// describePortal: a Describe of a portal (its plan is kept for Execute).
	describePortal bool
	// internal: injected by the proxy; the response is not forwarded.
	internal bool
	// blocked: the guard's refusal that replaces the upstream error.
	blocked string

	// upstreamToClient state for simple queries
	stmtIdx    int
	plan       *rowPlan
	copyRefuse bool
}

func (c *conn) push(p *pending) {
	c.qmu.Lock()
	c.queue = append(c.queue, p)
	c.qmu.Unlock()
	if p.kind == pkQuery || p.kind == pkExecute {
		c.outstanding.Add(1)
	}
}

func (c *conn) head() *pending {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.qhead < len(c.queue) {
		return c.queue[c.qhead]
	}
	return nil
}

func (c *conn) pop() {
	c.qmu.Lock()
	p := c.queue[c.qhead]
	c.queue[c.qhead] = nil
	c.qhead++
	if c.qhead == len(c.queue) {
		c.queue, c.qhead = c.queue[:0], 0
	} else if c.qhead > 256 && c.qhead*2 > len(c.queue) {
		n := copy(c.queue, c.queue[c.qhead:])
		c.queue, c.qhead = c.queue[:n], 0
	}
	c.qmu.Unlock()
	if p.kind == pkQuery || p.kind == pkExecute {
		c.outstanding.Add(-1)
	}
}

func (c *conn) blockedMessage(reason string) string {
	return fmt.Sprintf("jitgate: blocked by policy: %s (rule %s)", reason, c.e.grant.Rule)
}

// check runs the guard and records the statement and the verdict. It
// returns the guard's refusal message ("" when allowed) and the verdict's Shape.
func (c *conn) check(typ record.EventType, sql, name string) (string, string, error) {
	v := c.guard.Check(sql)
	if err := c.rec(record.Event{Type: typ, Statement: sql, Tag: name}); err != nil {
		return "", "", err
	}
	allowed := v.Allowed
	reason := v.Reason
	if !allowed && reason == "" {
		reason = "refused"
	}
	if err := c.rec(record.Event{Type: record.Verdict, Allowed: &allowed, Reason: v.Reason}); err != nil {
		return "", "", err
	}
	c.e.verdicts.note(allowed)
	if allowed {
		return "", v.Shape, nil
	}
	if c.onBlocked != nil {
		c.onBlocked(reason)
	}
	return c.blockedMessage(reason), "", nil
}

// clientToUpstream reads client messages, judges them and relays them.
func (c *conn) clientToUpstream() error {
	for {
		t, body, err := c.cr.next()
		if err != nil {
			if errors.Is(err, errMsgTooLarge) {
				return fatal(codeProtocol, "jitgate: message too large", err)
			}
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("postgres: read client: %w", err)
		}
		flushNow, err := c.fromClient(t, body)
		if err != nil {
			return err
		}
		if flushNow || c.cr.buffered() == 0 || c.uw.pending() >= flushAt {
			if err := c.uw.flush(); err != nil {
				return fmt.Errorf("postgres: write upstream: %w", err)
			}
		}
		if t == 'X' {
			return errTerminated
		}
	}
}

func protocolViolation(format string, args ...any) error {
	return fatal(codeProtocol, "jitgate: "+fmt.Sprintf(format, args...), nil)
}

// fromClient handles one client message; it reports whether it is a flush point.
func (c *conn) fromClient(t byte, body []byte) (bool, error) {
	switch t {
	case 'Q':
		sql, _, ok := cstring(body)
		if !ok {
			return false, protocolViolation("malformed Query message")
		}
		blocked, shape, err := c.check(record.Query, sql, "")
		if err != nil {
			return false, err
		}
		c.push(&pending{kind: pkQuery, sql: sql, shape: shape, blocked: blocked})
		if blocked != "" {
			return true, c.uw.send(&pgproto3.Query{String: poisonSQL})
		}
		c.uw.raw(t, body)
		return true, nil

	case 'P':
		var m pgproto3.Parse
		if err := m.Decode(body); err != nil {
			return false, protocolViolation("malformed Parse message")
		}
		blocked, _, err := c.check(record.Parse, m.Query, m.Name)
		if err != nil {
			return false, err
		}
		c.push(&pending{kind: pkParse, sql: m.Query, blocked: blocked})
		if blocked != "" {
			delete(c.stmts, m.Name)
			return false, c.uw.send(&pgproto3.Parse{Name: m.Name, Query: poisonSQL})
		}
		c.stmts[m.Name] = m.Query
		c.uw.raw(t, body)
		return false, nil

	case 'B':
		portal, rest, ok := cstring(body)
		stmt, _, ok2 := cstring(rest)
		if !ok || !ok2 {
			return false, protocolViolation("malformed Bind message")
		}
		sql := c.stmts[stmt]
		c.portals[portal] = sql
		c.described[portal] = false
		if err := c.rec(record.Event{Type: record.Bind, Statement: sql, Tag: portal}); err != nil {
			return false, err
		}
		c.push(&pending{kind: pkBind, portal: portal})
		c.uw.raw(t, body)
		return false, nil

	case 'D':
		if len(body) < 2 {
			return false, protocolViolation("malformed Describe message")
		}
		name, _, ok := cstring(body[1:])
		if !ok {
			return false, protocolViolation("malformed Describe message")
		}
		switch body[0] {
		case 'S':
			c.push(&pending{kind: pkDescribe, sql: c.stmts[name]})
		case 'P':
			c.described[name] = true
			c.push(&pending{kind: pkDescribe, sql: c.portals[name], portal: name, describePortal: true})
		default:
			return false, protocolViolation("invalid Describe target %q", body[0])
		}
		c.uw.raw(t, body)
		return false, nil

	case 'E':
		portal, _, ok := cstring(body)
		if !ok {
			return false, protocolViolation("malformed Execute message")
		}
		sql := c.portals[portal]
		if c.e.masking() && !c.described[portal] {
			// The rows of an Execute carry no description: ask for the portal's, so
			// they can be masked; the answer is kept from the client.
			c.described[portal] = true
			c.push(&pending{kind: pkDescribe, sql: sql, portal: portal, describePortal: true, internal: true})
			if err := c.uw.send(&pgproto3.Describe{ObjectType: 'P', Name: portal}); err != nil {
				return false, err
			}
		}
		if err := c.rec(record.Event{Type: record.Execute, Statement: sql, Tag: portal}); err != nil {
			return false, err
		}
		c.push(&pending{kind: pkExecute, sql: sql, portal: portal})
		c.uw.raw(t, body)
		return false, nil

	case 'C':
		if len(body) < 2 {
			return false, protocolViolation("malformed Close message")
		}
		name, _, ok := cstring(body[1:])
		if !ok {
			return false, protocolViolation("malformed Close message")
		}
		switch body[0] {
		case 'S':
			delete(c.stmts, name)
		case 'P':
			delete(c.portals, name)
			delete(c.described, name)
		default:
			return false, protocolViolation("invalid Close target %q", body[0])
		}
		c.push(&pending{kind: pkClose})
		c.uw.raw(t, body)
		return false, nil

	case 'S':
		c.push(&pending{kind: pkSync})
		c.uw.raw(t, body)
		return true, nil

	case 'H':
		c.uw.raw(t, body)
		return true, nil

	case 'F':
		// A FunctionCall names a function by OID and carries no SQL the guard could
		// judge: always refused.
		reason := "FunctionCall messages are not allowed"
		f := false
		if err := c.rec(record.Event{Type: record.Query, Statement: "<FunctionCall message>"}); err != nil {
			return false, err
		}
		if err := c.rec(record.Event{Type: record.Verdict, Allowed: &f, Reason: reason}); err != nil {
			return false, err
		}
		c.e.verdicts.note(false)
		if c.onBlocked != nil {
			c.onBlocked(reason)
		}
		c.push(&pending{kind: pkFunc, blocked: c.blockedMessage(reason)})
		return true, c.uw.send(&pgproto3.Query{String: poisonSQL})

	case 'd', 'c', 'f':
		// COPY FROM STDIN data is relayed only while a statement that may be a COPY
		// is running; PostgreSQL ignores it otherwise, and so does the proxy.
		if c.outstanding.Load() > 0 {
			c.uw.raw(t, body)
		}
		return t != 'd', nil

	case 'X':
		c.terminated.Store(true) // the upstream closing after this is expected
		c.uw.raw(t, body)
		return true, nil
	}
	return false, protocolViolation("unsupported message type %q", t)
}

// upstreamToClient reads upstream messages, masks them and relays them.
func (c *conn) upstreamToClient(ctx context.Context) error {
	for {
		t, body, err := c.ur.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				_ = c.cw.flush()
				if c.terminated.Load() {
					// The client said goodbye: the upstream closing is expected,
					// not an error to tell it or to record.
					return io.EOF
				}
				if c.upFatal == "" || shutdownCode(c.upFatal) {
					// Shut down, or gone without a word: not this connection's own end.
					err = fmt.Errorf("%w: %w", ErrTargetLost, err)
				}
				return fatal(codeUpstream, "jitgate: the target database closed the connection", err)
			}
			c.mu.Lock()
			killed := c.killed // closed by the proxy itself (deadline, the client left)
			c.mu.Unlock()
			if !killed {
				err = fmt.Errorf("%w: %w", ErrTargetLost, err)
			}
			return fmt.Errorf("postgres: read upstream: %w", err)
		}
		if err := c.fromUpstream(ctx, t, body); err != nil {
			return err
		}
		if t == 'Z' || c.ur.buffered() == 0 || c.cw.pending() >= flushAt {
			if err := c.cw.flush(); err != nil {
				return fmt.Errorf("postgres: write client: %w", err)
			}
		}
	}
}

func unexpected(t byte, h *pending) error {
	state := "idle"
	if h != nil {
		state = h.kind.String()
	}
	return fatal(codeProtocol, fmt.Sprintf("jitgate: unexpected message %q from the target while expecting %s", t, state), nil)
}

// skipExtended drops the extended-protocol entries PostgreSQL skips after an error
// (everything up to the next Sync).
func (c *conn) skipExtended() {
	for {
		h := c.head()
		if h == nil || h.kind == pkSync || !h.kind.extended() {
			return
		}
		c.pop()
	}
}

func (c *conn) fromUpstream(ctx context.Context, t byte, body []byte) error {
	if c.skipToSync {
		c.skipExtended()
	}
	h := c.head()
	switch t {
	case 'D': // DataRow
		var p *rowPlan
		switch {
		case h != nil && h.kind == pkQuery:
			p = h.plan
		case h != nil && h.kind == pkExecute:
			p = c.portalPlans[h.portal]
		default:
			return unexpected(t, h)
		}
		if h.copyRefuse {
			return nil
		}
		if p == nil && c.e.masking() {
			return fatal(codeInternal, "jitgate: rows without a description cannot be masked", nil)
		}
		if p == nil || p.passthrough {
			c.cw.raw(t, body)
			if c.res.count < int64(c.e.cfg.MaxRecordedRows) {
				vals, err := dataRowValues(body, c.vals)
				if err != nil {
					return fatal(codeProtocol, "jitgate: malformed DataRow from the target", err)
				}
				c.vals = vals
				c.recordRow(p, vals)
			} else {
				c.res.count++
			}
			return nil
		}
		vals, err := c.maskRow(p, body)
		if err != nil {
			return fatal(codeProtocol, "jitgate: malformed DataRow from the target", err)
		}
		c.recordRow(p, vals)
		return nil

	case 'C': // CommandComplete
		if h == nil || (h.kind != pkQuery && h.kind != pkExecute) {
			return unexpected(t, h)
		}
		var m pgproto3.CommandComplete
		if err := m.Decode(body); err != nil {
			return fatal(codeProtocol, "jitgate: malformed CommandComplete", err)
		}
		refused := h.copyRefuse
		if err := c.endResult(string(m.CommandTag)); err != nil {
			return err
		}
		if h.kind == pkExecute {
			c.pop()
		} else {
			h.stmtIdx++
			h.plan = nil
			h.copyRefuse = false
		}
		if !refused {
			c.cw.raw(t, body)
		}
		return nil

	case 'T': // RowDescription
		if h == nil || (h.kind != pkQuery && h.kind != pkDescribe) {
			return unexpected(t, h)
		}
		idx := 0
		if h.kind == pkQuery {
			idx = h.stmtIdx
		}
		p, err := c.planFor(ctx, h.sql, h.shape, idx, body)
		if err != nil {
			return fatal(codeInternal, "jitgate: cannot plan masking for this result", err)
		}
		switch h.kind {
		case pkQuery:
			h.plan = p
			c.res = resultRec{active: true, names: p.names}
		case pkDescribe:
			if h.describePortal {
				c.portalPlans[h.portal] = p
			}
			c.pop()
			if h.internal {
				return nil
			}
		}
		c.cw.buf = append(c.cw.buf, p.msg...)
		return nil

	case 'Z': // ReadyForQuery
		if h == nil || (h.kind != pkSync && h.kind != pkQuery && h.kind != pkFunc) {
			return unexpected(t, h)
		}
		if len(body) != 1 {
			return fatal(codeProtocol, "jitgate: malformed ReadyForQuery", nil)
		}
		if err := c.endResult(""); err != nil {
			return err
		}
		c.pop()
		c.skipToSync = false
		c.txStatus = body[0]
		c.cw.raw(t, body)
		return nil

	case '1': // ParseComplete
		if h == nil || h.kind != pkParse {
			return unexpected(t, h)
		}
		c.pop()
		c.cw.raw(t, body)
		return nil

	case '2': // BindComplete
		if h == nil || h.kind != pkBind {
			return unexpected(t, h)
		}
		delete(c.portalPlans, h.portal)
		c.pop()
		c.cw.raw(t, body)
		return nil

	case '3': // CloseComplete
		if h == nil || h.kind != pkClose {
			return unexpected(t, h)
		}
		c.pop()
		c.cw.raw(t, body)
		return nil

	case 't': // ParameterDescription
		if h == nil || h.kind != pkDescribe || h.describePortal {
			return unexpected(t, h)
		}
		c.cw.raw(t, body)
		return nil

	case 'n': // NoData
		if h == nil || h.kind != pkDescribe {
			return unexpected(t, h)
		}
		if h.describePortal {
			c.portalPlans[h.portal] = &rowPlan{passthrough: true}
		}
		c.pop()
		if !h.internal {
			c.cw.raw(t, body)
		}
		return nil

	case 'I': // EmptyQueryResponse
		if h == nil || (h.kind != pkQuery && h.kind != pkExecute) {
			return unexpected(t, h)
		}
		if h.kind == pkExecute {
			c.pop()
		} else {
			h.stmtIdx++
		}
		c.cw.raw(t, body)
		return nil

	case 's': // PortalSuspended
		if h == nil || h.kind != pkExecute {
			return unexpected(t, h)
		}
		if err := c.endResult(""); err != nil {
			return err
		}
		c.pop()
		c.cw.raw(t, body)
		return nil

	case 'E': // ErrorResponse
		return c.upstreamError(h, body)

	case 'N': // NoticeResponse
		var m pgproto3.NoticeResponse
		if err := m.Decode(body); err != nil {
			return fatal(codeProtocol, "jitgate: malformed NoticeResponse", err)
		}
		er := pgproto3.ErrorResponse(m)
		c.maskError(&er)
		if err := c.rec(record.Event{Type: record.Notice, Error: er.Code + " " + er.Message}); err != nil {
			return err
		}
		nm := pgproto3.NoticeResponse(er)
		return c.cw.send(&nm)

	case 'A': // NotificationResponse
		var m pgproto3.NotificationResponse
		if err := m.Decode(body); err != nil {
			return fatal(codeProtocol, "jitgate: malformed NotificationResponse", err)
		}
		m.Channel = string(c.maskText([]byte(m.Channel)))
		m.Payload = string(c.maskText([]byte(m.Payload)))
		if c.e.withholdText() {
			m.Payload = "jitgate: payload withheld while column masking rules apply"
		}
		if err := c.rec(record.Event{Type: record.Notice, Tag: "notification " + m.Channel, Error: m.Payload}); err != nil {
			return err
		}
		m.PID = c.keyPID
		return c.cw.send(&m)

	case 'S': // ParameterStatus
		if !c.e.masking() {
			c.cw.raw(t, body)
			return nil
		}
		var m pgproto3.ParameterStatus
		if err := m.Decode(body); err != nil {
			return fatal(codeProtocol, "jitgate: malformed ParameterStatus", err)
		}
		m.Value = string(c.maskText([]byte(m.Value)))
		return c.cw.send(&m)

	case 'G': // CopyInResponse
		if h == nil || (h.kind != pkQuery && h.kind != pkExecute) {
			return unexpected(t, h)
		}
		c.cw.raw(t, body)
		return nil

	case 'H': // CopyOutResponse
		if h == nil || (h.kind != pkQuery && h.kind != pkExecute) {
			return unexpected(t, h)
		}
		if c.e.columnRules() {
			msg := "jitgate: COPY TO STDOUT is not allowed while column masking rules apply; use SELECT"
			if h.kind == pkExecute {
				return fatal(codeBlocked, msg, nil)
			}
			h.copyRefuse = true
			if err := c.rec(record.Event{Type: record.Error, Statement: h.sql, Error: codeBlocked + " " + msg}); err != nil {
				return err
			}
			return c.cw.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeBlocked, Message: msg})
		}
		c.res = resultRec{active: true, names: []string{"copy"}}
		c.cw.raw(t, body)
		return nil

	case 'd': // CopyData (COPY TO)
		if h == nil || (h.kind != pkQuery && h.kind != pkExecute) {
			return unexpected(t, h)
		}
		if h.copyRefuse {
			return nil
		}
		out := c.maskText(body)
		c.recordRow(nil, [][]byte{out})
		c.cw.raw(t, out)
		return nil

	case 'c': // CopyDone
		if h == nil || (h.kind != pkQuery && h.kind != pkExecute) {
			return unexpected(t, h)
		}
		if !h.copyRefuse {
			c.cw.raw(t, body)
		}
		return nil
	}
	// CopyBothResponse (replication), FunctionCallResponse (never asked for),
	// authentication or key data after startup, or anything unknown.
	return unexpected(t, h)
}

func (c *conn) upstreamError(h *pending, body []byte) error {
	var m pgproto3.ErrorResponse
	if err := m.Decode(body); err != nil {
		return fatal(codeProtocol, "jitgate: malformed ErrorResponse", err)
	}
	if sev := cmp.Or(m.SeverityUnlocalized, m.Severity); sev == "FATAL" || sev == "PANIC" {
		c.upFatal = m.Code
	}
	if h != nil && h.blocked != "" {
		m = pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: codeBlocked, Message: h.blocked}
		if h.kind == pkQuery {
			h.blocked = "" // a multi-statement string is refused once
		}
	} else {
		c.maskError(&m)
	}
	if err := c.endResult(""); err != nil {
		return err
	}
	st := ""
	if h != nil {
		st = h.sql
	}
	if err := c.rec(record.Event{Type: record.Error, Statement: st, Error: m.Code + " " + m.Message}); err != nil {
		return err
	}
	if h != nil && h.kind.extended() {
		c.skipToSync = true
		c.skipExtended()
	}
	if h != nil && h.kind == pkQuery {
		h.plan = nil
		h.copyRefuse = false
	}
	return c.cw.send(&m)
}

// endResult records the rows and tag of the result that just ended.
func (c *conn) endResult(tag string) error {
	r := c.res
	c.res = resultRec{}
	if r.active || r.count > 0 {
		if err := c.rec(record.Event{Type: record.Rows, Columns: r.names, Rows: r.rows, RowCount: r.count}); err != nil {
			return err
		}
	}
	if tag != "" {
		return c.rec(record.Event{Type: record.Result, Tag: tag})
	}
	return nil
}

func (c *conn) maskText(b []byte) []byte {
	if !c.e.masking() {
		return b
	}
	return c.e.cfg.Masker.Text(b)
}

// maskError passes every free-text field of an error or notice through the
// masker's detectors: messages echo values (`invalid input syntax for type
// integer: "4111..."`, RAISE NOTICE, constraint details).
func (c *conn) maskError(m *pgproto3.ErrorResponse) {
	if !c.e.masking() {
		return
	}
	if c.e.withholdText() && withheldClass(m) {
		// Column rules without detectors: nothing could find a masked value inside
		// the text, so texts that can echo values are withheld (fail closed).
		*m = pgproto3.ErrorResponse{Severity: m.Severity, SeverityUnlocalized: m.SeverityUnlocalized, Code: m.Code,
			Message: "jitgate: message withheld while column masking rules apply (SQLSTATE " + m.Code + ")"}
		return
	}
	f := func(s string) string {
		if s == "" {
			return s
		}
		return string(c.e.cfg.Masker.Text([]byte(s)))
	}
	m.Message = f(m.Message)
	m.Detail = f(m.Detail)
	m.Hint = f(m.Hint)
	m.Where = f(m.Where)
	m.InternalQuery = f(m.InternalQuery)
	m.SchemaName = f(m.SchemaName)
	m.TableName = f(m.TableName)
	m.ColumnName = f(m.ColumnName)
	m.DataTypeName = f(m.DataTypeName)
	m.ConstraintName = f(m.ConstraintName)
	for k, v := range m.UnknownFields {
		m.UnknownFields[k] = f(v)
	}
}

var _ = mask.ActionPass

// withheldClass reports whether an error or notice can echo data values: data
// exceptions (22), integrity violations (23, whose detail prints the key), PL/pgSQL
// RAISE (P0) and every notice or warning (RAISE NOTICE from any function).
func withheldClass(m *pgproto3.ErrorResponse) bool {
	switch m.Severity {
	case "NOTICE", "WARNING", "INFO", "LOG", "DEBUG":
		return true
	}
	return strings.HasPrefix(m.Code, "22") || strings.HasPrefix(m.Code, "23") || strings.HasPrefix(m.Code, "P0")
}
