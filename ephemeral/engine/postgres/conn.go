package postgres

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/record"
)

// conn is one client connection and its upstream.
type conn struct {
	e         *Engine
	id        int
	log       *slog.Logger
	client    net.Conn
	onBlocked func(reason string)

	keyPID    uint32
	keySecret []byte

	// upFatal is the SQLSTATE of the last FATAL or PANIC the upstream sent:
	// what a closing upstream connection said about why it closes.
	upFatal string
	// terminated: the client sent Terminate, so the upstream closing is
	// this connection's own end, never the target going away.
	terminated atomic.Bool

	cwMu sync.Mutex // serialises writes to the client
	cr   *msgReader
	cw   *msgWriter
	ur   *msgReader
	uw   *msgWriter

	guard *guard.Session

	mu     sync.Mutex // guards up, killed, and client while the handshake may swap it for TLS
	up     *upstream
	killed bool

	// clientToUpstream state
	stmts     map[string]string // prepared statement name → SQL
	portals   map[string]string // portal → SQL of its statement
	described map[string]bool   // portal → a Describe of it precedes the next Execute

	// shared between the two directions
	qmu         sync.Mutex
	queue       []*pending
	qhead       int
	outstanding atomic.Int32 // Query/Execute responses not yet complete

	// upstreamToClient state
	portalPlans map[string]*rowPlan
	skipToSync  bool
	txStatus    byte
	res         resultRec
	vals        [][]byte
	typeMap     *pgtype.Map
}

// Error codes sent to clients.
const (
	codeBlocked          = "42501" // insufficient_privilege
	codeAuthFailed       = "28P01" // invalid_password
	codeAuthSpec         = "28000" // invalid_authorization_specification
	codeProtocol         = "08P01" // protocol_violation
	codeUpstream         = "08006" // connection_failure
	codeExpired          = "57P01" // admin_shutdown
	codeRecordingFailure = "58030" // io_error
	codeInternal         = "XX000"
)

var (
	errTerminated   = errors.New("postgres: client terminated")
	errCancelServed = errors.New("postgres: cancel request served")
)

// fatalError ends a connection after its message was sent to the client.
type fatalError struct {
	code, msg string
	err       error
}

func (f *fatalError) Error() string {
	if f.err != nil {
		return fmt.Sprintf("postgres: %s (%s): %v", f.msg, f.code, f.err)
	}
	return fmt.Sprintf("postgres: %s (%s)", f.msg, f.code)
}
func (f *fatalError) Unwrap() error { return f.err }

// targetDown reports whether a failed upstream login means the database is
// down (unreachable, refusing connections, shutting down or starting up)
// rather than refusing this login.
func targetDown(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return shutdownCode(pgErr.Code)
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// shutdownCode: the server is going or gone (57P01 admin_shutdown, 57P02
// crash_shutdown, 57P03 cannot_connect_now).
func shutdownCode(code string) bool {
	return code == "57P01" || code == "57P02" || code == "57P03"
}

func fatal(code, msg string, err error) error { return &fatalError{code: code, msg: msg, err: err} }

func (c *conn) run(ctx context.Context) (err error) {
	e := c.e
	defer c.client.Close()
	defer e.unregister(c)
	e.active.Add(1)
	defer func() {
		if e.active.Add(-1) == 0 {
			e.catalog.close()
		}
	}()

	done := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			c.kill(&fatalError{code: codeExpired, msg: "jitgate: grant expired"})
		case <-done:
		}
	}()
	defer func() {
		close(done)
		<-watchDone
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("postgres: conn %d: %w", c.id, ctx.Err())
		}
	}()

	if err := c.handshake(ctx); err != nil {
		if errors.Is(err, errCancelServed) {
			return nil
		}
		c.kill(err)
		return err
	}
	c.log.Debug("client connected", "remote", c.client.RemoteAddr().String())

	errc := make(chan error, 2)
	go func() { errc <- c.clientToUpstream() }()
	go func() { errc <- c.upstreamToClient(ctx) }()
	err = <-errc
	c.kill(err)
	// The client may leave first on the FATAL the upstream sent as it went
	// away: the upstream's side of the story wins.
	if err2 := <-errc; !errors.Is(err, ErrTargetLost) && errors.Is(err2, ErrTargetLost) && !c.terminated.Load() {
		err = err2
	}
	if !errors.Is(err, ErrTargetLost) && shutdownCode(c.upFatal) && !c.terminated.Load() {
		err = fmt.Errorf("%w: the upstream sent FATAL %s", ErrTargetLost, c.upFatal)
	}
	if (errors.Is(err, errTerminated) || errors.Is(err, io.EOF)) && !errors.Is(err, ErrTargetLost) {
		err = nil
	}
	if err != nil {
		c.log.Info("connection ended", "err", err)
	}
	return err
}

// kill ends the connection once: a fatalError is sent to the client first (with a
// short write timeout), then client and upstream are closed.
func (c *conn) kill(cause error) {
	c.mu.Lock()
	if c.killed {
		c.mu.Unlock()
		return
	}
	c.killed = true
	up, client := c.up, c.client
	c.mu.Unlock()
	var fe *fatalError
	if errors.As(cause, &fe) {
		_ = writeNow(client, &c.cwMu, 250*time.Millisecond, &pgproto3.ErrorResponse{
			Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: fe.code, Message: fe.msg,
		})
		_ = c.rec(record.Event{Type: record.Error, Error: fe.code + " " + fe.msg})
	}
	client.Close()
	if up != nil {
		up.conn.Close()
	}
}

func (c *conn) rec(ev record.Event) error {
	ev.Conn = c.id
	if ev.Time.IsZero() {
		ev.Time = c.e.cfg.Now()
	}
	if err := c.e.cfg.Recorder.Write(ev); err != nil {
		return fatal(codeRecordingFailure, "jitgate: the session recording failed; the session is ended", err)
	}
	return nil
}

// handshake runs SSL negotiation, the startup checks, client authentication and the
// upstream login, and greets the client (ParameterStatus, BackendKeyData,
// ReadyForQuery).
func (c *conn) handshake(ctx context.Context) error {
	e := c.e
	_ = c.client.SetDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	var startup *pgproto3.StartupMessage
	tlsDone := false
	for startup == nil {
		body, err := readStartupPacket(c.client)
		if err != nil {
			return fmt.Errorf("postgres: startup: %w", err)
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case sslRequestCode:
			if e.cfg.TLS == nil || tlsDone {
				if _, err := c.client.Write([]byte{'N'}); err != nil {
					return err
				}
				continue
			}
			if _, err := c.client.Write([]byte{'S'}); err != nil {
				return err
			}
			// The read above was unbuffered, so no plaintext byte sent before the TLS
			// handshake can be mistaken for protected data (CVE-2021-23214 class).
			tc := tls.Server(c.client, e.cfg.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("postgres: tls handshake: %w", err)
			}
			c.mu.Lock()
			c.client = tc
			c.mu.Unlock()
			tlsDone = true
		case gssEncRequestCode:
			if _, err := c.client.Write([]byte{'N'}); err != nil {
				return err
			}
		case cancelRequestCode:
			var m pgproto3.CancelRequest
			if err := m.Decode(body); err != nil {
				return fmt.Errorf("postgres: cancel request: %w", err)
			}
			c.serveCancel(ctx, &m)
			return errCancelServed
		case pgproto3.ProtocolVersion30, pgproto3.ProtocolVersion32:
			startup = &pgproto3.StartupMessage{}
			if err := startup.Decode(body); err != nil {
				return fatal(codeProtocol, "jitgate: invalid startup message", err)
			}
		default:
			return fatal(codeProtocol, fmt.Sprintf("jitgate: unsupported frontend protocol %d.%d", code>>16, code&0xffff), nil)
		}
	}

	c.cr = newMsgReader(c.client, maxClientMsg)
	c.cw = &msgWriter{w: c.client, mu: &c.cwMu}

	// Options the proxy does not implement are refused like PostgreSQL does: with
	// NegotiateProtocolVersion, downgrading to 3.0.
	params := make(map[string]string, len(startup.Parameters))
	var unrecognized []string
	for k, v := range startup.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			unrecognized = append(unrecognized, k)
			continue
		}
		params[k] = v
	}
	if startup.ProtocolVersion != pgproto3.ProtocolVersion30 || len(unrecognized) > 0 {
		if err := c.cw.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized}); err != nil {
			return err
		}
	}
	if params["user"] != e.grant.ID {
		return fatal(codeAuthSpec, "jitgate: the user name must be the grant id", nil)
	}
	if err := e.cfg.Guard.CheckStartup(params, e.grant.Target.Database, e.grant.ID); err != nil {
		return fatal(codeAuthSpec, "jitgate: startup refused: "+err.Error(), err)
	}
	runtime, err := upstreamParams(params)
	if err != nil {
		return err
	}
	if err := c.authenticate(); err != nil {
		c.log.Info("client authentication failed", "remote", c.client.RemoteAddr().String(), "err", err)
		return fatal(codeAuthFailed, fmt.Sprintf("password authentication failed for user %q", e.grant.ID), err)
	}

	up, err := e.dialUpstream(ctx, runtime)
	if err != nil {
		c.log.Warn("upstream login failed", "err", err)
		if targetDown(err) {
			err = fmt.Errorf("%w: %w", ErrTargetLost, err)
		}
		return fatal(codeUpstream, "jitgate: the target database is unavailable", err)
	}
	c.mu.Lock()
	if c.killed {
		c.mu.Unlock()
		up.conn.Close()
		return fatal(codeExpired, "jitgate: grant expired", nil)
	}
	c.up = up
	c.mu.Unlock()
	c.ur = newMsgReader(up.conn, maxServerMsg)
	c.uw = &msgWriter{w: up.conn}
	c.guard = e.cfg.Guard.NewSession()
	c.stmts = map[string]string{}
	c.portals = map[string]string{}
	c.described = map[string]bool{}
	c.portalPlans = map[string]*rowPlan{}
	c.txStatus = up.txStatus
	c.typeMap = pgtype.NewMap()
	e.register(c)

	for k, v := range up.params {
		if err := c.cw.send(&pgproto3.ParameterStatus{Name: k, Value: string(c.maskText([]byte(v)))}); err != nil {
			return err
		}
	}
	if err := c.cw.send(&pgproto3.BackendKeyData{ProcessID: c.keyPID, SecretKey: c.keySecret}); err != nil {
		return err
	}
	if err := c.cw.send(&pgproto3.ReadyForQuery{TxStatus: up.txStatus}); err != nil {
		return err
	}
	if err := c.cw.flush(); err != nil {
		return err
	}
	_ = c.client.SetDeadline(time.Time{})
	return nil
}

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	maxStartupPacket  = 10000 // MAX_STARTUP_PACKET_LENGTH
)

// readStartupPacket reads one length-prefixed startup packet without buffering
// beyond it.
func readStartupPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:]))) - 4
	if n < 4 || n > maxStartupPacket {
		return nil, fmt.Errorf("invalid startup packet length %d", n+4)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, unexpectedEOF(err)
	}
	return body, nil
}

// forwardedParams are the startup parameters passed on to the upstream login.
// Everything else (options, search_path, role, application_name, ...) stays at the
// proxy: the session's settings are jitgate's, not the client's.
var forwardedParams = []string{"DateStyle", "TimeZone", "IntervalStyle", "extra_float_digits"}

// upstreamParams picks the client's startup parameters the upstream login carries.
// A client encoding other than UTF-8 is refused: encodings whose multi-byte
// characters can contain ASCII quote or backslash bytes make the guard and the
// server read a statement differently (CVE-2025-1094 class).
func upstreamParams(params map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range forwardedParams {
		if v, ok := params[k]; ok {
			out[k] = v
		}
	}
	if enc, ok := params["client_encoding"]; ok {
		switch strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(enc), "-", "")) {
		case "UTF8", "UNICODE":
			out["client_encoding"] = "UTF8"
		case "SQL_ASCII", "AUTO":
			// The session stays UTF8.
		default:
			return nil, fatal(codeAuthSpec, fmt.Sprintf("jitgate: client_encoding %q is not allowed (use UTF8)", enc), nil)
		}
	}
	return out, nil
}

func (c *conn) serveCancel(ctx context.Context, m *pgproto3.CancelRequest) {
	target := c.e.lookupCancel(m.ProcessID)
	if target == nil || subtle.ConstantTimeCompare(target.keySecret, m.SecretKey) != 1 {
		c.log.Info("cancel request with an unknown key ignored")
		return
	}
	target.mu.Lock()
	up := target.up
	target.mu.Unlock()
	if up == nil {
		return
	}
	if err := c.e.cancel(ctx, up); err != nil {
		c.log.Warn("cancel forward failed", "err", err)
	}
}
