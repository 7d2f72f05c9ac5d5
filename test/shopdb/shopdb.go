// Package shopdb is the small shop database and policy that the demo and the
// end-to-end tests share: users with emails, password hashes and card numbers,
// and orders, in two databases (shop and shop_test) with read and write roles.
package shopdb

import (
	"context"
	"fmt"

	"github.com/jitgate/jitgate/test/pgtest"
)

// Cards and emails planted in the users table, for masking assertions.
var (
	Cards  = []string{"4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"}
	Emails = []string{"ada@example.com", "grace@example.org", "alan@example.net"}
	Hashes = []string{"$2b$12$KIXQJvU2nF0rX8c6m1d3zOcN5YVh2wq9y1a7bS4tE6uR8iP0oL2mK"}
)

// Seed is the schema and rows of both databases.
const Seed = `
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, password_hash text NOT NULL, card_number text);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users(id), item text NOT NULL, amount numeric(10,2) NOT NULL, created_at timestamptz DEFAULT now());
INSERT INTO users (name, email, password_hash, card_number) VALUES
 ('Ada Lovelace', 'ada@example.com', '$2b$12$KIXQJvU2nF0rX8c6m1d3zOcN5YVh2wq9y1a7bS4tE6uR8iP0oL2mK', '4111 1111 1111 1111'),
 ('Grace Hopper', 'grace@example.org', '$2b$12$Zq8x7W6v5U4t3S2r1Q0pOeN9mL8kJ7iH6gF5eD4cB3aZ2yX1wV0uT', '5500-0000-0000-0004'),
 ('Alan Turing', 'alan@example.net', '$2b$12$AbCdEfGhIjKlMnOpQrStUuVwXyZ0123456789abcdefghijklmnopq', '340000000000009');
INSERT INTO orders (user_id, item, amount) VALUES (1, 'analytical engine', 1843.00), (2, 'compiler', 1952.50), (3, 'bombe', 1940.00), (1, 'punch cards', 12.25);
`

// Policy is the demo policy; format it with the PostgreSQL address.
const Policy = `version: 1
# Demo policy written by make demo. The embedded dev issuer ("dev") is added by
# jitgate dev automatically; a production policy lists its real issuers here.
issuers:
  - name: okta
    issuer: https://example.okta.com/oauth2/default
    audience: api://jitgate
    groups_claim: groups
targets:
  - name: orders-db
    kind: postgres
    address: %[1]s
    database: shop
    credentials:
      source: local
      admin_dsn: env:SHOP_ADMIN_DSN
      read_role: shop_read
      write_role: shop_write
    masking:
      columns: ["public.users.password_hash", "public.users.card_number", "*.email"]
      detectors: [credit_card, email]
  - name: test-db
    kind: postgres
    address: %[1]s
    database: shop_test
    credentials: {source: local, admin_dsn: env:SHOP_ADMIN_DSN, read_role: test_read, write_role: test_write}
rules:
  - name: agents-read-orders
    when: '"ai-agents" in identity.groups'
    targets: [orders-db]
    access: read
    max_ttl: 10m
  - name: agents-write-needs-dba
    when: '"ai-agents" in identity.groups'
    targets: [test-db]
    access: write
    approval: {approvers: {groups: [dba]}, quorum: 1, timeout: 15m, explain: true}
`

// Setup creates shop and shop_test, the roles shop_read/shop_write and
// test_read/test_write, and seeds both databases.
func Setup(ctx context.Context, pg *pgtest.Server) error {
	for _, s := range []struct{ db, sql string }{
		{"postgres", "CREATE DATABASE shop"}, {"postgres", "CREATE DATABASE shop_test"},
		{"postgres", "CREATE ROLE shop_read NOLOGIN; CREATE ROLE shop_write NOLOGIN; CREATE ROLE test_read NOLOGIN; CREATE ROLE test_write NOLOGIN"},
		{"shop", Seed + "GRANT SELECT ON ALL TABLES IN SCHEMA public TO shop_read; GRANT shop_read TO shop_write; GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO shop_write; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO shop_write;"},
		{"shop_test", Seed + "GRANT SELECT ON ALL TABLES IN SCHEMA public TO test_read; GRANT test_read TO test_write; GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO test_write; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO test_write;"},
	} {
		if err := pg.Exec(ctx, s.db, s.sql); err != nil {
			return fmt.Errorf("shopdb: %w", err)
		}
	}
	return nil
}

// PolicyFor returns the demo policy for a server at addr.
func PolicyFor(addr string) string { return fmt.Sprintf(Policy, addr) }
