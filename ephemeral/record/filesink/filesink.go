// Package filesink stores finished recordings in a local directory: the upload
// step at the end of a proxy's life (engine → guard → mask → record → upload)
// for the embedded, single-host deployment. It is the local twin of
// record/s3sink and implements the same record.Sink.
//
// Store writes to a temporary file in the directory, fsyncs it, and links it
// into place under its key (an atomic step: readers see the whole recording or
// none), then fsyncs the directory. A stored recording is evidence and is
// never overwritten: storing the same bytes again succeeds (a retried upload),
// storing different bytes under an existing key fails with ErrExists.
//
//	sink, err := filesink.New(filesink.Config{Dir: filepath.Join(dataDir, "recordings")})
//	err = sink.Store(ctx, grantID+record.Ext, f)
package filesink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrExists is returned when a different recording is already stored under the key.
var ErrExists = errors.New("filesink: a different recording is already stored under this key")

// MaxKeyLen bounds a key.
const MaxKeyLen = 255

// Config configures a Sink.
type Config struct {
	// Dir is the directory recordings are stored in; created (0700) if missing.
	// It MUST NOT be the proxies' spool directory.
	Dir string
}

// Sink stores recordings as files in one directory.
type Sink struct{ dir string }

// New checks cfg and creates the directory.
func New(cfg Config) (*Sink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("filesink: no directory")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("filesink: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("filesink: %w", err)
	}
	return &Sink{dir: dir}, nil
}

// Dir is the directory the sink stores into.
func (s *Sink) Dir() string { return s.dir }

// URI is the path key is (or would be) stored at: a plain absolute path, so
// the broker and `jitgate replay` can open it.
func (s *Sink) URI(key string) string { return filepath.Join(s.dir, key) }

// checkKey accepts one plain file name: no separators, no dot files, no NUL,
// no control characters.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen || strings.HasPrefix(key, ".") || strings.ContainsAny(key, `/\`) {
		return fmt.Errorf("filesink: unusable key %q", key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("filesink: unusable key %q", key)
		}
	}
	return nil
}

// Store writes everything r yields under key. It returns nil only when the
// whole recording is durably in place.
func (s *Sink) Store(ctx context.Context, key string, r io.Reader) error {
	if err := checkKey(key); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-"+key+"-*")
	if err != nil {
		return fmt.Errorf("filesink: store %s: %w", key, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	h := sha256.New()
	err = copyCtx(ctx, io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("filesink: store %s: %w", key, err)
	}
	dst := filepath.Join(s.dir, key)
	if err := os.Link(tmpName, dst); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("filesink: store %s: %w", key, err)
		}
		same, cerr := sameContent(dst, h.Sum(nil))
		if cerr != nil {
			return fmt.Errorf("filesink: store %s: %w", key, cerr)
		}
		if !same {
			return fmt.Errorf("filesink: store %s: %w", key, ErrExists)
		}
		return nil
	}
	if d, err := os.Open(s.dir); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return fmt.Errorf("filesink: store %s: sync directory: %w", key, serr)
		}
	}
	return nil
}

func sameContent(path string, sum []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return bytes.Equal(h.Sum(nil), sum), nil
}

// Open opens the recording stored under key.
func (s *Sink) Open(key string) (*os.File, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(s.dir, key))
}

// Find reports where the recording stored under key is, if it is: the
// sweeper uses it to link a recording whose proxy outlived its broker.
func (s *Sink) Find(_ context.Context, key string) (string, bool, error) {
	if err := checkKey(key); err != nil {
		return "", false, err
	}
	path := filepath.Join(s.dir, key)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("filesink: find %s: %w", key, err)
	case !fi.Mode().IsRegular():
		return "", false, fmt.Errorf("filesink: find %s: not a regular file", key)
	}
	return path, true, nil
}

// copyCtx copies src to dst, stopping when ctx ends.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) error {
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
