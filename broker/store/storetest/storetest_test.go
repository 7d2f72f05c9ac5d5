package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/store/storetest"
)

// casStore is an in-memory store built like a conditional-write backend
// (DynamoDB): Update reads, runs fn without any lock, and writes only if the
// version is unchanged, retrying a bounded number of times. Unlike bolt, it
// really hits conflicts, so running the suite on it checks that the suite's
// concurrency assertions hold for such backends too.
type casStore struct {
	mu       sync.Mutex
	grants   map[string]*grant.Grant
	closed   bool
	attempts int
}

func (s *casStore) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("casstore: closed")
	}
	return nil
}

func (s *casStore) Create(ctx context.Context, g *grant.Grant) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := g.ValidateNew(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.grants[g.ID]; ok {
		return grant.ErrExists
	}
	c := g.Clone()
	c.Version = 1
	if c.CreatedAt.IsZero() {
		c.CreatedAt = base
	}
	c.UpdatedAt = c.CreatedAt
	s.grants[g.ID] = c
	g.Version, g.CreatedAt, g.UpdatedAt = 1, c.CreatedAt, c.UpdatedAt
	return nil
}

func (s *casStore) Get(ctx context.Context, id string) (*grant.Grant, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", grant.ErrNotFound, id)
	}
	return g.Clone(), nil
}

func (s *casStore) Update(ctx context.Context, id string, fn func(*grant.Grant) error) (*grant.Grant, error) {
	for i := 0; i < s.attempts; i++ {
		prev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		next := prev.Clone()
		if err := fn(next); err != nil {
			return nil, err
		}
		if err := grant.CheckUpdate(prev, next); err != nil {
			return nil, err
		}
		runtime.Gosched() // widen the race window
		next.Version++
		s.mu.Lock()
		if cur := s.grants[id]; cur.Version == prev.Version && !s.closed {
			s.grants[id] = next
			s.mu.Unlock()
			return next.Clone(), nil
		}
		s.mu.Unlock()
	}
	return nil, grant.ErrConflict
}

func (s *casStore) List(ctx context.Context, f grant.Filter) ([]*grant.Grant, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if f.State != nil && !f.State.Valid() {
		return nil, errors.New("casstore: invalid state")
	}
	s.mu.Lock()
	var out []*grant.Grant
	for _, g := range s.grants {
		if f.Match(g) {
			out = append(out, g.Clone())
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *casStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestSuiteOnAConditionalWriteStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) grant.Store {
		return &casStore{grants: map[string]*grant.Grant{}, attempts: 8}
	})
}
