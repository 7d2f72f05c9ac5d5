package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestMaskingSharedByShape: statements that differ only in constants share
// the guard's shape and so the masking plan; every one of them is still
// masked, and a statement of another shape that unmasks nothing is not
// mistaken for one of them.
func TestMaskingSharedByShape(t *testing.T) {
	t.Parallel()
	p := startProxy(t, maskAll)
	c := p.pgx(t)
	ctx := context.Background()
	for i := range 6 {
		for _, q := range []string{
			fmt.Sprintf("SELECT card_number, email FROM users WHERE id = %d", 1+i%2),
			fmt.Sprintf("SELECT name, card_number FROM users WHERE id = %d AND name <> '%d'", 1+i%2, i),
			fmt.Sprintf("SELECT email, %d FROM users WHERE id IN (%d, 2) LIMIT %d", i, i, 1+i),
		} {
			rows, err := c.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			n := 0
			for rows.Next() {
				n++
				vals, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				assertNoLeak(t, q, fmt.Sprint(vals...))
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if n == 0 {
				t.Fatalf("%s: no rows", q)
			}
		}
	}
	// Same constant positions, a column that is not masked: passes unmasked.
	var name string
	if err := c.QueryRow(ctx, "SELECT name FROM users WHERE id = 1", pgx.QueryExecModeSimpleProtocol).Scan(&name); err != nil || name != "alice" {
		t.Fatalf("name %q %v", name, err)
	}
}
