// Package oneconn serves one already-accepted connection with net/http: the
// HTTP-speaking engines (http, kube) get one client connection from the
// session layer and run an http.Server on it, which wants a listener.
package oneconn

import (
	"errors"
	"net"
	"sync"
)

// ErrDone ends http.Server.Serve once the one connection closed.
var ErrDone = errors.New("oneconn: connection done")

// Listener hands out one connection, then waits until it is closed (Accept
// returns ErrDone) or the listener is (net.ErrClosed).
type Listener struct {
	mu     sync.Mutex
	conn   net.Conn
	addr   net.Addr
	done   chan struct{}
	closed chan struct{}
	once   sync.Once
}

// New wraps c; Addr reports c's local address.
func New(c net.Conn) *Listener {
	l := &Listener{done: make(chan struct{}), closed: make(chan struct{}), addr: c.LocalAddr()}
	l.conn = &notifyConn{Conn: c, done: l.done}
	return l
}

// Accept returns the connection once, then blocks until it or the listener closes.
func (l *Listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	select {
	case <-l.done:
		return nil, ErrDone
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and closes the connection if it was never accepted.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// Addr is the connection's local address.
func (l *Listener) Addr() net.Addr { return l.addr }

// notifyConn closes done when the server closes the connection.
type notifyConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}
