package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Relay is the baseline hop the session proxy is measured against: accept a
// connection, dial the upstream, and copy bytes both ways with io.Copy, one
// goroutine per direction. It looks at nothing and decides nothing.
//
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	r := &harness.Relay{Upstream: pg.Addr()}
//	go r.Serve(ctx, ln) // returns when ctx is done; closes every connection
type Relay struct {
	// Upstream is host:port to dial for each accepted connection.
	Upstream string
	// DialTimeout defaults to 5s.
	DialTimeout time.Duration
}

// Serve accepts on ln until ctx is done or ln fails, then closes ln and every
// relayed connection and returns once their goroutines have ended.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	if r.Upstream == "" {
		ln.Close()
		return errors.New("harness: relay: no upstream")
	}
	dt := r.DialTimeout
	if dt <= 0 {
		dt = 5 * time.Second
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("harness: relay: accept: %w", aerr)
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := net.DialTimeout("tcp", r.Upstream, dt)
			if err != nil {
				c.Close()
				return
			}
			track(c, true)
			track(u, true)
			var pair sync.WaitGroup
			pair.Add(2)
			go func() { defer pair.Done(); _, _ = io.Copy(u, c); u.Close() }()
			go func() { defer pair.Done(); _, _ = io.Copy(c, u); c.Close() }()
			pair.Wait()
			track(c, false)
			track(u, false)
		}()
	}
	ln.Close()
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	return err
}
