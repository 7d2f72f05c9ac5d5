package record_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/record/filesink"
	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
)

// Both sinks are record.Sinks, and both can say where a key ends up.
var (
	_ record.Sink                     = (*filesink.Sink)(nil)
	_ record.Sink                     = (*s3sink.Sink)(nil)
	_ interface{ URI(string) string } = (*filesink.Sink)(nil)
	_ interface{ URI(string) string } = (*s3sink.Sink)(nil)
)

// flakySink is a filesink that, while down, reads part of the upload and then
// fails, like a connection dropped mid-transfer.
type flakySink struct {
	*filesink.Sink
	down     atomic.Bool
	failNext atomic.Int64 // fail this many more calls, then work
	calls    atomic.Int64
	// afterCall, when set, runs after every call with the call count.
	afterCall func(n int64)
}

var errSinkDown = errors.New("sink unreachable")

func (s *flakySink) Store(ctx context.Context, key string, r io.Reader) error {
	n := s.calls.Add(1)
	if s.afterCall != nil {
		defer s.afterCall(n)
	}
	if s.down.Load() || s.failNext.Add(-1) >= 0 {
		_, _ = io.CopyN(io.Discard, r, 100)
		return errSinkDown
	}
	return s.Sink.Store(ctx, key, r)
}

func newFlaky(t *testing.T) (*flakySink, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	fs, err := filesink.New(filesink.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return &flakySink{Sink: fs}, dir
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// The sink is down for the whole upload: the recording stays spooled, whole,
// and nothing partial is left in the store; when the sink returns, a flush
// stores exactly those bytes.
func TestSinkDownSpoolsThenFlushUploads(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	spool := t.TempDir()
	path, orig := writeRecording(t, spool, "g-down", s, 200)
	sink, store := newFlaky(t)
	sink.down.Store(true)
	// The proxy gives up after its third attempt (its exit cannot wait for ever).
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	sink.afterCall = func(n int64) {
		if n == 3 {
			giveUp()
		}
	}
	u := record.Uploader{Sink: sink, Initial: time.Millisecond, Max: 4 * time.Millisecond, Timeout: time.Hour}
	_, err := u.Upload(ctx, path)
	if !errors.Is(err, errSinkDown) {
		t.Fatalf("upload to a down sink: %v", err)
	}
	if sink.calls.Load() != 3 {
		t.Fatalf("%d attempts, want 3: the uploader did not retry until it was stopped", sink.calls.Load())
	}
	sink.afterCall = nil
	if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
		t.Fatal("the spooled recording changed after a failed upload")
	}
	if names := dirNames(t, store); len(names) != 0 {
		t.Fatalf("a failed upload left %v in the store", names)
	}
	// Still down: a flush fails and keeps the file.
	if n, err := record.FlushSpool(context.Background(), spool, sink); n != 0 || !errors.Is(err, errSinkDown) {
		t.Fatalf("flush while down: %d, %v", n, err)
	}
	sink.down.Store(false)
	// A sweeper with a minimum age leaves a fresh recording alone.
	if st, err := record.FlushSpoolStored(context.Background(), spool, sink, record.FlushOptions{MinAge: time.Hour}); len(st) != 0 || err != nil {
		t.Fatalf("flush of a fresh recording with MinAge: %+v, %v", st, err)
	}
	stored, err := record.FlushSpoolStored(context.Background(), spool, sink,
		record.FlushOptions{MinAge: time.Hour, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	if err != nil || len(stored) != 1 {
		t.Fatalf("flush after the sink returned: %v, %+v", err, stored)
	}
	st := stored[0]
	if st.GrantID != "g-down" || st.Key != "g-down"+record.Ext || st.Location != filepath.Join(store, st.Key) || st.Size != int64(len(orig)) {
		t.Fatalf("stored %+v", st)
	}
	if got, _ := os.ReadFile(st.Location); !bytes.Equal(got, orig) {
		t.Fatal("stored bytes differ from the recording")
	}
	if names := dirNames(t, spool); len(names) != 0 {
		t.Fatalf("spool still holds %v", names)
	}
	if rep, err := record.VerifyFile(st.Location, record.VerifyOptions{PublicKey: s.PublicKey()}); err != nil || !rep.Complete {
		t.Fatalf("stored copy: %v %+v", err, rep)
	}
	if n, err := record.FlushSpool(context.Background(), spool, sink); n != 0 || err != nil {
		t.Fatalf("second flush: %d, %v", n, err)
	}
}

// The sink comes back while the proxy is still retrying.
func TestUploaderRetriesUntilTheSinkReturns(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	path, orig := writeRecording(t, spool, "g-retry", newSigner(t), 50)
	// A companion asciicast file travels with it.
	cast := filepath.Join(spool, "g-retry.conn1.ch0.cast")
	if err := os.WriteFile(cast, []byte(`{"version":2,"width":80,"height":24}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink, store := newFlaky(t)
	sink.failNext.Store(3)
	st, err := record.Uploader{Sink: sink, Initial: time.Millisecond, Timeout: time.Minute}.Upload(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if sink.calls.Load() != 5 { // 3 failures, then the cast file and the recording
		t.Fatalf("%d calls", sink.calls.Load())
	}
	if got, _ := os.ReadFile(st.Location); !bytes.Equal(got, orig) {
		t.Fatal("stored bytes differ")
	}
	if len(st.Companions) != 1 || st.Companions[0] != filepath.Join(store, "g-retry.conn1.ch0.cast") {
		t.Fatalf("companions %v", st.Companions)
	}
	if names := dirNames(t, spool); len(names) != 0 {
		t.Fatalf("spool still holds %v", names)
	}
}

// A recording a live proxy holds is left alone; once closed it is flushed.
func TestFlushSkipsLiveRecordings(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	r, err := record.Open(spool, header("g-live"))
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range []string{".tmp-x.jgr", "notes.txt", "g-live.conn1.ch0.cast"} {
		if err := os.WriteFile(filepath.Join(spool, junk), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sink, store := newFlaky(t)
	if n, err := record.FlushSpool(context.Background(), spool, sink); n != 0 || err != nil {
		t.Fatalf("flush with a live recording: %d, %v", n, err)
	}
	if _, err := record.Upload(context.Background(), sink, r.Path()); !errors.Is(err, record.ErrBusy) {
		t.Fatalf("Upload of a live recording: %v", err)
	}
	if sink.calls.Load() != 0 {
		t.Fatal("the sink was called for a live recording (or its companion)")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := record.FlushSpool(context.Background(), spool, sink); n != 1 || err != nil {
		t.Fatalf("flush after close: %d, %v", n, err)
	}
	want := []string{"g-live.conn1.ch0.cast", "g-live.jgr"}
	if got := dirNames(t, store); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("store has %v, want %v", got, want)
	}
	if got := dirNames(t, spool); strings.Join(got, ",") != ".tmp-x.jgr,notes.txt" {
		t.Fatalf("spool has %v", got)
	}
}

// Two flushes racing over one spool store each recording once.
func TestConcurrentFlushes(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	s := newSigner(t)
	for _, id := range []string{"g-c1", "g-c2", "g-c3", "g-c4"} {
		writeRecording(t, spool, id, s, 20)
	}
	sink, store := newFlaky(t)
	var wg sync.WaitGroup
	var total atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := record.FlushSpool(context.Background(), spool, sink)
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(n))
		}()
	}
	wg.Wait()
	if total.Load() != 4 || len(dirNames(t, store)) != 4 || len(dirNames(t, spool)) != 0 {
		t.Fatalf("stored %d; store %v; spool %v", total.Load(), dirNames(t, store), dirNames(t, spool))
	}
}

func TestUploadRefusals(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	path, _ := writeRecording(t, spool, "g-self", nil, 3)
	self, err := filesink.New(filesink.Config{Dir: spool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := record.Upload(context.Background(), self, path); err == nil || !strings.Contains(err.Error(), "onto the spooled file itself") {
		t.Fatalf("sink = spool: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the recording is gone after a refused upload: %v", err)
	}
	other := filepath.Join(spool, "notes.txt")
	_ = os.WriteFile(other, nil, 0o600)
	sink, _ := newFlaky(t)
	if _, err := record.Upload(context.Background(), sink, other); err == nil || !strings.Contains(err.Error(), "not a recording") {
		t.Fatalf("non-recording: %v", err)
	}
	if _, err := record.Upload(context.Background(), nil, path); err == nil {
		t.Fatal("nil sink accepted")
	}
	if n, err := record.FlushSpool(context.Background(), filepath.Join(spool, "missing"), sink); n != 0 || err != nil {
		t.Fatalf("missing spool: %d %v", n, err)
	}
}
