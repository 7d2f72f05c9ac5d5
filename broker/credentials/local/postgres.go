// Package local is the embedded credential source: it mints a PostgreSQL login
// role per grant (and, later, per-grant OpenSSH certificates) without Vault. It
// implements credentials.Source for `jitgate dev` and single-host deployments, in
// the broker's flow grant → credentials → launch.
//
// A PostgreSQL credential is a role
//
//	CREATE ROLE "jg_<grant>_<hash>" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
//	    NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT n
//	    ENCRYPTED PASSWORD 'SCRAM-SHA-256$…' VALID UNTIL '<expiry>' IN ROLE "<access role>"
//
// that inherits the privileges of the access role configured for the grant's
// access level (shop_read, shop_write, …). Read grants also get
// default_transaction_read_only; that is a convenience, not the boundary: the
// access role's privileges are. The password is 32 random bytes; only its SCRAM
// verifier is sent to the server. VALID UNTIL stops new logins at the grant's
// hard expiry even if the broker never revokes; sessions already open are ended
// by the proxy's own deadline and by Revoke.
//
// Revoke sets NOLOGIN, terminates the role's sessions (pg_terminate_backend,
// waiting for them to exit), reassigns what the role owns in the grant's database
// to its access role, drops the rest and drops the role. It only ever touches
// roles that carry this minter's prefix and its "jitgate grant" comment, so a
// forged lease id cannot drop another role.
package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// LeasePrefix starts the LeaseID of every credential this package mints.
const LeasePrefix = "local:postgres:"

// commentPrefix marks roles minted by jitgate (COMMENT ON ROLE); Revoke refuses
// roles without it.
const commentPrefix = "jitgate grant "

// terminateWait is how long Revoke waits for each terminated backend to exit.
const terminateWait = 5 * time.Second

var (
	grantIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	prefixPattern  = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,15}$`)
)

// PostgresConfig configures the embedded PostgreSQL minter.
type PostgresConfig struct {
	// AdminDSN is a PostgreSQL URL or keyword/value string for a role that may
	// create and drop the per-grant roles: CREATEROLE plus ADMIN OPTION on every
	// access role below (or a superuser), membership in pg_signal_backend to end
	// sessions, and membership in the access roles for REASSIGN OWNED. It MUST NOT
	// be given to the proxy or the agent. Its database part is ignored: Database
	// is used instead.
	AdminDSN string
	// Database is the database the grants are for. Revoke reassigns and drops the
	// grant role's objects here; objects it created in other databases make
	// DROP ROLE fail, which Revoke reports.
	Database string
	// Roles maps an access level to the existing role whose privileges a grant of
	// that level inherits, e.g. {Read: "shop_read", Write: "shop_write"}. A level
	// without a role cannot be issued (credentials.ErrNoRole).
	Roles map[spec.Access]string
	// Prefix starts every minted role name; default "jg_". Lowercase letters,
	// digits and underscores, at most 16 characters. Access roles must not start
	// with it.
	Prefix string
	// ConnectionLimit is the CONNECTION LIMIT of each minted role; default 5.
	ConnectionLimit int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives one line per issue and revoke (never a password); default
	// discards.
	Logger *slog.Logger
}

// String redacts the admin password so a printed config cannot leak it.
func (c PostgresConfig) String() string {
	return fmt.Sprintf("local.PostgresConfig{AdminDSN:%s Database:%q Roles:%v Prefix:%q}", redactDSN(c.AdminDSN), c.Database, c.Roles, c.Prefix)
}

// GoString is String, for %#v.
func (c PostgresConfig) GoString() string { return c.String() }

// Format makes every verb print String.
func (c PostgresConfig) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

func redactDSN(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "[unparseable DSN]"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

func (c *PostgresConfig) validate() (*pgx.ConnConfig, error) {
	if c.AdminDSN == "" {
		return nil, fmt.Errorf("local: postgres: AdminDSN is required")
	}
	conn, err := pgx.ParseConfig(c.AdminDSN)
	if err != nil {
		// pgx's parse errors can quote the DSN; do not pass them on.
		return nil, fmt.Errorf("local: postgres: AdminDSN does not parse as a PostgreSQL connection string")
	}
	if c.Database == "" {
		return nil, fmt.Errorf("local: postgres: Database is required")
	}
	if c.Prefix == "" {
		c.Prefix = "jg_"
	}
	if !prefixPattern.MatchString(c.Prefix) {
		return nil, fmt.Errorf("local: postgres: Prefix %q must match %s", c.Prefix, prefixPattern)
	}
	if len(c.Roles) == 0 {
		return nil, fmt.Errorf("local: postgres: Roles is empty: map at least one access level to a role")
	}
	for a, r := range c.Roles {
		switch {
		case a == spec.AccessNone || a.String() == "none":
			return nil, fmt.Errorf("local: postgres: Roles has a role for access level %d, which is not read, write or admin", int(a))
		case r == "" || len(r) > 63 || strings.ContainsRune(r, 0):
			return nil, fmt.Errorf("local: postgres: role for %s access must be 1 to 63 bytes without NUL", a)
		case strings.HasPrefix(r, c.Prefix):
			return nil, fmt.Errorf("local: postgres: role %q for %s access starts with the minted-role prefix %q", r, a, c.Prefix)
		}
	}
	if c.ConnectionLimit == 0 {
		c.ConnectionLimit = 5
	}
	if c.ConnectionLimit < 1 {
		return nil, fmt.Errorf("local: postgres: ConnectionLimit must be at least 1")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	conn.Database = c.Database
	return conn, nil
}

// Postgres mints one PostgreSQL role per grant. It is safe for concurrent use.
type Postgres struct {
	cfg     PostgresConfig
	conn    *pgx.ConnConfig
	roles   map[spec.Access]string
	isRole  map[string]bool // the access roles, which Revoke never drops
	rolePat *regexp.Regexp
}

var _ credentials.Source = (*Postgres)(nil)

// NewPostgres checks cfg and returns a minter. It does not connect.
func NewPostgres(cfg PostgresConfig) (*Postgres, error) {
	conn, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		cfg:     cfg,
		conn:    conn,
		roles:   make(map[spec.Access]string, len(cfg.Roles)),
		isRole:  make(map[string]bool, len(cfg.Roles)),
		rolePat: regexp.MustCompile(`^` + regexp.QuoteMeta(cfg.Prefix) + `[a-z0-9_]{1,46}$`),
	}
	for a, r := range cfg.Roles {
		p.roles[a] = r
		p.isRole[r] = true
	}
	p.cfg.Roles = p.roles
	return p, nil
}

// String describes the minter without its admin password.
func (p *Postgres) String() string {
	names := make([]string, 0, len(p.roles))
	for a, r := range p.roles {
		names = append(names, a.String()+"="+r)
	}
	sort.Strings(names)
	return fmt.Sprintf("local.Postgres{database=%q admin=%s roles=[%s] prefix=%q}", p.cfg.Database, redactDSN(p.cfg.AdminDSN), strings.Join(names, " "), p.cfg.Prefix)
}

// GoString is String, for %#v.
func (p *Postgres) GoString() string { return p.String() }

// Format makes every verb print String.
func (p *Postgres) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// RoleName is the role a grant's credential logs in as.
func (p *Postgres) RoleName(grantID string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(grantID) {
		if b.Len() >= 24 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(grantID))
	return p.cfg.Prefix + b.String() + "_" + hex.EncodeToString(sum[:4])
}

// Issue creates the grant's role in one transaction: on error nothing is left.
func (p *Postgres) Issue(ctx context.Context, req credentials.Request) (spec.Credential, error) {
	if err := req.Validate(p.cfg.Now()); err != nil {
		return spec.Credential{}, fmt.Errorf("local: issue: %w", err)
	}
	access, ok := p.roles[req.Access]
	if !ok {
		return spec.Credential{}, fmt.Errorf("local: issue grant %s: %w: no role is configured for %s access", req.GrantID, credentials.ErrNoRole, req.Access)
	}
	if !grantIDPattern.MatchString(req.GrantID) {
		return spec.Credential{}, fmt.Errorf("local: issue: grant id %q must match %s", req.GrantID, grantIDPattern)
	}
	role := p.RoleName(req.GrantID)
	expires := req.Expires.UTC().Truncate(time.Microsecond) // PostgreSQL's precision
	password := newPassword()
	verifier, err := scramVerifier(password, newSalt(), scramIterations)
	if err != nil {
		return spec.Credential{}, fmt.Errorf("local: issue grant %s: %w", req.GrantID, err)
	}
	ident := pgx.Identifier{role}.Sanitize()
	verifierLit, err1 := quoteLiteral(verifier)
	untilLit, err2 := quoteLiteral(expires.Format("2006-01-02 15:04:05.999999Z07:00"))
	commentLit, err3 := quoteLiteral(commentPrefix + req.GrantID + " access " + req.Access.String())
	if err := errors.Join(err1, err2, err3); err != nil {
		return spec.Credential{}, fmt.Errorf("local: issue grant %s: %w", req.GrantID, err)
	}
	stmts := []string{
		fmt.Sprintf("CREATE ROLE %s WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT %d ENCRYPTED PASSWORD %s VALID UNTIL %s IN ROLE %s",
			ident, p.cfg.ConnectionLimit, verifierLit, untilLit, pgx.Identifier{access}.Sanitize()),
		fmt.Sprintf("COMMENT ON ROLE %s IS %s", ident, commentLit),
	}
	if req.Access == spec.Read {
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s SET default_transaction_read_only = on", ident))
	}

	conn, err := p.connect(ctx)
	if err != nil {
		return spec.Credential{}, classify("issue grant "+req.GrantID, err)
	}
	defer closeConn(conn)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // duplicate_object
			return spec.Credential{}, fmt.Errorf("local: issue grant %s: role %s already exists: a credential was already issued for this grant; revoke it first", req.GrantID, role)
		}
		return spec.Credential{}, classify("issue grant "+req.GrantID, err)
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "credential issued",
		slog.String("grant", req.GrantID), slog.String("role", role), slog.String("access", req.Access.String()),
		slog.String("inherits", access), slog.Time("valid_until", expires))
	return spec.Credential{
		Username: role,
		Password: spec.NewSecret(password).Wire(),
		LeaseID:  LeasePrefix + role,
		Expires:  expires,
	}, nil
}

// Revoke ends the credential: NOLOGIN, terminate sessions, reassign and drop
// owned objects, drop the role. A role that no longer exists is success.
func (p *Postgres) Revoke(ctx context.Context, cred spec.Credential) error {
	role, err := p.roleFromLease(cred)
	if err != nil {
		return err
	}
	conn, err := p.connect(ctx)
	if err != nil {
		return classify("revoke "+role, err)
	}
	defer closeConn(conn)

	var (
		oid     uint32
		super   bool
		comment *string
	)
	err = conn.QueryRow(ctx, `SELECT r.oid, r.rolsuper, shobj_description(r.oid, 'pg_authid') FROM pg_roles r WHERE r.rolname = $1`, role).Scan(&oid, &super, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // already gone
	}
	if err != nil {
		return classify("revoke "+role, err)
	}
	if super || comment == nil || !strings.HasPrefix(*comment, commentPrefix) {
		return fmt.Errorf("local: revoke %s: refusing: the role was not minted by jitgate (no %q comment, or superuser)", role, strings.TrimSpace(commentPrefix))
	}
	ident := pgx.Identifier{role}.Sanitize()
	// No new logins from here on.
	if _, err := conn.Exec(ctx, "ALTER ROLE "+ident+" NOLOGIN"); err != nil {
		if isUndefined(err) {
			return nil
		}
		return classify("revoke "+role, err)
	}
	// End live sessions and wait for them to exit. A backend that exits between
	// the scan and the signal makes pg_terminate_backend return false with a
	// warning; the recount below is what decides.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, role, terminateWait.Milliseconds()); err != nil {
		return classify("revoke "+role+": terminate sessions", err)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, role).Scan(&left); err != nil {
		return classify("revoke "+role, err)
	}
	if left > 0 {
		return fmt.Errorf("local: revoke %s: %d session(s) still running after pg_terminate_backend; the role is NOLOGIN, retry", role, left)
	}

	var heir string
	rows, err := conn.Query(ctx, `SELECT p.rolname FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid WHERE m.member = $1 ORDER BY p.rolname`, oid)
	if err != nil {
		return classify("revoke "+role, err)
	}
	parents, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return classify("revoke "+role, err)
	}
	for _, r := range parents {
		if p.isRole[r] {
			heir = r
			break
		}
	}
	if heir == "" {
		return fmt.Errorf("local: revoke %s: the role is NOLOGIN and has no sessions, but it is not a member of any configured access role, so there is no safe owner for its objects; drop it by hand", role)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range []string{
			"REASSIGN OWNED BY " + ident + " TO " + pgx.Identifier{heir}.Sanitize(),
			"DROP OWNED BY " + ident,
			"DROP ROLE IF EXISTS " + ident,
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if isUndefined(err) {
			return nil // dropped concurrently
		}
		return classify("revoke "+role, err)
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "credential revoked", slog.String("role", role), slog.String("objects_to", heir))
	return nil
}

// roleFromLease extracts and checks the role a lease names. Only roles with this
// minter's prefix and character set are accepted.
func (p *Postgres) roleFromLease(cred spec.Credential) (string, error) {
	role, ok := strings.CutPrefix(cred.LeaseID, LeasePrefix)
	if !ok {
		return "", fmt.Errorf("local: revoke: lease id %q is not a local postgres lease (want %q<role>)", cred.LeaseID, LeasePrefix)
	}
	if !p.rolePat.MatchString(role) {
		return "", fmt.Errorf("local: revoke: lease id %q names a role this minter does not make (want %s)", cred.LeaseID, p.rolePat)
	}
	if p.isRole[role] {
		return "", fmt.Errorf("local: revoke: refusing to drop access role %q", role)
	}
	if cred.Username != "" && cred.Username != role {
		return "", fmt.Errorf("local: revoke: lease id %q does not match username %q", cred.LeaseID, cred.Username)
	}
	return role, nil
}

func (p *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, p.conn.Copy())
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// classify wraps err for op: connection-level failures wrap
// credentials.ErrUnavailable, refused privileges wrap credentials.ErrDenied, a
// missing access role wraps credentials.ErrNoRole.
func classify(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == "42501" || strings.HasPrefix(code, "28"): // insufficient_privilege, invalid authorization
			return fmt.Errorf("local: %s: %w: %w", op, credentials.ErrDenied, err)
		case code == "42704": // undefined_object: the access role does not exist
			return fmt.Errorf("local: %s: %w: %w", op, credentials.ErrNoRole, err)
		case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), code == "57P01", code == "57P02", code == "57P03":
			return fmt.Errorf("local: %s: %w: %w", op, credentials.ErrUnavailable, err)
		}
		return fmt.Errorf("local: %s: %w", op, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("local: %s: %w", op, err)
	}
	// Dial failures, timeouts, connections lost mid-statement.
	return fmt.Errorf("local: %s: %w: %w", op, credentials.ErrUnavailable, err)
}

func isUndefined(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42704"
}

// quoteLiteral quotes s as an SQL string literal. It refuses backslashes and
// NUL so that the literal means the same with standard_conforming_strings on or
// off; the minter only quotes base64, timestamps and grant ids that match
// grantIDPattern, so a refusal means a bug, and the statement is not sent.
func quoteLiteral(s string) (string, error) {
	if strings.ContainsAny(s, "\\\x00") {
		return "", fmt.Errorf("local: refusing to quote a literal containing a backslash or NUL")
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}
