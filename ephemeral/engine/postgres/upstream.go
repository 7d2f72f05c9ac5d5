package postgres

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// upstreamConfig builds the pgconn config for the grant's minted credential. The
// config is built from explicit values only: whatever libpq environment variables
// ParseConfig merged in (PGOPTIONS, PGAPPNAME, PGSERVICE, fallbacks, ...) is
// overwritten, so the proxy's process environment cannot change its login.
func (e *Engine) upstreamConfig(appSuffix string) (*pgconn.Config, error) {
	host, portStr, err := net.SplitHostPort(e.grant.Target.Address)
	if err != nil {
		return nil, fmt.Errorf("postgres: upstream address %q: %w", e.grant.Target.Address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("postgres: upstream port %q: %w", portStr, err)
	}
	cfg, err := pgconn.ParseConfig("sslmode=disable require_auth=scram-sha-256 target_session_attrs=any")
	if err != nil {
		return nil, fmt.Errorf("postgres: upstream config: %w", err)
	}
	cfg.Host = host
	cfg.Port = uint16(port)
	cfg.Database = e.grant.Target.Database
	cfg.User = e.grant.Credential.Username
	cfg.Password = string(e.grant.Credential.Password)
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	cfg.KerberosSrvName, cfg.KerberosSpn = "", ""
	cfg.OAuthTokenProvider = nil
	cfg.RequireAuth = "scram-sha-256"
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	cfg.ConnectTimeout = 30 * time.Second
	cfg.RuntimeParams = map[string]string{"application_name": "jitgate/" + e.grant.ID + appSuffix}
	if e.grant.Guard.Access == spec.Read {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	return cfg, nil
}

// upstream is a logged-in, hijacked upstream connection.
type upstream struct {
	conn      net.Conn
	pid       uint32
	secretKey []byte
	params    map[string]string
	txStatus  byte
}

func (e *Engine) dialUpstream(ctx context.Context, params map[string]string) (*upstream, error) {
	cfg, err := e.upstreamConfig("")
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	pg, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: upstream connect: %w", err)
	}
	if err := pg.SyncConn(ctx); err != nil {
		pg.Close(context.Background())
		return nil, fmt.Errorf("postgres: upstream sync: %w", err)
	}
	hj, err := pg.Hijack()
	if err != nil {
		pg.Close(context.Background())
		return nil, fmt.Errorf("postgres: upstream hijack: %w", err)
	}
	if hj.Frontend.ReadBufferLen() != 0 {
		// Bytes already read by pgconn would be lost to the relay: refuse.
		hj.Conn.Close()
		return nil, fmt.Errorf("postgres: upstream hijack: %d unread bytes buffered", hj.Frontend.ReadBufferLen())
	}
	return &upstream{conn: hj.Conn, pid: hj.PID, secretKey: hj.SecretKey, params: hj.ParameterStatuses, txStatus: hj.TxStatus}, nil
}

// cancel asks the upstream server to cancel the running statement of u.
func (e *Engine) cancel(ctx context.Context, u *upstream) error {
	var d net.Dialer
	ctx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	nc, err := d.DialContext(ctx, "tcp", e.grant.Target.Address)
	if err != nil {
		return fmt.Errorf("postgres: cancel: %w", err)
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	buf, err := (&pgproto3.CancelRequest{ProcessID: u.pid, SecretKey: u.secretKey}).Encode(nil)
	if err != nil {
		return fmt.Errorf("postgres: cancel: %w", err)
	}
	if _, err := nc.Write(buf); err != nil {
		return fmt.Errorf("postgres: cancel: %w", err)
	}
	// The server closes the connection when done; wait for it briefly.
	var one [1]byte
	_, _ = nc.Read(one[:])
	return nil
}
