// Package bolt is the embedded grant store: a grant.Store over one bbolt file in
// the broker's data directory. It is the default for local and single-node
// deployments (the AWS deployment uses DynamoDB); the broker reads and writes
// every grant through it, from the policy decision to revocation.
//
// Grants are JSON values keyed by id. Two index buckets keep List cheap without
// scanning every grant: one ordered by creation time (newest first) and one by
// state then creation time (the sweeper's "pending" and "active" lists).
// Update runs inside one read-write transaction; bbolt serializes writers, so a
// compare-and-swap conflict cannot happen here, but the same rules as a
// conditional write are still checked (grant.CheckUpdate: Version untouched by
// fn, legal transitions only, immutable request fields).
//
//	s, err := bolt.Open(filepath.Join(dataDir, "grants.db"), bolt.Options{})
//	if err != nil { ... }
//	defer s.Close()
//	g, err := s.Update(ctx, id, func(g *grant.Grant) error { return g.Transition(grant.Approved, now) })
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/jitgate/jitgate/broker/grant"
)

// DefaultTimeout is how long Open waits for the file lock when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// schemaVersion is the layout written by this package; Open refuses other layouts.
const schemaVersion = "1"

var (
	bucketGrants    = []byte("grants")     // id → JSON grant
	bucketByCreated = []byte("by_created") // created(8) | id → ""
	bucketByState   = []byte("by_state")   // state(1) | created(8) | id → ""
	bucketMeta      = []byte("meta")       // "schema" → schemaVersion
	keySchema       = []byte("schema")
)

// Options configures Open.
type Options struct {
	// Timeout bounds the wait for the file lock, which another process (a second
	// broker on the same data directory) may hold. Zero means DefaultTimeout; a
	// negative value waits forever.
	Timeout time.Duration
	// Now is the store's clock for CreatedAt (when the caller left it zero) and
	// UpdatedAt. Nil means time.Now.
	Now func() time.Time
}

// Store is a grant.Store backed by a bbolt file. It is safe for concurrent use.
type Store struct {
	db        *bbolt.DB
	path      string
	now       func() time.Time
	closeOnce sync.Once
	closeErr  error
}

var _ grant.Store = (*Store)(nil)

// Open opens (creating if needed) the store at path. The file is created with
// mode 0600: it holds who asked for what.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("bolt: open: empty path")
	}
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = 0 // bbolt: wait forever
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketGrants, bucketByCreated, bucketByState} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("schema %q is not %q (written by another version of jitgate?)", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	return &Store{db: db, path: path, now: now}, nil
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close closes the file. It is safe to call more than once; other calls after
// Close return an error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("bolt: close: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) stamp() time.Time { return s.now().UTC().Round(0) }

// Create implements grant.Store.
func (s *Store) Create(ctx context.Context, g *grant.Grant) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: create: %w", err)
	}
	if err := g.ValidateNew(); err != nil {
		return fmt.Errorf("bolt: create: %w", err)
	}
	c := g.Clone()
	now := s.stamp()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	c.Version = 1
	val, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("bolt: create %s: encode: %w", c.ID, err)
	}
	id := []byte(c.ID)
	err = s.db.Update(func(tx *bbolt.Tx) error {
		grants := tx.Bucket(bucketGrants)
		if grants.Get(id) != nil {
			return fmt.Errorf("%w: %s", grant.ErrExists, c.ID)
		}
		if err := grants.Put(id, val); err != nil {
			return err
		}
		if err := tx.Bucket(bucketByCreated).Put(createdKey(c), nil); err != nil {
			return err
		}
		return tx.Bucket(bucketByState).Put(stateKey(c), nil)
	})
	if err != nil {
		if errors.Is(err, grant.ErrExists) {
			return err
		}
		return fmt.Errorf("bolt: create %s: %w", c.ID, err)
	}
	g.CreatedAt, g.UpdatedAt, g.Version = c.CreatedAt, c.UpdatedAt, c.Version
	return nil
}

// Get implements grant.Store.
func (s *Store) Get(ctx context.Context, id string) (*grant.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt: get: %w", err)
	}
	var g *grant.Grant
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		g, err = load(tx, id)
		return err
	})
	if err != nil {
		return nil, wrap("get", id, err)
	}
	return g, nil
}

// Update implements grant.Store. fn runs inside the write transaction: it must
// not call the store (that would deadlock) and should be quick, since it holds
// up every other writer. With bbolt, Update never returns grant.ErrConflict.
func (s *Store) Update(ctx context.Context, id string, fn func(g *grant.Grant) error) (*grant.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt: update: %w", err)
	}
	var out *grant.Grant
	var fnErr error
	err := s.db.Update(func(tx *bbolt.Tx) error {
		prev, err := load(tx, id)
		if err != nil {
			return err
		}
		next := prev.Clone()
		if err := fn(next); err != nil {
			fnErr = err
			return err
		}
		if err := grant.CheckUpdate(prev, next); err != nil {
			return err
		}
		// The compare half of the compare-and-swap: the version written must be
		// the one read. Inside one bbolt write transaction it always is.
		if cur, err := load(tx, id); err != nil || cur.Version != prev.Version {
			return fmt.Errorf("%w: %s", grant.ErrConflict, id)
		}
		next.Version = prev.Version + 1
		next.UpdatedAt = s.stamp()
		val, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		if err := tx.Bucket(bucketGrants).Put([]byte(id), val); err != nil {
			return err
		}
		if next.State != prev.State {
			byState := tx.Bucket(bucketByState)
			if err := byState.Delete(stateKey(prev)); err != nil {
				return err
			}
			if err := byState.Put(stateKey(next), nil); err != nil {
				return err
			}
		}
		out = next
		return nil
	})
	if fnErr != nil && errors.Is(err, fnErr) {
		return nil, fnErr
	}
	if err != nil {
		return nil, wrap("update", id, err)
	}
	return out, nil
}

// List implements grant.Store. With a State filter it walks only that state's
// index; otherwise the creation-time index.
func (s *Store) List(ctx context.Context, f grant.Filter) ([]*grant.Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt: list: %w", err)
	}
	if f.State != nil && !f.State.Valid() {
		return nil, fmt.Errorf("bolt: list: invalid state %s", *f.State)
	}
	var out []*grant.Grant
	err := s.db.View(func(tx *bbolt.Tx) error {
		idx, prefix := tx.Bucket(bucketByCreated), []byte(nil)
		if f.State != nil {
			idx, prefix = tx.Bucket(bucketByState), []byte{byte(*f.State)}
		}
		c := idx.Cursor()
		var k []byte
		if prefix == nil {
			k, _ = c.Last()
		} else if k, _ = c.Seek([]byte{prefix[0] + 1}); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(k) < len(prefix)+8 {
				return fmt.Errorf("corrupt index key %q", k)
			}
			g, err := load(tx, string(k[len(prefix)+8:]))
			if err != nil {
				return fmt.Errorf("index entry %q: %w", k, err)
			}
			if !f.Match(g) {
				continue
			}
			out = append(out, g)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: list: %w", err)
	}
	return out, nil
}

func load(tx *bbolt.Tx, id string) (*grant.Grant, error) {
	if !grant.ValidID(id) {
		return nil, fmt.Errorf("%w: %q", grant.ErrNotFound, id)
	}
	val := tx.Bucket(bucketGrants).Get([]byte(id))
	if val == nil {
		return nil, fmt.Errorf("%w: %s", grant.ErrNotFound, id)
	}
	g := new(grant.Grant)
	if err := json.Unmarshal(val, g); err != nil {
		return nil, fmt.Errorf("decode %s: %w", id, err)
	}
	if g.ID != id || !g.State.Valid() {
		return nil, fmt.Errorf("decode %s: stored record is inconsistent (id %q, state %s)", id, g.ID, g.State)
	}
	return g, nil
}

// wrap leaves the store's sentinel errors recognisable by their own text and
// prefixes everything else with the operation.
func wrap(op, id string, err error) error {
	for _, s := range []error{grant.ErrNotFound, grant.ErrExists, grant.ErrConflict, grant.ErrIllegalTransition} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("bolt: %s %s: %w", op, id, err)
}

// timeKey encodes t so that byte order is time order, before 1970 included.
func timeKey(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return b[:]
}

func createdKey(g *grant.Grant) []byte {
	return append(timeKey(g.CreatedAt), g.ID...)
}

func stateKey(g *grant.Grant) []byte {
	return append(append([]byte{byte(g.State)}, timeKey(g.CreatedAt)...), g.ID...)
}
