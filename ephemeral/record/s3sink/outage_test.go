package s3sink_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
)

// gate is a TCP forwarder in front of moto that the test takes down (its
// port closed, its connections cut) and brings back on the same port: S3
// going away and returning, as the proxy sees it.
type gate struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	g := &gate{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	g.serve(ln)
	t.Cleanup(g.down)
	return g
}

func (g *gate) serve(ln net.Listener) {
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns[c], g.conns[up] = true, true
			g.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// down closes the port and cuts every open connection.
func (g *gate) down() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
		delete(g.conns, c)
	}
}

// up listens on the same port again.
func (g *gate) up() {
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Errorf("gate: listen again on %s: %v", g.addr, err)
		return
	}
	g.serve(ln)
}

type edKey struct{ priv ed25519.PrivateKey }

func (k edKey) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(k.priv, msg), nil
}
func (k edKey) PublicKey() crypto.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// spoolRecording writes a signed recording of grant id with one terminal
// cast into a fresh spool directory.
func spoolRecording(t *testing.T, id string) (spool string, key edKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, spool = edKey{priv}, t.TempDir()
	r, err := record.Create(t.Context(), record.Config{Dir: spool, Signer: key, FlushInterval: -1,
		Header: record.Header{GrantID: id, Identity: "i", Target: "box", Rule: "r", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := r.Write(record.Event{Type: record.Query, Conn: 1, Statement: strings.Repeat("SELECT 1; ", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(spool, id+".conn1.ch0.cast"), []byte("{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"$ \"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return spool, key
}

// gatedSink is a sink on e's bucket reached through g.
func (e env) gatedSink(t *testing.T, g *gate) *s3sink.Sink {
	t.Helper()
	cfg := shared.Config()
	cfg.BaseEndpoint = aws.String("http://" + g.addr)
	cfg.RetryMaxAttempts = 1
	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	s, err := s3sink.New(s3sink.Config{Client: c, Bucket: e.bucket, Prefix: "recordings/", KMSKeyID: keyARN, PartSize: s3sink.MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fetchVerified downloads the stored recording and checks it whole: every
// chunk, the chain, every signature, the end marker, and the cast against the
// digest the recording sealed.
func (e env) fetchVerified(t *testing.T, id string, key edKey) {
	t.Helper()
	dir := t.TempDir()
	got, err := s3sink.Fetch(t.Context(), e.client, "s3://"+e.bucket+"/recordings/"+id+".jgr", dir)
	if err != nil {
		t.Fatal(err)
	}
	var evs []record.Event
	rep, err := record.VerifyFile(got.Path, record.VerifyOptions{PublicKey: key.PublicKey(), OnEvent: func(ev record.Event) error {
		evs = append(evs, ev)
		return nil
	}})
	if err != nil || !rep.Complete || !rep.Signed || rep.Events != 53 {
		t.Fatalf("stored recording: %+v, %v (want complete, signed, 53 events: started, 50 queries, the sealed cast, ended)", rep, err)
	}
	cs := record.Companions(evs)
	if len(cs) != 1 || len(got.Companions) != 1 || filepath.Base(got.Companions[0]) != cs[0].Name {
		t.Fatalf("sealed %+v, fetched %v", cs, got.Companions)
	}
	f, err := os.Open(got.Companions[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := cs[0].Check(f); err != nil {
		t.Fatal(err)
	}
}

func spoolEmpty(t *testing.T, spool string) {
	t.Helper()
	left, _ := os.ReadDir(spool)
	for _, e := range left {
		t.Errorf("left in the spool: %s", e.Name())
	}
}

// TestUploadRidesOutS3Outage: S3 is unreachable when the proxy uploads; the
// recording stays spooled (at the path every retry names) while the uploader
// backs off, and is stored whole once S3 returns: the object verifies, the
// cast matches, the spool is empty.
func TestUploadRidesOutS3Outage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	g := newGate(t, strings.TrimPrefix(shared.Endpoint, "http://"))
	spool, key := spoolRecording(t, "g-outage")
	path := filepath.Join(spool, "g-outage.jgr")
	g.down()

	var mu sync.Mutex
	var retries []string
	u := record.Uploader{Sink: e.gatedSink(t, g), Initial: 5 * time.Millisecond, Max: 40 * time.Millisecond, Timeout: 5 * time.Minute,
		OnRetry: func(p string, attempt int, err error) {
			mu.Lock()
			defer mu.Unlock()
			retries = append(retries, p)
			if _, serr := os.Stat(p); serr != nil {
				t.Errorf("attempt %d: the spooled recording is gone while S3 is down: %v", attempt, serr)
			}
			if !strings.Contains(err.Error(), "connection refused") && !strings.Contains(err.Error(), "connection reset") {
				t.Errorf("attempt %d failed for another reason than the outage: %v", attempt, err)
			}
			if attempt == 4 {
				g.up() // S3 is back
			}
		}}
	st, err := u.Upload(t.Context(), path)
	if err != nil {
		t.Fatalf("upload after the outage: %v", err)
	}
	mu.Lock()
	if len(retries) != 4 || retries[0] != path {
		t.Errorf("retries named %v, want 4 attempts naming %s", retries, path)
	}
	mu.Unlock()
	if st.Location != "s3://"+e.bucket+"/recordings/g-outage.jgr" || len(st.Companions) != 1 {
		t.Errorf("stored %+v", st)
	}
	spoolEmpty(t, spool)
	e.fetchVerified(t, "g-outage", key)
}

// TestSpoolFlushAfterOutage: the proxy gives up while S3 is down (its
// recording stays spooled), a flush during the outage keeps it, and the
// sweeper's flush after S3 returns stores it whole.
func TestSpoolFlushAfterOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	g := newGate(t, strings.TrimPrefix(shared.Endpoint, "http://"))
	spool, key := spoolRecording(t, "g-flush")
	g.down()
	sink := e.gatedSink(t, g)

	ctx, cancel := context.WithCancel(t.Context())
	u := record.Uploader{Sink: sink, Initial: time.Millisecond, OnRetry: func(_ string, attempt int, _ error) {
		if attempt == 2 {
			cancel() // the proxy's upload budget runs out
		}
	}}
	if _, err := u.Upload(ctx, filepath.Join(spool, "g-flush.jgr")); err == nil {
		t.Fatal("upload succeeded with S3 down")
	}
	if n, err := record.FlushSpool(t.Context(), spool, sink); n != 0 || err == nil {
		t.Fatalf("flush during the outage: stored %d, err %v", n, err)
	}
	for _, name := range []string{"g-flush.jgr", "g-flush.conn1.ch0.cast"} {
		if _, err := os.Stat(filepath.Join(spool, name)); err != nil {
			t.Fatalf("%s left the spool during the outage: %v", name, err)
		}
	}
	if got := e.keys(t); len(got) != 0 {
		t.Fatalf("objects stored during the outage: %v", got)
	}
	g.up()
	stored, err := record.FlushSpoolStored(t.Context(), spool, sink, record.FlushOptions{})
	if err != nil || len(stored) != 1 || stored[0].GrantID != "g-flush" {
		t.Fatalf("flush after the outage: %+v, %v", stored, err)
	}
	spoolEmpty(t, spool)
	e.fetchVerified(t, "g-flush", key)
}
