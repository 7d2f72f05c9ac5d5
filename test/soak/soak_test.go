package soak

import (
	"testing"
	"time"
)

// TestShortSoak is the soak's small version, part of make test: 20 session
// grants querying through their own proxies for 5 s.
func TestShortSoak(t *testing.T) {
	rep := runLoad(t, load{Grants: 20, Duration: 5 * time.Second, Slack: 4})
	t.Logf("20 grants × 5s:\n%s", rep)
}
