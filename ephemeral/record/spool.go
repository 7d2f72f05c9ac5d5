package record

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Sink stores finished recordings: a local directory (record/filesink) or S3
// (record/s3sink). Store must return nil only once the recording is durably
// stored under key, whole; a failed Store must not leave a partial object
// under key. Keys are recording file names ("<grant id>.jgr").
type Sink interface {
	Store(ctx context.Context, key string, r io.Reader) error
}

// uriSink is implemented by sinks that can say where a key ends up; the
// location is what the grant's audit trail records.
type uriSink interface {
	URI(key string) string
}

// ErrBusy is returned for a spooled recording another process holds open
// (a proxy still writing or uploading it).
var ErrBusy = errors.New("record: recording is in use by another process")

// Stored describes one recording moved from the spool into a sink.
type Stored struct {
	GrantID string
	// Key is the sink key (the file name).
	Key string
	// Location is where the sink put it: its URI(key) when it has one, else the key.
	Location string
	Size     int64
	// Companions are the locations of the grant's companion files stored with
	// it (asciicast files of terminal channels: "<grant id>.*.cast").
	Companions []string
}

// CompanionExt is the extension of a grant's companion files (asciicast
// recordings of terminal channels, named "<grant id>.<channel>.cast"). They
// travel with the grant's recording: uploaded first, under the recording's lock.
const CompanionExt = ".cast"

// companions lists the companion files of grant id in dir.
func companions(dir, id string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, id+".") && strings.HasSuffix(n, CompanionExt) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

// IsRecordingName reports whether a spool file name is a recording (v2, or v1).
func IsRecordingName(name string) bool {
	id, ok := strings.CutSuffix(name, Ext)
	if !ok {
		id, ok = strings.CutSuffix(name, ".jsonl")
	}
	return ok && id != "" && !strings.HasPrefix(name, ".")
}

// Location returns where sink stores key.
func Location(sink Sink, key string) string {
	if u, ok := sink.(uriSink); ok {
		return u.URI(key)
	}
	return key
}

// Upload stores the spooled recording at path in sink under its file name and
// removes the spooled copy once the sink has it. It holds the file's lock
// while it works, so two flushes never upload the same file at once, and a
// proxy still writing its recording is left alone (ErrBusy).
func Upload(ctx context.Context, sink Sink, path string) (Stored, error) {
	f, err := openSpooled(sink, path)
	if err != nil {
		return Stored{}, err
	}
	defer f.Close()
	return storeLocked(ctx, sink, f, path)
}

func openSpooled(sink Sink, path string) (*os.File, error) {
	if sink == nil {
		return nil, errors.New("record: upload: no sink")
	}
	name := filepath.Base(path)
	if !IsRecordingName(name) {
		return nil, fmt.Errorf("record: upload: %s is not a recording file name", name)
	}
	if loc := Location(sink, name); sameFile(loc, path) {
		return nil, fmt.Errorf("record: upload: the sink stores %s onto the spooled file itself", name)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("record: upload: %w", err)
	}
	// A lock can look held for an instant after its holder closed the file:
	// a process forking at that moment (any exec by the proxy or the broker)
	// shares the open file, and its lock, until the child execs. A few short
	// retries tell that from a live proxy, which holds it for its whole life.
	err = lockFile(f)
	for i := 0; i < 5 && errors.Is(err, ErrBusy); i++ {
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
		err = lockFile(f)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, ErrBusy) {
			return nil, fmt.Errorf("record: upload %s: %w", name, ErrBusy)
		}
		return nil, fmt.Errorf("record: upload %s: lock: %w", name, err)
	}
	return f, nil
}

func sameFile(loc, path string) bool {
	a, err1 := filepath.Abs(loc)
	b, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return false
	}
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func storeLocked(ctx context.Context, sink Sink, f *os.File, path string) (Stored, error) {
	name := filepath.Base(path)
	// A spooled file that was already stored and removed while we waited.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return Stored{}, fmt.Errorf("record: upload %s: %w", name, err)
	}
	id := strings.TrimSuffix(strings.TrimSuffix(name, Ext), ".jsonl")
	comp, err := companions(filepath.Dir(path), id)
	if err != nil {
		return Stored{}, fmt.Errorf("record: upload %s: %w", name, err)
	}
	var compLocs []string
	for _, cp := range comp {
		if err := storeFile(ctx, sink, cp); err != nil {
			return Stored{}, fmt.Errorf("record: upload %s: %w", name, err)
		}
		compLocs = append(compLocs, Location(sink, filepath.Base(cp)))
	}
	st, err := f.Stat()
	if err != nil {
		return Stored{}, fmt.Errorf("record: upload %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Stored{}, fmt.Errorf("record: upload %s: %w", name, err)
	}
	// The sink reads exactly the bytes that were there when the lock was taken.
	if err := sink.Store(ctx, name, io.LimitReader(f, st.Size())); err != nil {
		return Stored{}, fmt.Errorf("record: upload %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Stored{}, fmt.Errorf("record: upload %s: stored, but the spooled copy stays: %w", name, err)
	}
	syncDir(filepath.Dir(path))
	return Stored{GrantID: id, Key: name, Location: Location(sink, name), Size: st.Size(), Companions: compLocs}, nil
}

// storeFile stores one companion file and removes it from the spool.
func storeFile(ctx context.Context, sink Sink, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := sink.Store(ctx, filepath.Base(path), io.LimitReader(f, st.Size())); err != nil {
		return fmt.Errorf("companion %s: %w", filepath.Base(path), err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("companion %s: stored, but the spooled copy stays: %w", filepath.Base(path), err)
	}
	return nil
}

// Uploader uploads one finished recording with retries: the proxy's last step.
//
//	u := record.Uploader{Sink: sink, Logger: log}
//	st, err := u.Upload(ctx, rec.Path())
//	// err != nil: the recording stays spooled at rec.Path(); FlushSpool retries it.
type Uploader struct {
	Sink Sink
	// Initial is the first wait after a failure, doubled up to Max (defaults
	// 200ms and 5s); Timeout bounds all attempts together (default 30s).
	Initial, Max, Timeout time.Duration
	Logger                *slog.Logger
	// OnRetry, when set, is called after each failed attempt, before the
	// wait, with the spooled path the recording stays at meanwhile (for a
	// status line, a metric, or a test).
	OnRetry func(path string, attempt int, err error)
}

// Upload stores path in the sink, retrying with exponential backoff until it
// succeeds, Timeout passes or ctx ends. It takes the file's lock once and keeps
// it across attempts. On failure the file stays where it is.
func (u Uploader) Upload(ctx context.Context, path string) (Stored, error) {
	initial, maxWait, timeout := u.Initial, u.Max, u.Timeout
	if initial <= 0 {
		initial = 200 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Second
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	log := u.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := openSpooled(u.Sink, path)
	if err != nil {
		return Stored{}, err
	}
	defer f.Close()
	wait := initial
	for attempt := 1; ; attempt++ {
		st, err := storeLocked(ctx, u.Sink, f, path)
		if err == nil {
			return st, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return Stored{}, err
		}
		log.Warn("recording upload failed; it stays spooled, retrying", "path", path, "attempt", attempt, "retry_in", wait, "err", err)
		if u.OnRetry != nil {
			u.OnRetry(path, attempt, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Stored{}, fmt.Errorf("%w (gave up after %d attempts: %v)", err, attempt, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// FlushSpool uploads every finished recording in spoolDir to sink and returns
// how many it stored. Recordings a live proxy still holds are skipped; a
// recording that fails stays spooled for the next flush, and the failures are
// returned joined. A recording whose proxy was killed is uploaded as it is: its
// sealed chunks verify, and Verify reports the missing end.
func FlushSpool(ctx context.Context, spoolDir string, sink Sink) (int, error) {
	st, err := FlushSpoolStored(ctx, spoolDir, sink, FlushOptions{})
	return len(st), err
}

// FlushOptions refine FlushSpoolStored.
type FlushOptions struct {
	// MinAge leaves alone recordings modified more recently than this: a
	// periodic sweeper sets it (a few minutes) so it never races a proxy that
	// has just exited and whose launcher is still reading the recording.
	MinAge time.Duration
	// Now is the clock for MinAge (default time.Now).
	Now func() time.Time
}

// FlushSpoolStored is FlushSpool returning what was stored where, for the audit trail.
func FlushSpoolStored(ctx context.Context, spoolDir string, sink Sink, opts FlushOptions) ([]Stored, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	entries, err := os.ReadDir(spoolDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record: flush spool: %w", err)
	}
	var stored []Stored
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if !e.Type().IsRegular() || !IsRecordingName(e.Name()) {
			continue
		}
		if opts.MinAge > 0 {
			if fi, err := e.Info(); err != nil || opts.Now().Sub(fi.ModTime()) < opts.MinAge {
				continue
			}
		}
		st, err := Upload(ctx, sink, filepath.Join(spoolDir, e.Name()))
		switch {
		case err == nil:
			stored = append(stored, st)
		case errors.Is(err, ErrBusy), errors.Is(err, fs.ErrNotExist):
		default:
			errs = append(errs, err)
		}
	}
	return stored, errors.Join(errs...)
}
