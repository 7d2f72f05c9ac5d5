package guard

import (
	"fmt"
	"strings"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Class is what a statement needs to run. Classes are ordered:
// ClassRead < ClassWrite < ClassAdmin < ClassForbidden, so the class of a
// multi-statement string is the maximum of its statements' classes.
type Class int

const (
	// ClassRead reads data or changes only harmless session state.
	ClassRead Class = iota
	// ClassWrite changes data (DML, COPY FROM STDIN, sequences, row locks).
	ClassWrite
	// ClassAdmin changes schema, privileges or server maintenance state, or
	// runs code the guard cannot see into (DO, CALL, functions, triggers).
	ClassAdmin
	// ClassForbidden is never allowed, whatever the grant's access level,
	// unless the policy opts in with AllowKinds or AllowFunctions.
	ClassForbidden
)

var classNames = [...]string{ClassRead: "read", ClassWrite: "write", ClassAdmin: "admin", ClassForbidden: "forbidden"}

func (c Class) String() string {
	if c >= ClassRead && c <= ClassForbidden {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ParseClass parses "read", "write", "admin" or "forbidden".
func ParseClass(s string) (Class, error) {
	for c, n := range classNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Class(c), nil
		}
	}
	return ClassForbidden, fmt.Errorf("guard: unknown class %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Class) UnmarshalText(b []byte) error {
	v, err := ParseClass(string(b))
	*c = v
	return err
}

// Allowed reports whether a grant with access level a may run a statement of
// class c: read needs Read or more, write needs Write or more, admin needs
// Admin, and forbidden is never allowed. AccessNone allows nothing.
func (c Class) Allowed(a spec.Access) bool {
	switch c {
	case ClassRead:
		return a >= spec.Read && a <= spec.Admin
	case ClassWrite:
		return a >= spec.Write && a <= spec.Admin
	case ClassAdmin:
		return a == spec.Admin
	}
	return false
}
