package grant

import (
	"context"
	"errors"
)

// Filter selects grants in List. Zero fields do not filter.
type Filter struct {
	// State, when set, keeps only grants in that state.
	State *State
	// Requester keeps only grants of this identity key.
	Requester string
	// Target keeps only grants on this target.
	Target string
	// Limit caps the number of grants returned; zero or negative means no cap.
	Limit int
}

// Match reports whether g passes the filter (Limit aside).
func (f Filter) Match(g *Grant) bool {
	return (f.State == nil || g.State == *f.State) &&
		(f.Requester == "" || g.Requester == f.Requester) &&
		(f.Target == "" || g.Target == f.Target)
}

// Store keeps grants. It is the contract the broker uses; broker/store/bolt
// implements it (and a DynamoDB store will), and broker/store/storetest is the
// suite every implementation must pass.
//
// Every returned *Grant is the caller's own copy.
type Store interface {
	// Create stores a new grant after g.ValidateNew. It sets g.Version to 1, and
	// g.CreatedAt (when zero) and g.UpdatedAt from the store's clock, on the
	// caller's value. ErrExists if the id is taken.
	Create(ctx context.Context, g *Grant) error
	// Get returns the grant, or ErrNotFound.
	Get(ctx context.Context, id string) (*Grant, error)
	// Update loads the grant, calls fn on a copy, checks the result with
	// CheckUpdate, and writes it only if nobody wrote in between (a compare-and-
	// swap on Version), incrementing Version and setting UpdatedAt. It returns the
	// grant as written.
	//
	// When another writer got in between, Update re-runs fn on the fresh copy
	// (so fn may run more than once: it must decide from the grant it is given
	// and have no side effects). It gives up with ErrConflict only when it cannot
	// win after repeated attempts. Two racing updates therefore serialize: each fn
	// sees the other's write, and a fn that only applies to a given state (e.g.
	// Transition(Approved) from Pending) fails in the loser with
	// ErrIllegalTransition. When fn returns an error, nothing is written and
	// Update returns that error unchanged. ErrNotFound if the id does not exist.
	Update(ctx context.Context, id string, fn func(g *Grant) error) (*Grant, error)
	// List returns the grants that match f, newest (CreatedAt) first, ties broken
	// by id descending.
	List(ctx context.Context, f Filter) ([]*Grant, error)
	// Close releases the store. Calls after Close return an error.
	Close() error
}

// Sentinel errors of every Store.
var (
	ErrNotFound = errors.New("grant: not found")
	ErrExists   = errors.New("grant: already exists")
	ErrConflict = errors.New("grant: concurrent update conflict")
)
