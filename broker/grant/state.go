package grant

import (
	"errors"
	"fmt"
)

// State is where a grant is in its life. The zero value, StateUnknown, is not a
// state any stored grant may be in: it exists so a forgotten assignment fails
// closed instead of reading as Pending.
//
// Requested is implicit: a grant is created already decided, as Pending (it needs
// approval), Approved (policy allows it) or Denied (policy denies it; denied
// grants are stored for audit).
//
//	Pending  ─▶ Approved | Denied | Expired | Revoked
//	Approved ─▶ Active | Expired | Revoked | Failed
//	Active   ─▶ Ended | Expired | Revoked | Failed
//
// Ended, Denied, Expired, Revoked and Failed are terminal.
type State int

const (
	StateUnknown State = iota
	Pending
	Approved
	Active
	Ended
	Denied
	Expired
	Revoked
	Failed
)

var stateNames = [...]string{
	StateUnknown: "unknown",
	Pending:      "pending",
	Approved:     "approved",
	Active:       "active",
	Ended:        "ended",
	Denied:       "denied",
	Expired:      "expired",
	Revoked:      "revoked",
	Failed:       "failed",
}

// States lists every valid state (StateUnknown excluded), in declaration order.
func States() []State {
	return []State{Pending, Approved, Active, Ended, Denied, Expired, Revoked, Failed}
}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Valid reports whether s is one of the declared states other than StateUnknown.
func (s State) Valid() bool { return s > StateUnknown && int(s) < len(stateNames) }

// Terminal reports whether no transition leaves s.
func (s State) Terminal() bool {
	switch s {
	case Ended, Denied, Expired, Revoked, Failed:
		return true
	}
	return false
}

// ParseState parses a state name as printed by String.
func ParseState(name string) (State, error) {
	for _, s := range States() {
		if stateNames[s] == name {
			return s, nil
		}
	}
	return StateUnknown, fmt.Errorf("grant: unknown state %q", name)
}

// MarshalText encodes a valid state by name. StateUnknown and out-of-range values
// are refused so they never reach a store.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("grant: cannot marshal invalid state %s", s)
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a state name; unknown names are an error.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// edges is the whole state machine. Anything not listed is illegal.
var edges = map[State][]State{
	Pending:  {Approved, Denied, Expired, Revoked},
	Approved: {Active, Expired, Revoked, Failed},
	Active:   {Ended, Expired, Revoked, Failed},
}

// CanTransition reports whether from → to is an edge of the state machine.
// A state never transitions to itself.
func CanTransition(from, to State) bool {
	for _, s := range edges[from] {
		if s == to {
			return true
		}
	}
	return false
}

// InitialState reports whether a grant may be created in state s: Pending,
// Approved or Denied.
func InitialState(s State) bool { return s == Pending || s == Approved || s == Denied }

// ErrIllegalTransition is wrapped by every refused state change; the error text
// names both states.
var ErrIllegalTransition = errors.New("illegal state transition")

func illegal(id string, from, to State) error {
	return fmt.Errorf("grant: %s: %s → %s: %w", id, from, to, ErrIllegalTransition)
}
