// Package postgres is the PostgreSQL protocol engine of the ephemeral proxy: the
// step between the agent's connection and the target database
// (session → engine → guard → mask → record).
//
// For each client connection, Serve
//
//  1. answers SSLRequest ('S' with Config.TLS, else 'N') and GSSENCRequest ('N'),
//     and forwards a CancelRequest to the upstream backend of the matching
//     connection (cancel keys handed to clients are the proxy's own);
//  2. checks the StartupMessage with the guard: the database must be the grant's
//     and the user name MUST be the grant id (PGUSER = grant id, PGPASSWORD = the
//     grant's one-time client secret);
//  3. authenticates the client with SCRAM-SHA-256 against the grant's ClientSecret
//     (cleartext passwords are never requested);
//  4. logs in upstream with the grant's minted credential (SCRAM only,
//     application_name "jitgate/<grant id>", default_transaction_read_only=on for
//     read grants) and hijacks the connection;
//  5. relays the wire protocol: every Query and Parse goes through the guard, every
//     response through the masker, every statement, verdict, result and error to the
//     recorder.
//
// A blocked statement is replaced upstream by a statement that cannot parse, so
// PostgreSQL itself applies its error semantics (an aborted transaction block, or
// skipping extended-protocol messages up to Sync); the resulting syntax error is
// replaced on the way back by SQLSTATE 42501 "jitgate: blocked by policy: <reason>
// (rule <rule>)". The connection stays usable.
//
// Masking: each RowDescription is resolved, through a separate catalog connection
// with the same credential, to schema.table.column sources; with the statement's
// lineage the masker makes a plan. Passthrough plans relay DataRows without decoding
// them. Redacted columns are announced to the client as type text (OID 25); a
// redacted value in binary format whose type is not text-like becomes NULL, since
// no masked form of it can be encoded. Errors, notices, notifications, parameter
// status values and COPY TO data pass through the masker's free-text detectors;
// COPY TO STDOUT is refused outright while column rules exist.
//
// Hot path: messages are read whole into reused buffers, writes are batched until a
// natural flush point, DataRows under a passthrough plan are copied as bytes, and the
// guard caches verdicts by statement text.
package postgres

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitgate/jitgate/ephemeral/guard"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// ErrBlocked is wrapped by Exec's error when the guard refused the operation.
var ErrBlocked = errors.New("postgres: statement blocked by policy")

// ErrTargetLost is returned by Serve when the target database went away
// under a client: it shut down (57P01 admin_shutdown, 57P02
// crash_shutdown, 57P03 cannot_connect_now), closed or reset the connection
// without saying why, or refused a new one. The session proxy ends the
// session on it rather than keep a grant open on a database that is gone.
// Per-connection endings (an idle timeout's FATAL, the client's Terminate)
// are not target losses.
var ErrTargetLost = errors.New("postgres: the target database went away")

// Config is what an Engine needs to serve one grant.
type Config struct {
	// Grant is the one grant served. Required; its Target, Credential, ClientSecret
	// and ID are used.
	Grant *spec.Grant
	// Guard judges every statement. Required.
	Guard *guard.Guard
	// Masker masks every response. May be nil only when the grant has no mask
	// settings (no column rules, no detectors).
	Masker *mask.Masker
	// Recorder receives every statement, verdict and (masked) result. Required: a
	// session that cannot be recorded is refused.
	Recorder *record.Recorder
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// TLS, when set, is offered to clients on SSLRequest. Without it SSLRequest gets
	// 'N' and the client secret travels only inside SCRAM (never in cleartext).
	TLS *tls.Config

	// HandshakeTimeout bounds the client's startup and authentication. Default 30s.
	HandshakeTimeout time.Duration
	// MaxRecordedRows caps the rows recorded per statement (the count is always
	// recorded). Default record.MaxRowsPerEvent.
	MaxRecordedRows int
}

func (c *Config) validate() error {
	switch {
	case c.Grant == nil:
		return fmt.Errorf("postgres: config: no grant")
	case c.Grant.ID == "":
		return fmt.Errorf("postgres: config: grant has no id")
	case c.Grant.Target.Address == "":
		return fmt.Errorf("postgres: config: grant %s has no target address", c.Grant.ID)
	case c.Grant.Target.Database == "":
		return fmt.Errorf("postgres: config: grant %s has no target database", c.Grant.ID)
	case c.Grant.ClientSecret == "":
		return fmt.Errorf("postgres: config: grant %s has no client secret", c.Grant.ID)
	case c.Grant.Credential.Username == "":
		return fmt.Errorf("postgres: config: grant %s has no upstream credential", c.Grant.ID)
	case c.Guard == nil:
		return fmt.Errorf("postgres: config: no guard")
	case c.Recorder == nil:
		return fmt.Errorf("postgres: config: no recorder")
	case c.Masker == nil && (len(c.Grant.Mask.Columns) > 0 || len(c.Grant.Mask.Detectors) > 0):
		return fmt.Errorf("postgres: config: grant %s has mask settings but no masker", c.Grant.ID)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	if c.MaxRecordedRows <= 0 || c.MaxRecordedRows > record.MaxRowsPerEvent {
		c.MaxRecordedRows = record.MaxRowsPerEvent
	}
	return nil
}

// Engine serves the PostgreSQL connections of one grant. It is safe for concurrent
// use: call Serve once per accepted connection.
type Engine struct {
	cfg     Config
	grant   *spec.Grant
	log     *slog.Logger
	auth    *scramAuth
	catalog *catalog
	plans   *planCache

	nextConn atomic.Int64
	active   atomic.Int64 // connections being served; the catalog closes at zero
	verdicts verdictCounts

	mu    sync.Mutex
	conns map[uint32]*conn // by the proxy-side process id handed to the client
}

// New checks cfg and prepares the client authenticator (the SCRAM verifier is
// derived once from the client secret).
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	auth, err := newScramAuth(cfg.Grant.ClientSecret.Secret())
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:   cfg,
		grant: cfg.Grant,
		log:   cfg.Logger,
		auth:  auth,
		plans: newPlanCache(4096),
		conns: make(map[uint32]*conn),
	}
	e.catalog = newCatalog(e.upstreamConfig, cfg.Logger)
	return e, nil
}

// Close releases the engine's catalog connection. Connections being served are not
// affected (end them by cancelling Serve's context).
func (e *Engine) Close() error {
	e.catalog.close()
	return nil
}

func (e *Engine) masking() bool { return e.cfg.Masker != nil && e.cfg.Masker.Enabled() }

// withholdText: column rules exist but no detector could find their values in free
// text (errors, notices, notifications).
func (e *Engine) withholdText() bool { return e.columnRules() && len(e.grant.Mask.Detectors) == 0 }

func (e *Engine) columnRules() bool { return e.cfg.Masker != nil && e.cfg.Masker.HasColumnRules() }

// register hands out a proxy-side cancel key for c.
func (e *Engine) register(c *conn) {
	var b [8]byte
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if pid == 0 {
			continue
		}
		if _, taken := e.conns[pid]; taken {
			continue
		}
		c.keyPID = pid
		c.keySecret = append([]byte(nil), b[4:]...)
		e.conns[pid] = c
		return
	}
}

func (e *Engine) unregister(c *conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.keyPID != 0 && e.conns[c.keyPID] == c {
		delete(e.conns, c.keyPID)
	}
}

func (e *Engine) lookupCancel(pid uint32) *conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conns[pid]
}

// Serve handles one client connection until it ends or ctx is done. At ctx's end
// (the grant deadline) the client gets a FATAL 57P01 "jitgate: grant expired" when
// it can still be written, and both the client and the upstream are closed at once.
// Serve closes client before it returns.
func (e *Engine) Serve(ctx context.Context, client net.Conn) error {
	return e.serve(ctx, client, nil)
}

// serve is Serve with an optional observer of blocked statements (used by Exec).
func (e *Engine) serve(ctx context.Context, client net.Conn, onBlocked func(reason string)) error {
	c := &conn{
		e:         e,
		id:        int(e.nextConn.Add(1)),
		client:    client,
		onBlocked: onBlocked,
	}
	c.log = e.log.With("conn", c.id)
	return c.run(ctx)
}
