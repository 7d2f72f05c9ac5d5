//go:build soak

package soak

import (
	"flag"
	"os"
	"testing"
	"time"
)

var (
	soakGrants   = flag.Int("soak.grants", 200, "concurrent session grants, one proxy process each")
	soakDuration = flag.Duration("soak.duration", 60*time.Second, "how long every grant queries")
	soakSlack    = flag.Int("soak.slack", 8, "broker goroutine/fd growth tolerated after the run")
	soakReport   = flag.String("soak.report", "", "also write the measurements to this file")
)

// TestSoak is `make soak` (scripts/soak.sh): by default 200 concurrent
// session grants, each querying through its own proxy for 60 s, with no
// errors and no goroutine or fd growth in the broker; proxy memory reported.
func TestSoak(t *testing.T) {
	rep := runLoad(t, load{Grants: *soakGrants, Duration: *soakDuration, Slack: *soakSlack})
	t.Logf("%d grants × %s:\n%s", *soakGrants, *soakDuration, rep)
	if *soakReport != "" {
		if err := os.WriteFile(*soakReport, []byte(rep.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
