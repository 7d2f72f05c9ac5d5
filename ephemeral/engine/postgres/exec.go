package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// Result is the masked result of an exec-mode operation. With several statements
// in the operation, it is the last result that returned rows (or the last result).
type Result struct {
	Columns    []string
	Rows       [][]*string // nil = NULL
	CommandTag string
	Notices    []string
}

// Exec runs the grant's one operation (exec mode) through exactly the path a
// session client takes: an in-process client logs in with the grant's client secret
// over an in-memory pipe to Serve, so the guard, masker and recorder see the
// operation as they would see it from psql. The operation runs with the simple
// query protocol and text results.
//
// When the grant names an operation, sql must be exactly that operation: an
// approval covers that text and nothing else. A blocked operation returns an error
// wrapping ErrBlocked with the guard's reason.
func (e *Engine) Exec(ctx context.Context, sql string) (*Result, error) {
	if e.grant.Operation != "" && sql != e.grant.Operation {
		return nil, fmt.Errorf("%w: the statement is not the grant's operation", ErrBlocked)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	clientEnd, serverEnd := net.Pipe()
	var (
		mu      sync.Mutex
		reasons []string
	)
	onBlocked := func(r string) {
		mu.Lock()
		reasons = append(reasons, r)
		mu.Unlock()
	}
	served := make(chan error, 1)
	go func() { served <- e.serve(ctx, serverEnd, onBlocked) }()

	res, err := e.execClient(ctx, clientEnd, sql)
	clientEnd.Close()
	serveErr := <-served
	mu.Lock()
	blocked := append([]string(nil), reasons...)
	mu.Unlock()
	if len(blocked) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrBlocked, blocked[0])
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("postgres: exec: %w", ctx.Err())
		}
		return nil, fmt.Errorf("postgres: exec: %w", err)
	}
	if serveErr != nil && !errors.Is(serveErr, context.Canceled) {
		return nil, fmt.Errorf("postgres: exec: %w", serveErr)
	}
	return res, nil
}

func (e *Engine) execClient(ctx context.Context, nc net.Conn, sql string) (*Result, error) {
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	// Explicit values only: nothing from the process environment.
	cfg.Host, cfg.Port = "jitgate-exec", 5432
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.User = e.grant.ID
	cfg.Password = string(e.grant.ClientSecret)
	cfg.Database = e.grant.Target.Database
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{"client_encoding": "UTF8"}
	cfg.RequireAuth = "scram-sha-256"
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	used := false
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, errors.New("postgres: exec: the in-process pipe is single use")
		}
		used = true
		return nc, nil
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		notices = append(notices, n.Severity+": "+n.Message)
	}
	pg, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pg.Close(context.Background())
	results, err := pg.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	out := &Result{}
	var pick *pgconn.Result
	for _, r := range results {
		if len(r.FieldDescriptions) > 0 || pick == nil || len(pick.FieldDescriptions) == 0 {
			pick = r
		}
	}
	if pick != nil {
		for _, f := range pick.FieldDescriptions {
			out.Columns = append(out.Columns, f.Name)
		}
		for _, row := range pick.Rows {
			r := make([]*string, len(row))
			for i, v := range row {
				if v != nil {
					s := string(v)
					r[i] = &s
				}
			}
			out.Rows = append(out.Rows, r)
		}
		out.CommandTag = pick.CommandTag.String()
	}
	out.Notices = notices
	return out, nil
}
