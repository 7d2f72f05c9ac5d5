package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// adminDSNEnv carries the PostgreSQL admin DSN to the conn-limit wrapper
// through `jitgate connect`, which passes its environment to its child.
const adminDSNEnv = "JGBENCH_ADMIN_DSN"

// runConnLimit is `jgbench conn-limit -limit N -- COMMAND...`, run by `jitgate
// connect` as its child. The local credential source mints every role with
// CONNECTION LIMIT 5 and neither the policy nor the CLI can change it, so
// pgbench -c 8 through one grant fails with "too many connections for role".
// The wrapper finds the grant's minted role (by the COMMENT the minter puts on
// it, "jitgate grant <id> access <level>"), raises its limit as the admin, then
// execs COMMAND in its own place. It runs before pgbench connects, outside the
// measured time.
func runConnLimit(args []string) int {
	fs := flag.NewFlagSet("jgbench conn-limit", flag.ContinueOnError)
	limit := fs.Int("limit", 16, "CONNECTION LIMIT to set on the grant's minted role")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: jgbench conn-limit [-limit N] -- COMMAND [ARGS...]")
		return 2
	}
	grant, dsn := os.Getenv("JITGATE_GRANT"), os.Getenv(adminDSNEnv)
	if grant == "" || dsn == "" {
		fmt.Fprintf(os.Stderr, "jgbench conn-limit: JITGATE_GRANT and %s must be set (run it under jitgate connect)\n", adminDSNEnv)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := raiseLimit(ctx, dsn, grant, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "jgbench conn-limit:", err)
		return 1
	}
	path, err := exec.LookPath(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "jgbench conn-limit:", err)
		return 127
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, adminDSNEnv+"=") {
			env = append(env, kv)
		}
	}
	err = syscall.Exec(path, fs.Args(), env)
	fmt.Fprintln(os.Stderr, "jgbench conn-limit: exec:", err)
	return 1
}

func raiseLimit(ctx context.Context, dsn, grant string, limit int) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var role string
	err = conn.QueryRow(ctx, `SELECT r.rolname FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
		WHERE d.description LIKE 'jitgate grant ' || $1 || ' access %'`, grant).Scan(&role)
	if err != nil {
		return fmt.Errorf("find the minted role of grant %s: %w", grant, err)
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT %d", pgx.Identifier{role}.Sanitize(), limit))
	return err
}
