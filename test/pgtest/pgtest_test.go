package pgtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/test/pgtest"
)

func TestStartServesScramLogins(t *testing.T) {
	s := pgtest.Start(t)
	ctx := context.Background()
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE shop"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "shop", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(s.AdminDSN("shop"), s.Password, "wrong", 1)
	s2 := *s
	s2.Password = "wrong"
	err := s2.Exec(ctx, "shop", "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("login with a wrong password (%s): got %v, want password authentication failed", bad, err)
	}
}
