package oneconn_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/internal/oneconn"
)

func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestAcceptOnceThenDone: the connection is handed out once; the next Accept
// waits until it is closed and then ends the server with ErrDone.
func TestAcceptOnceThenDone(t *testing.T) {
	t.Parallel()
	a, _ := pair(t)
	l := oneconn.New(a)
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { _, err := l.Accept(); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("second Accept returned %v before the connection closed", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Close()
	if err := <-got; !errors.Is(err, oneconn.ErrDone) {
		t.Fatalf("second Accept: %v, want ErrDone", err)
	}
}

// TestCloseBeforeAccept closes the never-accepted connection and ends Accept.
func TestCloseBeforeAccept(t *testing.T) {
	t.Parallel()
	a, b := pair(t)
	l := oneconn.New(a)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Both the listener and its connection are closed: either ending is right.
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) && !errors.Is(err, oneconn.ErrDone) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed or ErrDone", err)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Error("the never-accepted connection is still open")
	}
}
