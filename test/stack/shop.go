package stack

import (
	"context"
	"testing"

	"github.com/jitgate/jitgate/test/pgtest"
	"github.com/jitgate/jitgate/test/shopdb"
)

// StartShop starts a real PostgreSQL (test/pgtest), stopped when the test
// ends, with the shop databases (test/shopdb) set up; serve it the policy
// shopdb.PolicyFor(pg.Addr()) with SHOP_ADMIN_DSN=pg.AdminDSN("postgres").
func StartShop(t testing.TB) *pgtest.Server {
	t.Helper()
	pg := pgtest.Start(t)
	if err := shopdb.Setup(context.Background(), pg); err != nil {
		t.Fatal(err)
	}
	return pg
}
