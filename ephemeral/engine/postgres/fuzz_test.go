package postgres_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		b, err = m.Encode(b)
		if err != nil {
			panic(err)
		}
	}
	return b
}

// FuzzRelay sends arbitrary bytes on an authenticated connection. Whatever they
// are, the proxy must not panic, must end that connection (and only that one) once
// the client stops, and must keep serving the other connection.
func FuzzRelay(f *testing.F) {
	f.Add(encode(&pgproto3.Query{String: "SELECT card_number FROM users"}))
	f.Add(encode(&pgproto3.Query{String: "DELETE FROM orders"}, &pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Parse{Query: "SELECT $1::text"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("x")}}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.FunctionCall{Function: 1598}))
	f.Add(encode(&pgproto3.CopyData{Data: []byte("1\t2\n")}, &pgproto3.CopyDone{}))
	f.Add(encode(&pgproto3.Query{String: "COPY users TO STDOUT"}))
	f.Add([]byte{'Q', 0, 0, 0, 3})
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{'p', 0, 0, 0, 8, 'a', 'b', 'c', 0})
	f.Add([]byte{'D', 0, 0, 0, 5, 'X'})
	f.Add([]byte{'B', 0, 0, 0, 4})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	p := startProxy(f, maskAll)
	witness := p.pgx(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pg, err := pgconn.Connect(ctx, p.dsn(p.secret()))
		if err != nil {
			t.Fatal(err)
		}
		hj, err := pg.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		nc := hj.Conn
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := nc.Write(data); err != nil {
			return // the proxy already ended the connection: fine
		}
		// The client is done: the proxy must end the connection.
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		if _, err := io.Copy(io.Discard, nc); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the proxy did not end the connection")
			}
		}
		var one int
		if err := witness.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("the other connection broke: %v", err)
		}
	})
}
