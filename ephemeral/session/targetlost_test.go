package session_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// lostEngine's connections end as the engine says: "lost" reports the
// target gone (as the postgres engine does on a shutdown), anything else is a
// connection's own end. A stand-in engine: what is tested is the session
// layer's reaction, not a protocol.
type lostEngine struct{}

func (lostEngine) Serve(_ context.Context, c net.Conn) error {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) == "lost" {
		return fmt.Errorf("engine: %w: upstream sent FATAL 57P01", session.ErrTargetLost)
	}
	return errors.New("engine: this connection's own error")
}

func (lostEngine) Exec(context.Context, string) (*spec.Result, error) { return &spec.Result{}, nil }

// TestTargetLostEndsTheSession: a connection ending on its own error leaves
// the session serving; one that reports the target gone ends the whole
// session long before its deadline, with an upstream error status naming the
// cause (the broker fails the grant with it and revokes the credential).
func TestTargetLostEndsTheSession(t *testing.T) {
	t.Parallel()
	g := grantFor(t, "", time.Now().Add(time.Hour))
	pr, pw := io.Pipe()
	statuses := make(chan spec.Status, 8)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var st spec.Status
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				statuses <- st
			}
		}
		close(statuses)
	}()
	done := make(chan error, 1)
	go func() {
		err := session.Run(context.Background(), session.Config{Grant: g, Status: pw, Logger: slog.New(slog.DiscardHandler),
			Engines: map[spec.Protocol]session.Factory{spec.Postgres: func(*spec.Grant, *record.Recorder, *slog.Logger) (session.Engine, error) {
				return lostEngine{}, nil
			}}})
		pw.Close()
		done <- err
	}()
	ready := <-statuses
	if ready.Type != spec.StatusReady {
		t.Fatalf("first status %+v", ready)
	}
	send := func(line string) {
		c, err := net.Dial("tcp", ready.Addr)
		if err != nil {
			t.Fatalf("dial the session proxy: %v", err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, line+"\n")
		_, _ = io.ReadAll(c)
	}
	send("hello")
	select {
	case err := <-done:
		t.Fatalf("a connection's own error ended the session: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	send("lost")
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived its target")
	}
	if !errors.Is(err, session.ErrTargetLost) {
		t.Fatalf("Run returned %v, want ErrTargetLost", err)
	}
	var failed bool
	for st := range statuses {
		if st.Type == spec.StatusError && st.Code == spec.CodeUpstream && strings.Contains(st.Error, "the target went away") && strings.Contains(st.Error, "57P01") {
			failed = true
		}
	}
	if !failed {
		t.Error("no upstream error status naming the target's loss")
	}
	if _, err := net.DialTimeout("tcp", ready.Addr, time.Second); err == nil {
		t.Error("the ended session still accepts connections")
	}
}
